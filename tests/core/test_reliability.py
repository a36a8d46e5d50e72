"""Reliability of the core, through the real ``tlsgate`` command (and the library where the
point is a primitive): master keys, what a bundle must be, input caps, escaping of human
output, argument hygiene, ``tls set``, small ones (store remove, URL userinfo, manifest mode,
``--dry-run`` quoting), lost updates refused by the transaction, symlinks kept on rollback."""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from tlsgate import OperationError, Transaction, ValidationError
from tlsgate.cli.output import escape
from tlsgate.errors import FileChanged
from tlsgate.transports.local import LocalConnection
from tlsgate.validate import BIDI, check_alias, check_host, check_name
from tlsgate_testing.certs import TestCA
from tlsgate_testing.interrupt import tlsgate_cli


@pytest.fixture
def cli(tmp_path: Path) -> Any:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    run = tlsgate_cli(home)
    run.home = home  # type: ignore[attr-defined]
    return run


def _certdir(cli: Any, folder: Path, name: str = "cd", *extra: str) -> None:
    folder.mkdir(exist_ok=True)
    res = cli("tls", "add", "certdir", "--name", name, "--connection_type", "local", "--dir", str(folder), *extra)
    assert res.returncode == 0, res.stderr
    cli("org", "add", "acme")
    assert cli("tls", "delegate", name, "--org", "acme").returncode == 0


def _pem_files(directory: Path, cert: x509.Certificate, key: Any, chain: bytes | None = None) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    args = ["--cert", str(directory / "c.pem"), "--key", str(directory / "k.pem")]
    if chain is not None:
        (directory / "chain.pem").write_bytes(chain)
        args += ["--chain", str(directory / "chain.pem")]
    return args


def _self_issued(cn: str, *, days: tuple[int, int] = (-1, 30), ca: bool = False) -> tuple[x509.Certificate, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now + dt.timedelta(days=days[0]))
               .not_valid_after(now + dt.timedelta(days=days[1]))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False))
    return builder.sign(key, hashes.SHA256()), key


# -- 1: lost updates ------------------------------------------------------------------------------
def test_transaction_refuses_a_file_changed_since_it_was_read(tmp_path: Path) -> None:
    path = tmp_path / "site.conf"
    path.write_bytes(b"v0")
    read = path.read_bytes()
    path.write_bytes(b"someone else's edit")
    with pytest.raises(OperationError, match="changed since this job read it"), Transaction(LocalConnection()) as tx:
        tx.write(str(path), read + b" + mine", base=read)
    assert path.read_bytes() == b"someone else's edit"


def test_write_file_if_compares_just_before_the_rename(tmp_path: Path) -> None:
    path = tmp_path / "ks"
    path.write_bytes(b"v0")
    conn = LocalConnection()
    with pytest.raises(FileChanged):
        conn.write_file_if(str(path), b"new", expect=b"other")
    assert path.read_bytes() == b"v0" and not [p for p in tmp_path.iterdir() if p.name.startswith(".tlsgate-")]
    conn.write_file_if(str(path), b"new", expect=b"v0")
    assert path.read_bytes() == b"new"


def test_rollback_says_when_a_file_changed_after_the_job_wrote_it(tmp_path: Path) -> None:
    path = tmp_path / "site.conf"
    path.write_bytes(b"v0")
    with pytest.raises(OperationError, match=r"every change was restored.*no longer held what this job wrote"), \
            Transaction(LocalConnection()) as tx:
        tx.write(str(path), b"mine")
        path.write_bytes(b"theirs")  # another writer after ours
        raise RuntimeError("config test failed")
    assert path.read_bytes() == b"v0"


# -- 2: symlinks (local; ssh in the keystores and nginx tests) --------------------------------
def test_install_and_rollback_write_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "available" / "x.conf"
    target.parent.mkdir()
    target.write_bytes(b"old")
    link = tmp_path / "x.conf"
    link.symlink_to(Path("available") / "x.conf")
    with Transaction(LocalConnection()) as tx:
        tx.write(str(link), b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"
    with pytest.raises(OperationError, match="restored"), Transaction(LocalConnection()) as tx:
        tx.write(str(link), b"newer")
        raise RuntimeError("boom")
    assert link.is_symlink() and target.read_bytes() == b"new"


# -- 4: master keys -------------------------------------------------------------------------------
def test_missing_master_key_is_not_recreated_and_list_show_remove_work(tmp_path: Path, cli: Any) -> None:
    folder = tmp_path / "certs"
    _certdir(cli, folder)
    res = cli("tls", "add", "certdir", "--name", "remote", "--connection_type", "ssh", "--host", "127.0.0.1",
              "--user", "u", "--password", "-", "--dir", "/srv/certs", stdin="pw\n")
    assert res.returncode == 0, res.stderr
    (cli.home / "master.key").unlink()  # a cron job without TLSGATE_MASTER_KEY, a lost file
    listed = cli("tls", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert not (cli.home / "master.key").exists()
    shown = cli("tls", "show", "remote")
    assert shown.returncode == 0 and "********" in shown.stdout, shown.stderr
    again = cli("tls", "add", "certdir", "--name", "other", "--connection_type", "ssh", "--host", "127.0.0.1",
                "--user", "u", "--password", "-", "--dir", "/x", stdin="pw\n")
    assert again.returncode == 1 and "master.key is missing" in again.stderr and "no new key" in again.stderr
    assert not (cli.home / "master.key").exists()
    wrong = cli("tls", "test", "remote", env={"TLSGATE_MASTER_KEY": "a different passphrase"})
    assert wrong.returncode == 1 and "not the one" in wrong.stdout + wrong.stderr
    removed = cli("tls", "remove", "remote")
    assert removed.returncode == 0, removed.stderr


def test_undecryptable_secret_names_the_endpoint(tmp_path: Path, cli: Any) -> None:
    res = cli("tls", "add", "certdir", "--name", "remote", "--connection_type", "ssh", "--host", "127.0.0.1",
              "--user", "u", "--password", "-", "--dir", "/srv/certs", stdin="pw\n")
    assert res.returncode == 0, res.stderr
    (cli.home / "master.key").write_bytes(b"")  # replaced by something else
    import sqlite3

    db = sqlite3.connect(cli.home / "inventory.sqlite3")
    db.execute("DELETE FROM meta")  # even without the check value
    db.commit()
    db.close()
    from cryptography.fernet import Fernet

    (cli.home / "master.key").write_bytes(Fernet.generate_key())
    out = cli("tls", "test", "remote", "--json")
    assert "endpoint 'remote'" in out.stdout + out.stderr


def test_old_inventory_without_check_value_verifies_the_key_before_adopting_it(cli: Any) -> None:
    """An inventory from before key check values (secrets, no check value): a key is adopted
    (its check value written) only once it decrypted one of the secrets; another key is refused,
    naming the endpoint, and leaves no check value behind that would lock the right key out."""
    import sqlite3

    from cryptography.fernet import Fernet

    add = ("tls", "add", "certdir", "--connection_type", "ssh", "--host", "127.0.0.1", "--user", "u",
           "--password", "-", "--dir", "/srv/certs")
    res = cli(*add, "--name", "remote", stdin="pw\n")
    assert res.returncode == 0, res.stderr
    right = (cli.home / "master.key").read_bytes()

    def check_values() -> list[str]:
        db = sqlite3.connect(cli.home / "inventory.sqlite3")
        try:
            return [r[0] for r in db.execute("SELECT value FROM meta WHERE key = 'master_key_check'")]
        finally:
            db.close()

    db = sqlite3.connect(cli.home / "inventory.sqlite3")
    db.execute("DELETE FROM meta WHERE key = 'master_key_check'")  # the old inventory
    db.commit()
    db.close()
    (cli.home / "master.key").write_bytes(Fernet.generate_key())  # someone else's key
    wrong = cli(*add, "--name", "second", stdin="pw\n")
    assert wrong.returncode == 1 and "cannot decrypt the secret of endpoint 'remote'" in wrong.stderr, wrong.stderr
    assert "Traceback" not in wrong.stderr and check_values() == []
    wrong_env = cli(*add, "--name", "second", stdin="pw\n", env={"TLSGATE_MASTER_KEY": "a passphrase"})
    assert wrong_env.returncode == 1 and "endpoint 'remote'" in wrong_env.stderr and check_values() == []

    (cli.home / "master.key").write_bytes(right)
    ok = cli(*add, "--name", "second", stdin="pw\n")
    assert ok.returncode == 0, ok.stderr
    (value,) = check_values()
    assert Fernet(right).decrypt(value.encode())  # the verified key's check value
    assert cli("tls", "show", "second").returncode == 0


def test_gateways_sharing_a_postgresql_inventory_share_its_key_check(tmp_path: Path, postgres_database: str) -> None:
    """The check value lives in the inventory, also on PostgreSQL: a second gateway (its own
    home) with another master key is refused before it seals anything; with the check value
    gone (an old inventory), refused naming the endpoint whose secret it tried."""
    import psycopg
    from cryptography.fernet import Fernet

    key_a, key_b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    homes = [tmp_path / "gw-a", tmp_path / "gw-b"]
    for h in homes:
        h.mkdir(mode=0o700)
    gw_a, gw_b = (tlsgate_cli(h) for h in homes)
    env_a = {"TLSGATE_DATABASE_URL": postgres_database, "TLSGATE_MASTER_KEY": key_a}
    env_b = {"TLSGATE_DATABASE_URL": postgres_database, "TLSGATE_MASTER_KEY": key_b}
    add = ("tls", "add", "certdir", "--connection_type", "ssh", "--host", "127.0.0.1", "--user", "u",
           "--password", "-", "--dir", "/srv/certs")
    assert gw_a(*add, "--name", "remote", stdin="pw\n", env=env_a).returncode == 0
    refused = gw_b(*add, "--name", "second", stdin="pw\n", env=env_b)
    assert refused.returncode == 1 and "key check value differs" in refused.stderr, refused.stderr
    with psycopg.connect(postgres_database, autocommit=True) as db:
        db.execute("DELETE FROM meta WHERE key = 'master_key_check'")
    refused = gw_b(*add, "--name", "second", stdin="pw\n", env=env_b)
    assert refused.returncode == 1 and "cannot decrypt the secret of endpoint 'remote'" in refused.stderr
    with psycopg.connect(postgres_database, autocommit=True) as db:
        assert db.execute("SELECT COUNT(*) FROM meta WHERE key = 'master_key_check'").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM endpoints").fetchone()[0] == 1
    assert gw_a(*add, "--name", "second", stdin="pw\n", env=env_a).returncode == 0  # the right key


def test_thirty_processes_create_one_master_key(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    home.mkdir(mode=0o700)
    code = "from tlsgate import crypto; print(crypto.encrypt('x'))"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TLSGATE_")}, "TLSGATE_HOME": str(home)}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(30)]
    results = [(*p.communicate(timeout=180), p.returncode) for p in procs]
    assert all(rc == 0 for _o, _e, rc in results), [e for _o, e, rc in results if rc]
    from cryptography.fernet import Fernet

    key = Fernet((home / "master.key").read_bytes())
    assert {key.decrypt(o.strip()[len("enc:v1:"):].encode()) for o, _e, _rc in results} == {b"x"}
    assert stat.S_IMODE((home / "master.key").stat().st_mode) == 0o600
    assert [p.name for p in home.iterdir() if p.name.startswith(".master")] == []


# -- 5: what a bundle must be ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA("reliability")


def test_bundle_refusals_are_one_line(tmp_path: Path, cli: Any, ca: TestCA) -> None:
    folder = tmp_path / "certs"
    _certdir(cli, folder)
    expired_cert, expired_key = _self_issued("old.test", days=(-30, -1))
    future_cert, future_key = _self_issued("future.test", days=(5, 30))
    ca_cert, ca_key = _self_issued("my ca", ca=True)
    good = ca.issue("good.test")
    other = TestCA("unrelated")
    cases = [
        (_pem_files(tmp_path / "e", expired_cert, expired_key), "expired"),
        (_pem_files(tmp_path / "f", future_cert, future_key), "not valid before"),
        (_pem_files(tmp_path / "ca", ca_cert, ca_key), "CA certificate (CA:TRUE), not a leaf"),
        (_pem_files(tmp_path / "u", good.cert, good.key, other.intermediate.public_bytes(serialization.Encoding.PEM)), "does not lead to the leaf's issuer"),
        (_pem_files(tmp_path / "z", good.cert, good.key, b""), "--chain"),
    ]
    for args, needle in cases:
        res = cli("tls", "install", "cd", *args)
        assert res.returncode == 2, (needle, res.stderr)
        assert needle in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert not list(folder.iterdir())
    forced = cli("tls", "install", "cd", *cases[0][0], "--force")
    assert forced.returncode == 0, forced.stderr
    entry = [e for e in json.loads(cli("log", "--json").stdout) if e["action"] == "tls install"][-1]
    assert entry["result"] == "ok" and "expired" in entry["details"]["forced"]
    assert "not a root this gateway trusts" in forced.stderr


def test_empty_chain_file_is_refused_by_the_library(ca: TestCA) -> None:
    from tlsgate import CertificateBundle

    good = ca.issue("good.test")
    with pytest.raises(ValidationError, match="--chain: is empty"):
        CertificateBundle.from_pem(good.cert_pem, good.key_pem, b"\n")


# -- 6: input size ----------------------------------------------------------------------------------
def test_bytes_read_are_capped(tmp_path: Path, cli: Any) -> None:
    folder = tmp_path / "certs"
    _certdir(cli, folder)
    res = cli("tls", "install", "cd", "--cert", "/dev/zero", "--key", "/dev/zero", timeout=60)
    assert res.returncode == 2 and "too large" in res.stderr and "--cert" in res.stderr
    pfx = cli("tls", "install", "cd", "--pfx", "/dev/zero", timeout=60)
    assert pfx.returncode == 2 and "too large" in pfx.stderr and "--pfx" in pfx.stderr, pfx.stderr
    # a pipe (st_size 0) that never ends: the cap is on the bytes read
    import threading

    ca = TestCA("caps")
    leaf = ca.issue("caps.test")
    crt, key, _chain = leaf.write(tmp_path / "in", "c")
    fifo = tmp_path / "chain.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        try:
            with open(fifo, "wb") as fh:
                while True:
                    fh.write(b"A" * 65536)
        except OSError:
            pass  # the reader stopped at the cap and closed its end

    threading.Thread(target=feed, daemon=True).start()
    piped = cli("tls", "install", "cd", "--cert", str(crt), "--key", str(key), "--chain", str(fifo), timeout=60)
    assert piped.returncode == 2 and "too large" in piped.stderr and "--chain" in piped.stderr, piped.stderr
    assert cli("store", "add", "local", "--name", "s").returncode == 0
    big = cli("store", "put", "s", "--store_cred_id", "k", "--ssh_key_path", "/dev/zero", timeout=60)
    assert big.returncode == 2 and "--ssh_key_path" in big.stderr and "too large" in big.stderr


# -- 8: terminal escapes ------------------------------------------------------------------------------
def test_control_characters_of_data_are_escaped(tmp_path: Path, cli: Any, ca: TestCA) -> None:
    folder = tmp_path / "certs"
    _certdir(cli, folder)
    evil = ca.issue("evil.test", cn="evil\x1b[2J\nfake row\x08")
    # a file name (the node's name) and a subject with ESC sequences, a newline and a backspace
    (folder / "evil\x1b[2J\nfake row\x08.crt").write_bytes(evil.cert_pem)
    for args in (("tls", "discover", "cd"), ("tls", "nodes", "cd"), ("cert", "list")):
        res = cli(*args)
        assert res.returncode == 0, res.stderr
        assert "\x1b" not in res.stdout and "\x08" not in res.stdout
        if args[1] != "discover":  # discover prints a summary line; nodes and cert list show the data
            assert "\\x1b[2J\\nfake row\\x08" in res.stdout
        assert not any(line.lstrip("│ ").startswith("fake row") for line in res.stdout.splitlines())


@given(st.text(max_size=40))
def test_escape_leaves_no_control_character(text: str) -> None:
    out = escape(text)
    assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c in BIDI for c in out)
    if all(ord(c) >= 32 and not 0x7F <= ord(c) < 0xA0 and c not in BIDI for c in text):
        assert out == text


# -- 10: argument hygiene -----------------------------------------------------------------------------
@given(st.text(max_size=40))
def test_alias_rule(alias: str) -> None:
    bad = (not alias or not alias.strip() or alias.startswith("-") or len(alias) > 255
           or any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c in BIDI or 0xD800 <= ord(c) < 0xE000 for c in alias))
    if bad:
        with pytest.raises(ValidationError, match=r"^--alias: "):
            check_alias(alias)
    else:
        assert check_alias(alias) == alias


@given(st.text(max_size=40))
def test_name_rule_refuses_blank_and_bidi(name: str) -> None:
    bad = (not 1 <= len(name) <= 32 or not name.strip()
           or any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c in BIDI or 0xD800 <= ord(c) < 0xE000 for c in name))
    if bad:
        with pytest.raises(ValidationError, match=r"^--name: "):
            check_name(name, "--name")
    else:
        assert check_name(name, "--name") == name


_label = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z")


@settings(max_examples=60)
@given(st.lists(_label, min_size=1, max_size=4))
def test_host_names_accepted(labels: list[str]) -> None:
    host = ".".join(labels)
    if all(c.isdigit() or c == "." for c in host):
        return  # all-numeric: an IPv4 address or nothing
    assert check_host(host) == host


@settings(max_examples=60)
@given(st.ip_addresses())
def test_ip_addresses_accepted(ip: Any) -> None:
    assert check_host(str(ip)) == str(ip)
    if ip.version == 6:
        assert check_host(f"[{ip}]") == str(ip)


@pytest.mark.parametrize("host", ["127.0.0.1;x", "[::1", "a" * 255, "999.1.1.1", "a..b", "-a.example", "a b",
                                  "host\u202e", "[127.0.0.1]", "x" * 64 + ".example"])
def test_bad_hosts_refused_at_add(host: str, cli: Any) -> None:
    res = cli("tls", "add", "certdir", "--name", "r", "--connection_type", "ssh", "--host", host,
              "--user", "u", "--password", "pw", "--dir", "/x")
    assert res.returncode == 2 and res.stderr.startswith("error: --host: ") and res.stderr.count("\n") == 1, res.stderr


@pytest.mark.parametrize("name", ["   ", "evil\u202eexe"])
def test_blank_and_bidi_names_refused(name: str, cli: Any, tmp_path: Path) -> None:
    res = cli("tls", "add", "certdir", "--name", name, "--connection_type", "local", "--dir", str(tmp_path))
    assert res.returncode == 2 and "--name" in res.stderr
    org = cli("org", "add", name)
    assert org.returncode == 2


def test_run_script_needs_an_absolute_path(tmp_path: Path, cli: Any) -> None:
    _certdir(cli, tmp_path / "certs")
    (tmp_path / "id").write_text("#!/bin/sh\necho not this\n")
    res = cli("tls", "run-script", "cd", "./id")
    assert res.returncode == 2 and "absolute path" in res.stderr
    res = cli("tls", "run-script", "cd", "id")
    assert res.returncode == 2 and "absolute path" in res.stderr


# -- 11: small ones -------------------------------------------------------------------------------
def test_tls_set_changes_a_secret_keeping_delegation_and_history(tmp_path: Path, cli: Any) -> None:
    res = cli("tls", "add", "certdir", "--name", "remote", "--connection_type", "ssh", "--host", "127.0.0.1",
              "--user", "u", "--password", "-", "--dir", "/srv/certs", stdin="old-pw\n")
    assert res.returncode == 0, res.stderr
    cli("org", "add", "acme")
    assert cli("tls", "delegate", "remote", "--org", "acme").returncode == 0
    before = json.loads(cli("tls", "show", "remote", "--json").stdout)
    done = cli("tls", "set", "remote", "--password", "-", "--dir=/srv/other", "--port", "2222", stdin="new-pw\n")
    assert done.returncode == 0, done.stderr
    after = json.loads(cli("tls", "show", "remote", "--json").stdout)
    assert after["instance_id"] == before["instance_id"] and after["organization"] == "acme"
    assert after["options"]["dir"] == "/srv/other" and after["connection"]["port"] == 2222
    raw = b"".join(p.read_bytes() for p in cli.home.rglob("*") if p.is_file())
    assert b"new-pw" not in raw and b"new-pw" not in (done.stdout + done.stderr).encode()
    entry = [e for e in json.loads(cli("log", "--json").stdout) if e["action"] == "tls set"][-1]
    assert entry["details"]["changed"] == ["dir", "password", "port"]
    bad = cli("tls", "set", "remote", "--port", "99999")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --port: ")
    unknown = cli("tls", "set", "remote", "--nginx_config_path", "/x")
    assert unknown.returncode == 2 and "--nginx_config_path" in unknown.stderr
    renamed = cli("tls", "set", "remote", "--name", "x")
    assert renamed.returncode == 2 and "--name" in renamed.stderr


def test_store_remove_refuses_a_store_in_use_and_urls_hide_userinfo(tmp_path: Path, cli: Any) -> None:
    assert cli("store", "add", "local", "--name", "s").returncode == 0
    assert cli("store", "put", "s", "--store_cred_id", "k", "--password", "-", stdin="pw\n").returncode == 0
    res = cli("tls", "add", "certdir", "--name", "remote", "--connection_type", "ssh", "--host", "127.0.0.1",
              "--user", "u", "--store", "s", "--store_cred_id", "k", "--dir", "/srv/certs")
    assert res.returncode == 0, res.stderr
    refused = cli("store", "remove", "s")
    assert refused.returncode == 1 and "remote" in refused.stderr
    vault = cli("store", "add", "vault", "--name", "v", "--url", "https://admin:hunter2@127.0.0.1:8200",
                "--token", "t")
    assert vault.returncode == 2 and "hunter2" not in vault.stdout + vault.stderr


def test_show_separator_manifest_mode_and_dry_run_quoting(tmp_path: Path, cli: Any, ca: TestCA) -> None:
    folder = tmp_path / "certs"
    _certdir(cli, folder, "cd", "--reload_command", "/bin/echo 'a b'")
    assert cli("store", "add", "local", "--name", "s").returncode == 0
    res = cli("tls", "add", "certdir", "--name", "remote", "--connection_type", "ssh", "--host", "127.0.0.1",
              "--user", "u", "--store", "s", "--store_cred_id", "idc1", "--dir", "/x")
    assert res.returncode == 0, res.stderr
    shown = cli("tls", "show", "remote")
    assert ["connection.store_cred_id", "idc1"] in [line.split() for line in shown.stdout.splitlines()], shown.stdout
    leaf = ca.issue("q.test")
    crt, key, _chain = leaf.write(tmp_path / "in", "q")
    dry = cli("tls", "install", "cd", "--cert", str(crt), "--key", str(key), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert shlex.join(["/bin/echo", "a b"]) in dry.stdout
    done = cli("tls", "install", "cd", "--cert", str(crt), "--key", str(key), "--json")
    assert done.returncode == 0, done.stderr
    backup = json.loads(done.stdout)["backup"]
    manifest = cli.home / "backups" / backup / "manifest.json"
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o600


_CTRL_C_AFTER_INSTALL = '''
import tlsgate.registry as _r
_install, _discover, _done = _r.Registry.install, _r.Registry.discover_nodes, []
def install(self, *args, **kwargs):
    result = _install(self, *args, **kwargs)
    _done.append(1)
    return result
def discover_nodes(self, *args, **kwargs):
    if _done:
        raise KeyboardInterrupt  # Ctrl-C in the re-discovery after the install
    return _discover(self, *args, **kwargs)
_r.Registry.install, _r.Registry.discover_nodes = install, discover_nodes
'''


def test_ctrl_c_after_the_install_committed_leaves_no_unfinished_set(tmp_path: Path, cli: Any, ca: TestCA) -> None:
    """Ctrl-C once the driver's transaction is done (during the re-discovery): the endpoint
    holds the new certificate, and the install is recorded as done, so the next job on the
    endpoint runs instead of refusing for a dead job's 'unfinished' backup set."""
    folder = tmp_path / "certs"
    _certdir(cli, folder)
    (folder / "site.crt").write_bytes(ca.issue("site.test").cert_pem)
    assert cli("tls", "discover", "cd").returncode == 0
    new = ca.issue("site.test")
    crt, key, _ = new.write(tmp_path / "in", "new")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_CTRL_C_AFTER_INSTALL)
    args = ("tls", "install", "cd", "--cert", str(crt), "--key", str(key), "--node", "site.crt")
    interrupted = cli(*args, env={"PYTHONPATH": str(hook)})
    assert interrupted.returncode in (130, -2), interrupted.stdout + interrupted.stderr
    assert "Traceback" not in interrupted.stderr
    assert (folder / "site.crt").read_bytes().startswith(new.cert_pem)  # the install itself was done
    assert [s["state"] for s in json.loads(cli("backup", "list", "--json").stdout)] == ["ok"]
    again = cli(*args)
    assert again.returncode == 0, again.stderr
