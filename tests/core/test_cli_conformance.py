"""The command line against the vendor document and the README's contract, as a script drives it
(subprocess, stdout piped): every failing command given ``--json`` still writes one JSON
document (the error, its exit status) to standard output, ranges such as ``--limit`` are
checked, an empty password or a WinRM login without a user is refused when the endpoint is
added, not at the first job."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tlsgate import ValidationError
from tlsgate_testing.cli import ok, tg

SECRET = "S3cr3t-conformance"




@pytest.fixture
def pem_file(tmp_path: Path, test_ca) -> Path:  # type: ignore[no-untyped-def]
    issued = test_ca.issue("app.example.org")
    path = tmp_path / "app.pem"
    path.write_bytes(issued.cert_pem + issued.key_pem)
    return path


def test_json_errors_are_one_json_document(tlsgate_home: Path, pem_file: Path) -> None:
    ok("tls", "add", "pem", "--name", "undelegated", "--connection_type", "local", "--path", str(pem_file))
    failing = [
        # invalid input (exit 2), with a secret on the command line that must not be echoed
        (["tls", "add", "pem", "--name", "x", "--connection_type", "rest", "--path", str(pem_file),
          "--password", SECRET], 2, "--connection_type: must be one of"),
        (["tls", "show", "nope"], 2, "no endpoint named or with ID 'nope'"),
        (["cert", "show", "999"], 2, "no certificate '999'"),
        # a usage error of the command line parser itself (exit 2)
        (["log", "--limit", "abc"], 2, "--limit"),
        (["tls", "add", "pem", "--name", "x", "--no_such_flag", "1"], 2, "No such option: --no_such_flag"),
        # the operation failed (exit 1)
        (["tls", "discover", "undelegated"], 1, "not delegated"),
    ]
    for args, code, message in failing:
        res = tg(*args, "--json")
        assert res.returncode == code, (args, res.stderr)
        assert "Traceback" not in res.stderr
        doc = json.loads(res.stdout)  # one document, nothing else on stdout
        assert doc["exit_code"] == code and message in doc["error"], (args, doc)
        assert message in res.stderr  # people (and logs) still get the error line
        assert SECRET not in res.stdout + res.stderr
    # the same commands without --json print nothing on stdout
    assert tg("tls", "show", "nope").stdout == ""


def _pem_endpoint_and_script(pem_file: Path, tmp_path: Path, body: str) -> Path:
    """pem endpoint ``p`` on ``pem_file``, and an executable sh script running ``body``."""
    script = tmp_path / "fail.sh"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    ok("tls", "add", "pem", "--name", "p", "--connection_type", "local", "--path", str(pem_file))
    return script


def test_json_error_after_a_json_result_is_not_a_second_document(tlsgate_home: Path, pem_file: Path,
                                                                  tmp_path: Path) -> None:
    script = _pem_endpoint_and_script(pem_file, tmp_path, "echo out\necho oops >&2\nexit 3")
    res = tg("tls", "run-script", "p", str(script), "--json")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert doc["exit_code"] == 3 and doc["stderr"] == "oops\n" and "error" not in doc


def test_run_script_failure_says_the_exit_status(tlsgate_home: Path, pem_file: Path, tmp_path: Path) -> None:
    script = _pem_endpoint_and_script(pem_file, tmp_path, "echo partial output\necho 'disk full' >&2\nexit 3")
    res = tg("tls", "run-script", "p", str(script), "a b")
    assert res.returncode == 1
    assert res.stdout == "partial output\n"
    assert res.stderr.splitlines() == ["warning: disk full", f"error: {script} exited with status 3"]


@pytest.mark.parametrize("command", [["log"], ["job", "list"]])
@pytest.mark.parametrize("limit", ["0", "-1"])
def test_limit_must_be_positive(tlsgate_home: Path, command: list[str], limit: str) -> None:
    res = tg(*command, "--limit", limit)
    assert res.returncode == 2 and res.stderr.strip() == "error: --limit: must be at least 1"
    assert ok(*command, "--limit", "1")


def test_empty_passwords_are_refused(tlsgate_home: Path, pem_file: Path, tmp_path: Path) -> None:
    key = tmp_path / "id_test"
    key.write_text("not checked at add time\n")
    base = ["tls", "add", "pem", "--path", "/srv/app.pem", "--connection_type", "ssh", "--host", "app.example"]
    cases = [
        ([*base, "--name", "a", "--password", ""], "--password"),
        ([*base, "--name", "b", "--ssh_key_path", str(key), "--ssh_key_password", ""], "--ssh_key_password"),
        (["tls", "add", "pem", "--name", "c", "--connection_type", "winrm_https", "--host", "w.example", "--user",
          "u", "--password", "", "--path", "C:\\app.pem"], "--password"),
    ]
    for args, flag in cases:
        res = tg(*args)
        assert res.returncode == 2, res.stdout
        assert res.stderr.strip() == f"error: {flag}: must be between 1 and 1024 characters"
    # an empty line on standard input is an empty password too
    res = tg(*base, "--name", "d", "--password", "-", stdin="\n")
    assert res.returncode == 2 and "--password: must be between 1 and 1024" in res.stderr
    ok(*base, "--name", "e", "--user", "deploy", "--password", "-", stdin=SECRET + "\n")
    res = tg("tls", "set", "e", "--password", "")
    assert res.returncode == 2 and "--password: must be between 1 and 1024" in res.stderr
    assert json.loads(ok("tls", "show", "e", "--json").stdout)["connection"]["password"] == "********"


@pytest.mark.parametrize("ctype", ["winrm_http", "winrm_https", "winrm_https_insecure"])
def test_winrm_password_needs_a_user(tlsgate_home: Path, ctype: str) -> None:
    res = tg("tls", "add", "pem", "--name", "w", "--connection_type", ctype, "--host", "w.example",
             "--password", SECRET, "--path", "C:\\app.pem")
    assert res.returncode == 2 and SECRET not in res.stderr
    assert res.stderr.strip() == f"error: --user: is required with --password over {ctype}"
    ok("tls", "add", "pem", "--name", "w", "--connection_type", ctype, "--host", "w.example", "--user", "admin",
       "--password", SECRET, "--path", "C:\\app.pem")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=st.text(max_size=1100), user=st.one_of(st.none(), st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=20)),
       ctype=st.sampled_from(["ssh", "winrm_https"]))
def test_connection_password_rule(tlsgate_home: Path, password: str, user: str | None, ctype: str) -> None:
    """Any password (any characters): stored when it is 1 to 1024 characters and, over WinRM,
    there is a user; otherwise a ValidationError naming the flag; never anything else."""
    from tlsgate.api import Gateway

    gw = Gateway()
    fields = {"name": "p", "connection_type": ctype, "host": "h.example", "user": user, "password": password,
              "options": {"path": "/srv/app.pem" if ctype == "ssh" else "C:\\app.pem"}}
    try:
        endpoint, _ = gw._build_endpoint("pem", fields)
    except ValidationError as exc:
        expected = {"--password"} if not 1 <= len(password) <= 1024 else set()
        if ctype != "ssh" and user is None:
            expected.add("--user")
        assert exc.option in expected, (exc, password[:20], user)
        if len(password.strip()) >= 6:  # (a short one may be a word of the message by chance)
            assert password not in str(exc)
    else:
        assert 1 <= len(password) <= 1024 and (ctype == "ssh" or user is not None)
        assert endpoint.connection.password is not None and endpoint.connection.password.reveal() == password


#: The reference document's description of each option of ``tls add <type>`` (its "Option
#: Description" tables): the help of each flag starts with the description and states each limit.
DOC_OPTIONS: dict[str, dict[str, list[str]]] = {
    "all": {"--name": ["The name of the", "Must be between 1 and 32 characters"],
            "--connection_type": ["The connection type"],
            "--host": ["hostname", "Must be between 1 and 255 characters"],
            "--port": ["port", "Must be an integer between 1 and 65535"],
            "--user": ["The username for authentication"], "--password": ["The password for authentication"],
            "--ssh_key_path": ["The path to the SSH key file"], "--ssh_key_password": ["The password for the SSH key"],
            "--store": ["The credential store name"], "--store_cred_id": ["The credential store ID"]},
    "apache": {"--apachectl_path": ["The path to apachectl", "Must be between 1 and 4096 characters"]},
    "tomcat": {"--tomcat_dir": ["The path to the Tomcat directory", "for example /opt/tomcat",
                                "Must be at least 1 character long"]},
    "nginx": {"--nginx_config_path": ["The path to the Nginx config file", "Must be between 1 and 4096 characters"]},
    "p12": {"--path": ["The path to the keystore or certificate file"], "--store_password": ["The keystore password"],
            "--install_script": ["The path to the install script"],
            "--restart_script": ["The path to the restart script"],
            "--is_legacy": ["Specifies which password-based encryption (PBE) scheme is used to encrypt the PKCS#8 "
                            "private key inside the PKCS#12 ShroudedKeyBag", "Defaults to false"]},
    "jks": {"--path": ["The path to the keystore or certificate file"], "--store_password": ["The keystore password"],
            "--install_script": ["The path to the install script"],
            "--restart_script": ["The path to the restart script"]},
    "pem": {"--path": ["The path to the file"], "--install_script": ["The path to the install script"],
            "--restart_script": ["The path to the restart script"]},
    "iis": {}, "f5": {},
}


def _option_helps(type_name: str) -> dict[str, str]:
    """``tls add TYPE --help`` as {flag: its help text on one line}."""
    import re

    text = ok("tls", "add", type_name, "--help").stdout.split("Options:", 1)[1]
    helps: dict[str, str] = {}
    flag = None
    for line in text.splitlines():
        m = re.match(r"^  (--\w+)(?: (?:<[^>]*>|[A-Z][A-Z-]*))?", line)
        if m:
            flag = m.group(1)
            helps[flag] = line[m.end():]
        elif flag:
            helps[flag] += " " + line.strip()
    return {k: " ".join(v.split()) for k, v in helps.items()}


@pytest.mark.parametrize("type_name", sorted(set(DOC_OPTIONS) - {"all"}))
def test_add_help_says_what_the_reference_document_says(tlsgate_home: Path, type_name: str) -> None:
    helps = _option_helps(type_name)
    for flag, phrases in {**DOC_OPTIONS["all"], **DOC_OPTIONS[type_name]}.items():
        assert flag in helps, (type_name, flag)
        for phrase in phrases:
            assert phrase in helps[flag], (type_name, flag, phrase, helps[flag])
        # the generated parts of a help (the stdin note, the default) are said once
        assert helps[flag].count("standard input") <= 1 and helps[flag].count("efault") <= 1, (flag, helps[flag])


@pytest.mark.parametrize(("args", "message"), [
    (["--url", "vault.example:8200", "--token", SECRET], "--url: must be an http:// or https:// URL with a host, e.g. https://vault.example:8200"),
    (["--url", "https://", "--token", SECRET], "--url: must be an http:// or https:// URL with a host, e.g. https://vault.example:8200"),
    (["--url", "https://vault.example:99999", "--token", SECRET], "--url: the port must be between 1 and 65535"),
    (["--url", "https://vault.example"], "--token: give --token, or --role_id with --secret_id"),
    (["--url", "https://vault.example", "--role_id", "r"], "--secret_id: is required with --role_id"),
    (["--url", "https://vault.example", "--secret_id", SECRET], "--role_id: is required with --secret_id"),
    (["--url", "https://vault.example", "--token", SECRET, "--ca_bundle", "/nonexistent/ca.pem"],
     "--ca_bundle: /nonexistent/ca.pem: no such file"),
])
def test_vault_store_add_checks_url_and_credentials(tlsgate_home: Path, args: list[str], message: str) -> None:
    res = tg("store", "add", "vault", "--name", "corp", *args)
    assert res.returncode == 2 and res.stderr.strip() == f"error: {message}"
    assert SECRET not in res.stdout + res.stderr
    assert json.loads(ok("store", "list", "--json").stdout) == []


def test_vault_store_add_accepts_what_it_can_use(tlsgate_home: Path, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("checked when the store is used\n")
    ok("store", "add", "vault", "--name", "a", "--url", "http://127.0.0.1:8200", "--token", SECRET)
    ok("store", "add", "vault", "--name", "b", "--url", "https://[::1]:8200/", "--role_id", "r", "--secret_id", "-",
       "--ca_bundle", str(ca), stdin=SECRET + "\n")
    assert [s["name"] for s in json.loads(ok("store", "list", "--json").stdout)] == ["a", "b"]


@settings(max_examples=300, deadline=None)
@given(url=st.one_of(st.text(max_size=60), st.builds(lambda s, h, p: f"{s}://{h}{p}",
                                                      st.sampled_from(["http", "https", "ftp", ""]),
                                                      st.text(max_size=20), st.text(max_size=10))))
def test_vault_url_rule(url: str) -> None:
    """Any --url: accepted only as http(s) with a host (and a valid port); never an exception."""
    from urllib.parse import urlsplit

    from tlsgate.credstores.vault import VaultOptions, check_options
    from tlsgate.secret import Secret

    problems = check_options(VaultOptions(url=url, token=Secret("t")))  # type: ignore[arg-type]
    if not problems:
        parts = urlsplit(url)
        assert parts.scheme in ("http", "https") and parts.hostname
        assert parts.port is None or 1 <= parts.port <= 65535
    else:
        assert [p.option for p in problems] == ["--url"]


@pytest.mark.parametrize("command", [["tls", "verify"], ["tls", "discover"], ["tls", "nodes"], ["tls", "restart"]])
def test_selector_mistakes_are_named(tlsgate_home: Path, pem_file: Path, command: list[str]) -> None:
    ok("tls", "add", "pem", "--name", "p", "--connection_type", "local", "--path", str(pem_file))
    res = tg(*command, "--type", "nosuchtype")
    assert res.returncode == 2 and res.stderr.strip().startswith(
        "error: --type: no endpoint type 'nosuchtype' (installed: "), res.stdout
    res = tg(*command, "--department", "Web")
    assert res.returncode == 2 and res.stderr.strip() == "error: --department: needs --org"


def test_set_with_an_empty_value_removes_an_optional_setting(tlsgate_home: Path, pem_file: Path,
                                                              tmp_path: Path) -> None:
    """``tls set E --option ''`` puts an optional setting back to its default (a wrong
    --install_script or --tomcat_service could otherwise only be fixed by removing the endpoint,
    its delegation and history); a required one or a connection secret is still refused."""
    script = tmp_path / "reload.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    ok("tls", "add", "pem", "--name", "p", "--connection_type", "local", "--path", str(pem_file),
       "--install_script", str(script))
    instance = json.loads(ok("tls", "show", "p", "--json").stdout)["instance_id"]
    assert "--install_script" in ok("tls", "set", "p", "--install_script", "").stdout
    shown = json.loads(ok("tls", "show", "p", "--json").stdout)
    assert shown["options"]["install_script"] is None and shown["instance_id"] == instance
    res = tg("tls", "set", "p", "--path", "")
    assert res.returncode == 2 and res.stderr.strip() == "error: --path: is required"


def test_show_is_an_aligned_table_of_plain_values(tlsgate_home: Path) -> None:
    ok("tls", "add", "pem", "--name", "w", "--connection_type", "winrm_https_insecure", "--host", "w.example",
       "--user", "admin", "--password", SECRET, "--path", "C:\\app.pem")
    lines = ok("tls", "show", "w").stdout.splitlines()
    rows = dict(line.split(None, 1) if len(line.split(None, 1)) == 2 else (line.strip(), "") for line in lines)
    assert rows["connection.password"] == "********" and SECRET not in "\n".join(lines)
    assert rows["connection.type"] == "winrm_https_insecure" and rows["organization"] == "-"
    assert rows["install_script"] == "-" and rows["script_sudo"] == "false"  # not Python's None / False
    value_column = {len(line) - len(line.split(None, 1)[1]) for line in lines
                    if not line.startswith("tls verification")}
    assert len(value_column) == 1, lines  # every value starts in the same column


def test_an_option_without_its_value_is_named_and_never_echoes_a_secret(tlsgate_home: Path) -> None:
    """``--user --password S3cr3t``: the parser took '--password' as the user name and printed
    'Got unexpected extra argument(s) (S3cr3t)', the password, to stderr (and CI logs);
    ``--user --json`` stored the user name '--json'."""
    base = ["tls", "add", "pem", "--name", "x", "--connection_type", "ssh", "--host", "h.example", "--path", "/a.pem"]
    for args, flag, following in ((["--user", "--password", SECRET], "--user", "--password"),
                                  (["--user", "--json"], "--user", "--json"),
                                  (["--ssh_key_path", "--store_cred_id", "x"], "--ssh_key_path", "--store_cred_id")):
        res = tg(*base, *args)
        assert res.returncode == 2 and SECRET not in res.stdout + res.stderr
        assert res.stderr.strip() == f"error: {flag}: needs a value ({following} is the next option)"
    assert json.loads(ok("tls", "list", "--json").stdout) == []
    # any stray word is refused without being shown: it may be half of an unquoted password
    res = tg(*base, "--password", "half", SECRET)
    assert res.returncode == 2 and SECRET not in res.stdout + res.stderr
    assert "Got unexpected extra argument(s) (not shown" in res.stderr
    res = tg("tls", "set", "nope", "--user", "--port", "22")
    assert res.returncode == 2 and res.stderr.strip() == "error: --user: needs a value (--port is the next option)"


def test_add_refuses_an_option_given_twice(tlsgate_home: Path, pem_file: Path) -> None:
    """``tls add ... --name a ... --name b`` added 'b' (the parser keeps the last); ``tls set``
    already refuses a repeated option. A repeatable one (--ssh_jump) may still be repeated."""
    res = tg("tls", "add", "pem", "--name", "a", "--connection_type", "local", "--path", str(pem_file), "--name", "b")
    assert res.returncode == 2 and res.stderr.strip() == "error: --name: given twice"
    res = tg("tls", "add", "pem", "--name", "a", "--connection_type", "ssh", "--host", "h.example", "--path", "/a",
             "--port", "22", "--port=2222")
    assert res.returncode == 2 and res.stderr.strip() == "error: --port: given twice"
    ok("tls", "add", "pem", "--name", "a", "--connection_type", "ssh", "--host", "h.example", "--path", "/a",
       "--ssh_jump", "b1.example", "--ssh_jump", "b2.example")
    assert json.loads(ok("tls", "list", "--json").stdout)[0]["name"] == "a"
