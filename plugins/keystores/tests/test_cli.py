"""The command line end to end (subprocess, private TLSGATE_HOME) for p12, jks and pem.

Every reference-document command form of ``tls add p12|jks|pem`` (local and each remote
connection type, password / SSH key / credential store), invalid input (exit 2, the option named,
no traceback), installs read back by openssl and keytool, and the secrets rule: the store
password never appears in any output or any file under TLSGATE_HOME.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tlsgate_keystores import jks_codec, p12_codec
from tlsgate_testing.certs import Issued

SECRET = "Sëcret-St0re-Pässwörd"
JKS_PW = "Ascii-only-pw"
UUID = re.compile(r"Instance ID: [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Cli:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.outputs: list[str] = []

    def __call__(self, *args: str, stdin: str | None = None, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TLSGATE_")}
        env["TLSGATE_HOME"] = str(self.home)
        proc = subprocess.run([sys.executable, "-m", "tlsgate", *args], input=stdin, capture_output=True, text=True,
                              env=env, timeout=120, check=False)
        self.outputs.append(proc.stdout + proc.stderr)
        assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
        if expect is not None:
            assert proc.returncode == expect, (args, proc.stdout, proc.stderr)
        return proc


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    return Cli(home)


@pytest.fixture
def files(tmp_path: Path, leaf_a: Issued) -> dict[str, Path]:
    """Local keystores (store password SECRET), scripts, an SSH key file."""
    p12 = tmp_path / "a.p12"
    p12.write_bytes(leaf_a.pfx(SECRET))
    jks = tmp_path / "a.jks"
    content = p12_codec.load(p12.read_bytes(), SECRET, decrypt_keys=True)
    content.format = "jks"
    jks.write_bytes(jks_codec.dump(content, JKS_PW))
    pem = tmp_path / "a.pem"
    pem.write_bytes(leaf_a.cert_pem + leaf_a.chain_pem + leaf_a.key_pem)
    out = tmp_path / "script.out"
    script = tmp_path / "install.sh"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\" >> {out}\n")
    script.chmod(0o755)
    ssh_key = tmp_path / "id_ed25519"
    ssh_key.write_text("not used: tls add never connects\n")
    return {"p12": p12, "jks": jks, "pem": pem, "script": script, "out": out, "ssh_key": ssh_key}


def valid_forms(f: dict[str, Path]) -> list[tuple[str, list[str]]]:
    s, scripts = str(f["script"]), ["--install_script", str(f["script"]), "--restart_script", str(f["script"])]
    remote_pw = ["--host", "gw-target.example", "--port", "2222", "--user", "deploy", "--password", "Rem0te-pw"]
    remote_key = ["--host", "10.0.0.5", "--user", "deploy", "--ssh_key_path", str(f["ssh_key"]),
                  "--ssh_key_password", "key-pass"]
    remote_store = ["--host", "win.example", "--user", "Administrator", "--store", "vault", "--store_cred_id", "w1"]
    return [
        ("p12", ["--connection_type", "local", "--path", str(f["p12"]), "--store_password", SECRET]),
        ("p12", ["--connection_type", "local", "--path", str(f["p12"]), "--store_password", SECRET, *scripts,
                 "--is_legacy", "true"]),
        ("p12", ["--connection_type", "ssh", "--path", "/srv/app.p12", "--store_password", SECRET, *remote_pw,
                 "--install_script", "/opt/i.sh", "--restart_script", "/opt/r.sh", "--is_legacy", "false"]),
        ("p12", ["--connection_type", "ssh", "--path", "/srv/app.p12", "--store_password", SECRET, *remote_key]),
        ("p12", ["--connection_type", "ssh_windows", "--path", "C:\\certs\\app.pfx", "--store_password", SECRET,
                 "--host", "win.example", "--user", "admin", "--password", "pw"]),
        ("p12", ["--connection_type", "winrm_https", "--path", "C:\\certs\\app.pfx", "--store_password", SECRET,
                 *remote_store, "--is_legacy", "true"]),
        ("jks", ["--connection_type", "local", "--path", str(f["jks"]), "--store_password", JKS_PW]),
        ("jks", ["--connection_type", "local", "--path", str(f["jks"]), "--store_password", JKS_PW, *scripts]),
        ("jks", ["--connection_type", "winrm_http", "--path", "D:\\tomcat\\conf\\k.jks", "--store_password", SECRET,
                 "--host", "win.example", "--port", "5985", "--user", "admin", "--password", "pw",
                 "--install_script", "C:\\scripts\\i.ps1", "--restart_script", "C:\\scripts\\r.ps1"]),
        ("jks", ["--connection_type", "ssh", "--path", "/opt/app/k.jks", "--store_password", SECRET, *remote_key]),
        ("pem", ["--connection_type", "local", "--path", str(f["pem"])]),
        ("pem", ["--connection_type", "local", "--path", str(f["pem"]), "--install_script", s,
                 "--restart_script", s]),
        ("pem", ["--connection_type", "winrm_https_insecure", "--path", "C:\\certs\\site.pem", *remote_store]),
        ("pem", ["--connection_type", "ssh", "--path", "/etc/ssl/site.pem", *remote_pw,
                 "--key_path", "/etc/ssl/private/site.key", "--key_password", SECRET]),
    ]


def test_every_reference_command_form_is_accepted(cli: Cli, files: dict[str, Path]) -> None:
    cli("store", "add", "local", "--name", "vault")
    for i, (kind, args) in enumerate(valid_forms(files)):
        proc = cli("tls", "add", kind, "--name", f"{kind}-{i}", *args)
        assert UUID.search(proc.stdout.strip()), proc.stdout
    listed = cli("tls", "list", "--json").stdout
    assert len(re.findall(r'"instance_id"', listed)) == len(valid_forms(files))
    shown = cli("tls", "show", "p12-1", "--json").stdout
    assert '"is_legacy": true' in shown and '"store_password": "********"' in shown
    assert_secret_nowhere(cli)


def assert_secret_nowhere(cli: Cli) -> None:
    needles = [SECRET.encode(), SECRET.encode("utf-16-le"), SECRET.encode("utf-16-be"), b"Rem0te-pw", b"key-pass"]
    for path in cli.home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(n in data for n in needles), f"secret found in {path}"
    for text in cli.outputs:
        assert SECRET not in text and "Rem0te-pw" not in text


@pytest.mark.parametrize(("kind", "args", "option"), [
    ("p12", ["--connection_type", "local", "--path", "{p12}"], "--store_password"),
    ("p12", ["--connection_type", "local", "--path", "{p12}", "--store_password", "wrong-pw"], "--store_password"),
    ("p12", ["--connection_type", "local", "--path", "{missing}", "--store_password", SECRET], "--path"),
    ("p12", ["--connection_type", "local", "--path", "relative.p12", "--store_password", SECRET], "--path"),
    ("p12", ["--connection_type", "local", "--path", "{p12}", "--store_password", SECRET, "--is_legacy", "maybe"],
     "--is_legacy"),
    ("p12", ["--connection_type", "local", "--path", "{p12}", "--store_password", SECRET,
             "--install_script", "{missing}"], "--install_script"),
    ("p12", ["--connection_type", "rest", "--path", "{p12}", "--store_password", SECRET], "--connection_type"),
    ("p12", ["--connection_type", "ssh", "--path", "/srv/a.p12", "--store_password", SECRET], "--host"),
    ("p12", ["--connection_type", "ssh", "--path", "/srv/a.p12", "--store_password", SECRET, "--host", "h",
             "--user", "u", "--password", "pw", "--port", "70000"], "--port"),
    ("jks", ["--connection_type", "local", "--path", "{p12}", "--store_password", "wrong-pw"], "--store_password"),
    ("jks", ["--connection_type", "local", "--path", "{pem}", "--store_password", SECRET], "--path"),
    ("jks", ["--connection_type", "local", "--path", "{jks}", "--store_password", JKS_PW, "--is_legacy", "true"],
     "--is_legacy"),
    ("pem", ["--connection_type", "local", "--path", "{pem}", "--store_password", SECRET], "--store_password"),
    ("pem", ["--connection_type", "local", "--path", "{p12}"], "--path"),
    ("pem", ["--connection_type", "local"], "--path"),
])
def test_invalid_input_exits_2_naming_the_option(cli: Cli, files: dict[str, Path], tmp_path: Path, kind: str,
                                                 args: list[str], option: str) -> None:
    paths = {k: str(v) for k, v in files.items()} | {"missing": str(tmp_path / "missing.file")}
    argv = [a.format(**paths) for a in args]
    proc = cli("tls", "add", kind, "--name", "bad", *argv, expect=2)
    message = proc.stderr.strip()
    assert option in message, message
    if "No such option" not in message:  # typer/click's own usage errors print a usage header first
        assert len(message.splitlines()) == 1, message
    assert "wrong-pw" not in proc.stdout + proc.stderr


def test_name_rules_and_refused_adds_store_nothing(cli: Cli, files: dict[str, Path]) -> None:
    base = ["--connection_type", "local", "--path", str(files["pem"])]
    assert "--name" in cli("tls", "add", "pem", "--name", "x" * 33, *base, expect=2).stderr
    wrong = ["--connection_type", "local", "--path", str(files["p12"]), "--store_password", "wrong-pw"]
    assert "--store_password" in cli("tls", "add", "p12", "--name", "p", *wrong, expect=2).stderr
    assert cli("tls", "list", "--json").stdout.strip() == "[]"
    cli("tls", "add", "pem", "--name", "x" * 32, *base)
    assert "--name" in cli("tls", "add", "pem", "--name", "x" * 32, *base, expect=2).stderr


def read_back(kind: str, path: Path, kt: Any, password: str) -> dict[str, str]:
    if kind == "pem":
        fp = kt.run_tool(["openssl", "x509", "-in", str(path), "-noout", "-fingerprint", "-sha256"]).stdout
        return {"pem": fp.split("=")[1].strip().replace(":", "").lower()}
    if kind == "p12":  # Java refuses non-ASCII PKCS#12 passwords ("Password is not ASCII"): openssl reads it
        from cryptography import x509
        from tlsgate import certs

        out = kt.run_tool(["openssl", "pkcs12", "-in", str(path), "-passin", "env:KS_TEST_PW", "-nokeys",
                           "-clcerts"], password).stdout
        found = {}
        for part in out.split("Bag Attributes")[1:]:
            name = re.search(r"friendlyName: (.*)", part)
            cert = x509.load_pem_x509_certificate(part[part.index("-----BEGIN"):].encode())
            found[name.group(1).strip() if name else "?"] = certs.fingerprint(cert)
        return found
    return {alias: e["sha256"] for alias, e in kt.keytool_list(path, password).items()}


@pytest.mark.parametrize("kind", ["p12", "jks", "pem"])
def test_install_end_to_end(cli: Cli, files: dict[str, Path], tmp_path: Path, leaf_a: Issued, leaf_b: Issued,
                            kt: Any, kind: str) -> None:
    path = files[kind]
    password = {"p12": SECRET, "jks": JKS_PW, "pem": ""}[kind]
    add = ["--connection_type", "local", "--path", str(path), "--install_script", str(files["script"])]
    if kind != "pem":
        add += ["--store_password", "-"]  # from standard input
    cli("tls", "add", kind, "--name", "ep", *add, stdin=password + "\n")
    cli("org", "add", "Acme")
    assert "delegat" in cli("tls", "discover", "ep", expect=1).stderr.lower()  # refused until delegated
    cli("tls", "delegate", "ep", "--org", "Acme")
    cli("tls", "discover", "ep")
    crt, key, chain = leaf_b.write(tmp_path / "new", "b")
    _, wrong_key, _ = leaf_a.write(tmp_path / "old", "a")
    before = path.read_bytes()

    plan = cli("tls", "install", "ep", "--cert", str(crt), "--key", str(key), "--chain", str(chain), "--dry-run")
    assert "dry run" in plan.stdout and str(files["script"]) in plan.stdout
    mismatch = cli("tls", "install", "ep", "--cert", str(crt), "--key", str(wrong_key), expect=2)
    assert "--key" in mismatch.stderr and len(mismatch.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == before and not files["out"].exists()

    done = cli("tls", "install", "ep", "--cert", str(crt), "--key", str(key), "--chain", str(chain), "--json")
    assert '"b.example.org"' in done.stdout
    assert files["out"].read_text().splitlines() == [str(files["script"]), "b.example.org"]
    seen = read_back(kind, path, kt, password)
    if kind == "pem":
        assert seen == {"pem": leaf_b.fingerprint}
    else:
        assert seen["b.example.org"] == leaf_b.fingerprint and seen["leaf"] == leaf_a.fingerprint
    nodes = cli("tls", "nodes", "ep", "--json").stdout
    assert ("a.pem" if kind == "pem" else '"b.example.org"') in nodes
    assert "no restart script configured" in cli("tls", "restart", "ep").stdout
    assert_secret_nowhere(cli)


def test_failing_install_script_exits_1_and_says_the_keystore_changed(cli: Cli, files: dict[str, Path],
                                                                      tmp_path: Path, leaf_b: Issued, kt: Any) -> None:
    script = tmp_path / "fail.sh"
    script.write_text("#!/bin/sh\necho 'systemctl reload app: access denied' >&2\nexit 3\n")
    script.chmod(0o755)
    cli("tls", "add", "p12", "--name", "ep", "--connection_type", "local", "--path", str(files["p12"]),
        "--store_password", "-", "--install_script", str(script), stdin=SECRET)
    cli("org", "add", "Acme")
    cli("tls", "delegate", "ep", "--org", "Acme")
    crt, key, chain = leaf_b.write(tmp_path / "new", "b")
    proc = cli("tls", "install", "ep", "--cert", str(crt), "--key", str(key), "--chain", str(chain), expect=1)
    # the installed entry is reported on stdout; the script's failure is the last line on stderr
    assert "Installed certificate" in proc.stdout
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("warning: ")
    assert f"the keystore {files['p12']} was updated (entry 'b.example.org')" in line
    assert line.endswith("exited 3: systemctl reload app: access denied")
    assert read_back("p12", files["p12"], kt, SECRET)["b.example.org"] == leaf_b.fingerprint
    assert_secret_nowhere(cli)


def test_install_by_alias_node_and_pfx(cli: Cli, files: dict[str, Path], tmp_path: Path, leaf_b: Issued,
                                       test_ca: Any, kt: Any) -> None:
    cli("tls", "add", "jks", "--name", "ep", "--connection_type", "local", "--path", str(files["jks"]),
        "--store_password", "-", stdin=JKS_PW)
    cli("org", "add", "Acme")
    cli("tls", "delegate", "ep", "--org", "Acme")
    cli("tls", "discover", "ep")
    crt, key, chain = leaf_b.write(tmp_path / "new", "b")
    cli("tls", "install", "ep", "--cert", str(crt), "--key", str(key), "--chain", str(chain), "--alias", "My App")
    third = test_ca.issue("c.example.org")
    pfx = tmp_path / "c.pfx"
    pfx.write_bytes(third.pfx("pfx-pw"))
    cli("tls", "install", "ep", "--pfx", str(pfx), "--pfx_password", "-", "--node", "leaf", stdin="pfx-pw")
    listed = kt.keytool_list(files["jks"], JKS_PW)
    assert {a: e["sha256"] for a, e in listed.items()} == {"my app": leaf_b.fingerprint, "leaf": third.fingerprint}
    nodes = json.loads(cli("tls", "nodes", "ep", "--json").stdout)
    found = {n.get("name") or n.get("Name"): n for n in nodes}
    assert set(found) == {"leaf", "my app"}, nodes


def test_node_named_as_keytool_was_given_the_alias(cli: Cli, tmp_path: Path, test_ca: Any, kt: Any) -> None:
    """keytool keeps PKCS#12 and JKS aliases in lower case (Java aliases are case-insensitive):
    ``--node "Payments API"`` names the entry keytool lists as "payments api", and only it."""
    store = tmp_path / "multi.p12"
    for alias in ("Payments API", "Admin"):
        src = tmp_path / f"{alias}.p12"
        src.write_bytes(test_ca.issue(f"{alias.split()[0].lower()}.example.org").pfx("src-pw", alias=alias))
        kt.run_tool(["keytool", "-importkeystore", "-noprompt", "-srckeystore", str(src), "-srcstoretype", "PKCS12",
                     "-srcstorepass", "src-pw", "-destkeystore", str(store), "-deststoretype", "PKCS12",
                     "-deststorepass:env", "KS_TEST_PW"], JKS_PW)
    assert set(kt.keytool_list(store, JKS_PW)) == {"payments api", "admin"}
    cli("tls", "add", "p12", "--name", "ep", "--connection_type", "local", "--path", str(store),
        "--store_password", "-", stdin=JKS_PW)
    cli("org", "add", "Acme")
    cli("tls", "delegate", "ep", "--org", "Acme")
    cli("tls", "discover", "ep")
    admin = kt.keytool_list(store, JKS_PW)["admin"]["sha256"]
    new = test_ca.issue("payments.example.org")
    crt, key, chain = new.write(tmp_path / "new", "p")
    done = cli("tls", "install", "ep", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
               "--node", "Payments API")
    assert "replaced entry 'payments api'" in done.stdout, done.stdout
    assert {a: e["sha256"] for a, e in kt.keytool_list(store, JKS_PW).items()} == {
        "payments api": new.fingerprint, "admin": admin}
