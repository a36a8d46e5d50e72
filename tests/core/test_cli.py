"""The command line as an operator uses it (subprocess, real entry points): success lines, --json
shapes, exit codes, one-line errors without tracebacks, secrets from stdin and never echoed.
Uses the example third-party type `certdir` (examples/plugin), installed by the workspace."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SECRET = "S3cr3t-in-cli-test"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def tg(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tlsgate", *args], capture_output=True, text=True, input=stdin,
                          env={**os.environ, **(env or {})}, timeout=120)


def ok(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    res = tg(*args, stdin=stdin)
    assert res.returncode == 0, f"{args}: {res.stderr}"
    return res


def _files(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


def test_add_prints_success_and_instance_id(tlsgate_home: Path, tmp_path: Path) -> None:
    res = ok("tls", "add", "certdir", "--name", "mail", "--connection_type", "local", "--dir", str(tmp_path))
    m = re.fullmatch(r"Endpoint 'mail' added successfully\. Instance ID: (\S+)\n", res.stdout)
    assert m and UUID.match(m.group(1))
    shown = json.loads(ok("tls", "show", m.group(1), "--json").stdout)
    assert shown["name"] == "mail" and shown["instance_id"] == m.group(1)
    listed = json.loads(ok("tls", "list", "--json").stdout)
    assert [e["name"] for e in listed] == ["mail"]
    ok("tls", "remove", "mail")
    assert json.loads(ok("tls", "list", "--json").stdout) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--name", "x" * 33, "--connection_type", "local"], "error: --name: must be between 1 and 32 characters"),
    (["--name", "a", "--connection_type", "winrm_http"], "error: --connection_type: must be one of: local, ssh (for certdir)"),
    (["--name", "a", "--connection_type", "ssh", "--host", "h", "--port", "70000", "--password", "p"],
     "error: --port: must be an integer between 1 and 65535"),
    (["--name", "a", "--connection_type", "ssh", "--host", "h", "--port", "abc", "--password", "p"],
     "error: --port: must be an integer between 1 and 65535"),
    (["--name", "a", "--connection_type", "ssh", "--host", "x" * 256, "--password", "p"],
     "error: --host: must be between 1 and 255 characters"),
    # (ssh with no credential at all is valid: an ssh-agent or ~/.ssh/config may provide one)
    (["--name", "a", "--connection_type", "ssh", "--host", "h", "--ssh_jump", "bastion:0"],
     "error: --ssh_jump: 'bastion:0': the port must be an integer between 1 and 65535"),
    (["--name", "a", "--connection_type", "ssh", "--host", "h", "--sudo", "maybe"],
     "error: --sudo: must be true or false"),
    (["--name", "a", "--connection_type", "ssh", "--host", "h", "--ssh_key_path", "/nonexistent/key"],
     "error: --ssh_key_path: /nonexistent/key: no such file"),
    (["--name", "a", "--connection_type", "ssh", "--host", "h", "--store", "nope", "--store_cred_id", "1"],
     "error: --store: no credential store named 'nope' (see: tlsgate store list)"),
    (["--name", "a", "--connection_type", "local", "--password", "p"],
     "error: --password: is not used with --connection_type local"),
])
def test_invalid_input_is_one_line_exit_2(tlsgate_home: Path, tmp_path: Path, args: list[str], message: str) -> None:
    res = tg("tls", "add", "certdir", *args, "--dir", str(tmp_path))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [message]
    assert "Traceback" not in res.stderr and res.stdout == ""


def test_unknown_option_and_type_exit_2(tlsgate_home: Path) -> None:
    res = tg("tls", "add", "certdir", "--name", "a", "--nginx_config_path", "/x")
    assert res.returncode == 2 and "Error: No such option: --nginx_config_path" in res.stderr
    res = tg("tls", "add", "nosuchtype", "--name", "a")
    assert res.returncode == 2 and res.stderr.startswith("error: unknown endpoint type 'nosuchtype' (installed: ")


def test_duplicate_name_and_missing_endpoint(tlsgate_home: Path, tmp_path: Path) -> None:
    ok("tls", "add", "certdir", "--name", "a", "--connection_type", "local", "--dir", str(tmp_path))
    res = tg("tls", "add", "certdir", "--name", "a", "--connection_type", "local", "--dir", str(tmp_path))
    assert res.returncode == 2 and res.stderr.strip() == "error: --name: an endpoint named 'a' already exists"
    res = tg("tls", "show", "zzz")
    assert res.returncode == 2 and "no endpoint named or with ID 'zzz'" in res.stderr


def test_password_from_stdin_never_stored_or_shown(tlsgate_home: Path, tmp_path: Path) -> None:
    res = ok("tls", "add", "certdir", "--name", "r", "--connection_type", "ssh", "--host", "h.example",
             "--user", "u", "--password", "-", "--dir", str(tmp_path), "--json", stdin=SECRET + "\n")
    data = json.loads(res.stdout)
    assert data["connection"]["password"] == "********" and data["connection"]["port"] == 22
    assert SECRET.encode() not in _files(tlsgate_home)
    for cmd in (["tls", "show", "r", "--json"], ["tls", "list", "--json"], ["log", "--json"], ["tls", "show", "r"]):
        assert SECRET not in ok(*cmd).stdout


def test_discover_refused_until_delegated_then_nodes(tlsgate_home: Path, tmp_path: Path, test_ca) -> None:
    issued = test_ca.issue("web.example.org")
    (tmp_path / "web.crt").write_bytes(issued.cert_pem)
    ok("tls", "add", "certdir", "--name", "d", "--connection_type", "local", "--dir", str(tmp_path))
    res = tg("tls", "discover", "d")
    assert res.returncode == 1 and "not delegated" in res.stderr and "Traceback" not in res.stderr
    res = tg("tls", "delegate", "d", "--org", "Nope")
    assert res.returncode == 2 and "no organization named 'Nope'" in res.stderr
    ok("org", "add", "Acme")
    ok("org", "add-department", "Acme", "Web")
    assert json.loads(ok("org", "list", "--json").stdout) == [{"name": "Acme", "departments": ["Web"]}]
    ok("tls", "delegate", "d", "--org", "Acme", "--department", "Web")
    nodes = json.loads(ok("tls", "discover", "d", "--json").stdout)
    assert [(n["name"], n["ssl"], n["fingerprint"]) for n in nodes] == [("web", "External", issued.fingerprint)]
    text = ok("tls", "nodes", "d").stdout
    for column in ("Name", "Alias", "Protocol", "IP Address", "Port", "SSL", "Vendor", "State"):
        assert column in text
    cert_id = json.loads(ok("cert", "list", "--json").stdout)[0]["id"]
    ok("cert", "assign", str(cert_id), "--org", "Acme", "--department", "Web")
    assert json.loads(ok("tls", "nodes", "d", "--json").stdout)[0]["ssl"] == str(cert_id)


def test_nodes_of_selected_endpoints(tlsgate_home: Path, tmp_path: Path, test_ca) -> None:
    """tls nodes with selectors: one table (an Endpoint column first) / one JSON list naming each
    node's endpoint; no selector and no ENDPOINT is exit 2, never "all"."""
    ok("org", "add", "Acme")
    issued = {}
    for name in ("b-web", "a-mail", "c-other"):
        folder = tmp_path / name
        folder.mkdir()
        issued[name] = test_ca.issue(f"{name}.example.org")
        (folder / f"{name}.crt").write_bytes(issued[name].cert_pem)
        ok("tls", "add", "certdir", "--name", name, "--connection_type", "local", "--dir", str(folder))
        ok("tls", "delegate", name, "--org", "Acme")
        ok("tls", "discover", name)
    got = json.loads(ok("tls", "nodes", "--endpoint", "b-web", "--endpoint", "a-mail", "--json").stdout)
    assert [(n["endpoint"], n["name"], n["fingerprint"]) for n in got] == [
        ("a-mail", "a-mail", issued["a-mail"].fingerprint), ("b-web", "b-web", issued["b-web"].fingerprint)]
    everything = json.loads(ok("tls", "nodes", "--all", "--json").stdout)
    assert [n["endpoint"] for n in everything] == ["a-mail", "b-web", "c-other"]
    cert_id = next(c["id"] for c in json.loads(ok("cert", "list", "--json").stdout)
                   if c["fingerprint"] == issued["b-web"].fingerprint)
    ok("cert", "assign", str(cert_id), "--org", "Acme")
    everything = json.loads(ok("tls", "nodes", "--all", "--json").stdout)
    for name in issued:  # every field as the one-endpoint form prints it (SSL: the assigned ID)
        single = json.loads(ok("tls", "nodes", name, "--json").stdout)
        assert [{k: v for k, v in n.items() if k != "endpoint"} for n in everything if n["endpoint"] == name] == single
    assert [n["ssl"] for n in everything] == ["External", str(cert_id), "External"]
    text = ok("tls", "nodes", "--type", "certdir").stdout.splitlines()
    assert text[0].split()[:2] == ["Endpoint", "Name"]
    assert [line.split()[0] for line in text[1:] if line.strip() and not set(line) <= {"-", " "}] == [
        "a-mail", "b-web", "c-other"]
    # the one-endpoint form is unchanged: no endpoint key, no Endpoint column
    single = json.loads(ok("tls", "nodes", "a-mail", "--json").stdout)
    assert "endpoint" not in single[0] and ok("tls", "nodes", "a-mail").stdout.split()[0] == "Name"
    res = tg("tls", "nodes")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "no endpoints selected: give ENDPOINT, --endpoint, --type, --org or --all" in res.stderr
    res = tg("tls", "nodes", "--endpoint", "nope")
    assert res.returncode == 2 and "nope" in res.stderr


def test_install_dry_run_then_real_then_audit(tlsgate_home: Path, tmp_path: Path, test_ca) -> None:
    folder = tmp_path / "certs"
    folder.mkdir()
    new = test_ca.issue("svc.example.org")
    crt, key, chain = new.write(tmp_path / "in", "svc")
    ok("tls", "add", "certdir", "--name", "i", "--connection_type", "local", "--dir", str(folder))
    ok("org", "add", "Acme")
    ok("tls", "delegate", "i", "--org", "Acme")
    plan = json.loads(ok("tls", "install", "i", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
                         "--alias", "svc", "--dry-run", "--json").stdout)
    assert plan["dry_run"] and [s["action"] for s in plan["plan"]] == ["write", "write"]
    assert list(folder.iterdir()) == []
    done = json.loads(ok("tls", "install", "i", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
                         "--alias", "svc", "--json").stdout)
    assert done["certificate_id"] >= 1 and done["nodes"] == ["svc"] and not done["rolled_back"]
    log = json.loads(ok("log", "--json").stdout)
    entry = [e for e in log if e["action"] == "tls install"][-1]
    assert entry["result"] == "ok" and entry["after"] == new.fingerprint and entry["endpoint"] == "i"
    # a mismatched key: exit 2, nothing written, one line naming the file
    other = test_ca.issue("other.example.org")
    _, other_key, _ = other.write(tmp_path / "o", "o")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    res = tg("tls", "install", "i", "--cert", str(crt), "--key", str(other_key))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "does not match" in res.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_plugins_list_json(tlsgate_home: Path) -> None:
    plugins = {p["name"]: p for p in json.loads(ok("plugins", "list", "--json").stdout)}
    assert plugins["certdir"]["distribution"] == "tlsgate-certdir"
    assert plugins["certdir"]["endpoint_types"] == ["certdir"]
    assert plugins["local"]["connection_types"] == ["local"]


def test_local_store_via_cli(tlsgate_home: Path, tmp_path: Path) -> None:
    ok("store", "add", "local", "--name", "gw")
    ok("store", "put", "gw", "--store_cred_id", "web", "--user", "deploy", "--password", "-", stdin=SECRET + "\n")
    assert "gw" in ok("store", "list").stdout
    ok("tls", "add", "certdir", "--name", "s", "--connection_type", "ssh", "--host", "h", "--store", "gw",
       "--store_cred_id", "web", "--dir", str(tmp_path))
    assert SECRET.encode() not in _files(tlsgate_home)
    res = tg("tls", "add", "certdir", "--name", "s2", "--connection_type", "ssh", "--host", "h", "--store", "gw",
             "--dir", str(tmp_path))
    assert res.returncode == 2 and "--store_cred_id: --store and --store_cred_id go together" in res.stderr


def test_tls_list_shows_each_endpoint_as_tls_show_does(tlsgate_home: Path, tmp_path: Path) -> None:
    """``tls list`` reads the rows without the library's models (start-up time): the same
    shape, secrets redacted, the insecure flag from the plugins' declarations, the organization."""
    ok("tls", "add", "certdir", "--name", "b-ssh", "--connection_type", "ssh", "--host", "h.example", "--user", "u",
       "--password", "-", "--dir", str(tmp_path), stdin=SECRET + "\n")
    ok("tls", "add", "iis", "--name", "a-win", "--connection_type", "winrm_https_insecure", "--host", "w.example",
       "--user", "u", "--password", "pw")
    ok("tls", "add", "certdir", "--name", "c-local", "--connection_type", "local", "--dir", str(tmp_path))
    ok("org", "add", "Acme")
    ok("tls", "delegate", "c-local", "--org", "Acme")
    listed = json.loads(ok("tls", "list", "--json").stdout)
    assert [e["name"] for e in listed] == ["a-win", "b-ssh", "c-local"]
    assert listed == [json.loads(ok("tls", "show", e["name"], "--json").stdout) for e in listed]
    assert [e["insecure"] for e in listed] == [True, False, False]
    assert listed[1]["connection"]["password"] == "********" and listed[2]["organization"] == "Acme"
    text = ok("tls", "list").stdout
    assert SECRET not in text and "a-win" in text and "Acme" in text


@pytest.mark.parametrize("args", [
    ["cert", "deploy", "--cert", "{crt}", "--key", "{key}", "--endpoint", "i", "--parallel", "0"],
    ["cert", "deploy", "--cert", "{crt}", "--key", "{key}", "--endpoint", "i", "--parallel", "0", "--dry-run"],
    ["cert", "deploy", "--cert", "{crt}", "--key", "{key}", "--endpoint", "i", "--canary", "-1", "--dry-run"],
    ["cert", "deploy", "--cert", "{crt}", "--key", "{key}", "--endpoint", "i", "--max-failures", "0", "--dry-run"],
    ["cert", "deploy", "--cert", "{crt}", "--key", "{key}", "--endpoint", "nobody-matches-x", "--parallel", "0"],
    ["tls", "discover", "--all", "--parallel", "0"],
    ["tls", "verify", "--all", "--parallel", "-3"],
])
def test_fleet_options_out_of_range_exit_2_and_record_no_job(tlsgate_home: Path, tmp_path: Path, test_ca,
                                                               args: list[str]) -> None:
    """--parallel < 1, --canary < 0, --max-failures < 1 are invalid input (exit 2, one line naming
    the option) whatever else the command line says (a dry run, a selection), and leave nothing
    behind: before, `--parallel 0` recorded a job that stayed "running" for ever (and `job retry`
    refused it as still running)."""
    folder = tmp_path / "certs"
    folder.mkdir()
    crt, key, _ = test_ca.issue("svc.example.org").write(tmp_path / "in", "svc")
    ok("tls", "add", "certdir", "--name", "i", "--connection_type", "local", "--dir", str(folder))
    ok("org", "add", "Acme")
    ok("tls", "delegate", "i", "--org", "Acme")
    res = tg(*[a.format(crt=crt, key=key) for a in args])
    option = next(a for a in args if a in ("--parallel", "--canary", "--max-failures"))
    assert res.returncode == 2 and res.stderr.strip().startswith(f"error: {option}: "), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert json.loads(ok("job", "list", "--json").stdout) == []
    assert json.loads(ok("cert", "list", "--json").stdout) == []


def test_verify_of_an_endpoint_never_discovered_is_not_a_pass(tlsgate_home: Path, tmp_path: Path) -> None:
    # it was "unchanged", exit 0: a nightly verify passed endpoints whose discovery had always
    # failed (wrong password) or never run, with nothing compared at all
    ok("tls", "add", "certdir", "--name", "fresh", "--connection_type", "local", "--dir", str(tmp_path))
    ok("org", "add", "Acme")
    ok("tls", "delegate", "fresh", "--org", "Acme")
    res = tg("tls", "verify", "--endpoint", "fresh")
    assert res.returncode == 1 and "fresh: nothing to verify: no discovery of 'fresh' succeeded yet" in res.stdout
    item = json.loads(tg("tls", "verify", "--endpoint", "fresh", "--json").stdout)["items"][0]
    assert item["state"] == "failed" and "tlsgate tls discover fresh" in item["reason"]
    ok("tls", "discover", "fresh")  # an empty directory: discovered, no node, nothing wrong
    assert json.loads(ok("tls", "verify", "--endpoint", "fresh", "--json").stdout)["items"][0]["state"] == "unchanged"


def test_cert_deploy_of_an_expired_certificate_is_refused_up_front(tlsgate_home: Path, tmp_path: Path, test_ca) -> None:
    # it became a failed job (exit 1) whose every item said "--force installs it anyway", an
    # option cert deploy does not have; the expired certificate was recorded with its key
    import datetime as dt

    folder = tmp_path / "certs"
    folder.mkdir()
    old = test_ca.issue("svc.example.org", not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=30), days=10)
    crt, key, chain = old.write(tmp_path / "in", "svc")
    ok("tls", "add", "certdir", "--name", "i", "--connection_type", "local", "--dir", str(folder))
    ok("org", "add", "Acme")
    ok("tls", "delegate", "i", "--org", "Acme")
    files = ["--cert", str(crt), "--key", str(key), "--chain", str(chain), "--endpoint", "i"]
    for extra in ([], ["--dry-run"], ["--json"]):
        res = tg("cert", "deploy", *files, *extra)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert res.stderr.startswith("error: --cert: the certificate expired on ") and "cert deploy" in res.stderr
    assert json.loads(ok("job", "list", "--json").stdout) == [] and json.loads(ok("cert", "list", "--json").stdout) == []
    assert list(folder.iterdir()) == []


def test_cert_deploy_dry_run_json_items_have_one_shape(tlsgate_home: Path, tmp_path: Path, test_ca) -> None:
    new = test_ca.issue("svc.example.org")
    crt, key, chain = new.write(tmp_path / "in", "svc")
    for name in ("a-ok", "b-undelegated"):
        (tmp_path / name).mkdir()
        ok("tls", "add", "certdir", "--name", name, "--connection_type", "local", "--dir", str(tmp_path / name))
    ok("org", "add", "Acme")
    ok("tls", "delegate", "a-ok", "--org", "Acme")
    res = tg("cert", "deploy", "--cert", str(crt), "--key", str(key), "--chain", str(chain), "--type", "certdir",
             "--dry-run", "--json")
    assert res.returncode == 1, res.stderr
    items = json.loads(res.stdout)["endpoints"]
    assert [set(i) for i in items] == [{"endpoint", "skipped", "error", "plan"}] * 2
    assert items[0]["error"] is None and items[0]["plan"] and "not delegated" in items[1]["error"]


BIG = "99999999999999999999"  # beyond SQLite's (and PostgreSQL's) 64-bit integers


@pytest.mark.parametrize("args, code, line", [
    (["job", "show", BIG], 2, f"error: no job with ID {BIG}"),
    (["job", "retry", BIG], 2, f"error: no job with ID {BIG}"),
    (["cert", "show", BIG], 2, f"error: no certificate '{BIG}'"),
    (["cert", "assign", BIG, "--org", "Acme"], 2, f"error: no certificate with ID {BIG}"),
    (["cert", "revoke", BIG], 2, f"error: no certificate '{BIG}'"),
    (["cert", "deploy", BIG, "--all"], 2, f"error: no certificate with ID {BIG}"),
    (["log", "--limit", BIG], 0, ""),
    (["job", "list", "--limit", BIG], 0, ""),
    (["cert", "expiring", "--days", BIG], 0, ""),
])
def test_an_id_or_number_beyond_64_bits_is_a_user_error_not_a_crash(tlsgate_home: Path, args: list[str], code: int,
                                                                   line: str) -> None:
    # each was "error: internal error: OverflowError: Python int too large to convert to SQLite INTEGER"
    ok("org", "add", "Acme")
    res = tg(*args)
    assert res.returncode == code and "internal error" not in res.stderr, res.stderr
    assert res.stderr.startswith(line) and len(res.stderr.splitlines()) <= 1, res.stderr


@pytest.mark.parametrize("flag", ["--password", "--ssh_key_password"])
def test_store_put_keeps_the_secret_rule_of_tls_add(tlsgate_home: Path, flag: str) -> None:
    # an empty (or 2,000-character) password was stored and then offered as a login
    ok("store", "add", "local", "--name", "gw")
    for value, stdin in (("", None), ("-", "\n"), ("x" * 1025, None)):
        res = tg("store", "put", "gw", "--store_cred_id", "web", "--user", "u", flag, value, stdin=stdin)
        assert res.returncode == 2 and res.stderr.strip() == f"error: {flag}: must be between 1 and 1024 characters"
    assert "x" * 1025 not in res.stdout + res.stderr
    ok("store", "put", "gw", "--store_cred_id", "web", "--user", "u", flag, "-", stdin="x" * 1024 + "\n")


def test_a_failed_job_item_keeps_the_whole_reason(tlsgate_home: Path, tmp_path: Path, test_ca) -> None:
    # the reason was cut at its first newline: for a keystore path holding one, the job said
    # "the keystore /srv/a" and dropped what failed (the install script's exit status)
    old, new = test_ca.issue("svc.example.org"), test_ca.issue("svc.example.org")
    path = tmp_path / "a\nb.pem"
    path.write_bytes(old.cert_pem + old.key_pem)
    crt, key, chain = new.write(tmp_path / "in", "svc")
    ok("tls", "add", "pem", "--name", "p", "--connection_type", "local", "--path", str(path),
       "--install_script", "/bin/false")
    ok("org", "add", "Acme")
    ok("tls", "delegate", "p", "--org", "Acme")
    res = tg("cert", "deploy", "--cert", str(crt), "--key", str(key), "--chain", str(chain), "--endpoint", "p", "--json")
    assert res.returncode == 1
    reason = json.loads(res.stdout)["items"][0]["reason"]
    assert str(path) in reason and "exited 1" in reason, reason
    shown = tg("job", "show", str(json.loads(res.stdout)["id"])).stdout
    row = next(line for line in shown.splitlines() if line.startswith("p "))
    assert "a\\nb.pem" in row and "exited 1" in row  # one table row: the newline shown as \n


def test_a_hint_naming_a_command_quotes_the_name_for_the_shell(tlsgate_home: Path, tmp_path: Path) -> None:
    # an organization (store, DNS provider) name may hold blanks: the hint's command was printed
    # unquoted, so pasting it created an organization named 'Big' with a stray argument
    import shlex

    res = tg("cert", "assign", "1", "--org", "Big Co")
    assert res.returncode == 2, res.stderr
    hint = res.stderr.split("create it with: ", 1)[1].rstrip().removesuffix(")")
    assert shlex.split(hint) == ["tlsgate", "org", "add", "Big Co"], res.stderr
    res = tg("store", "add", "local", "--name", "my store")
    assert res.returncode == 0, res.stderr
    hint = res.stdout.split("Check it with: ", 1)[1].strip()
    assert shlex.split(hint) == ["tlsgate", "store", "test", "my store"], res.stdout
