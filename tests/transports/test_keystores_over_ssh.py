"""End to end, as an operator runs it: p12 / jks / pem keystores on a host reached over ssh (the
real sshd fixture), with a password, with a key + passphrase, and with credentials kept in a real
OpenBao (``--store`` / ``--store_cred_id``). Every step goes through the ``tlsgate`` command line
in a subprocess; the keystore written remotely is read back with cryptography / pyjks.

After each flow, no secret (ssh password, key passphrase, store password, OpenBao token or secret
ID) appears in clear anywhere under $TLSGATE_HOME.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from cryptography import x509
from tlsgate import CertificateBundle, ConnectionFailed, OperationError
from tlsgate.transports import ssh
from tlsgate_testing.cli import ok, tg
from tlsgate_testing.fixtures_core import free_port
from tlsgate_testing.openbao import OpenBaoServer
from tlsgate_testing.sshd import SshdServer

pytestmark = pytest.mark.slow

STORE_PASSWORD = "changeit"  # the demo keystores' password (examples/make_demo_files.py)
FILES = {"p12": "app.p12", "jks": "app.jks", "pem": "app.pem"}




def all_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


def assert_nowhere(home: Path, *secrets: str) -> None:
    blob = all_bytes(home)
    for secret in secrets:
        assert secret.encode() not in blob, "a secret is stored in clear under $TLSGATE_HOME"


@pytest.fixture
def remote(trusted: SshdServer, demo: Path, tmp_path: Path) -> Iterator[Path]:
    """Fresh copies of the demo keystores in a directory the ssh test user owns."""
    directory = trusted.workdir / tmp_path.name
    shutil.copytree(demo / "keystores", directory)
    for p in [directory, *directory.iterdir()]:
        os.chown(p, trusted.uid, trusted.gid)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def installed_leaf(kind: str, path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if kind == "p12":
        from cryptography.hazmat.primitives.serialization import pkcs12

        p12 = pkcs12.load_pkcs12(data, STORE_PASSWORD.encode())
        entries = [p12.cert] if p12.cert else []
        return next(e.certificate for e in entries if e is not None)
    if kind == "jks":
        import jks

        store = jks.KeyStore.loads(data, STORE_PASSWORD)
        return x509.load_der_x509_certificate(store.private_keys["app"].cert_chain[0][1])
    return x509.load_pem_x509_certificates(data)[0]


def type_options(kind: str, path: Path, *, legacy: bool = False) -> list[str]:
    opts = ["--path", str(path)]
    if kind != "pem":
        opts += ["--store_password", STORE_PASSWORD]
    if kind == "p12":
        opts += ["--is_legacy", "true" if legacy else "false"]
    return opts


def run_job(name: str, kind: str, demo: Path, remote: Path) -> None:
    """trust (unknown key refused first), delegate, discover, install, nodes; check the file."""
    ok("org", "add", "Acme")
    ok("tls", "delegate", name, "--org", "Acme")
    unknown = tg("tls", "discover", name)
    assert unknown.returncode == 1 and "unknown SSH host key" in unknown.stderr
    assert f"tlsgate tls trust {name}" in unknown.stderr and "SHA256:" in unknown.stderr
    trusted = ok("tls", "trust", name, "--yes")
    assert "Trusted SHA256:" in trusted.stdout
    ok("tls", "discover", name)
    target = remote / FILES[kind]
    before = target.stat()
    new = demo / "new"
    ok("tls", "install", name, "--cert", str(new / "app.crt"), "--key", str(new / "app.key"),
       "--chain", str(new / "chain.crt"), "--alias", "app")
    expected = CertificateBundle.from_pem_files(new / "app.crt", new / "app.key", new / "chain.crt").leaf
    assert installed_leaf(kind, target) == expected
    after = target.stat()
    assert (after.st_uid, after.st_gid, after.st_mode) == (before.st_uid, before.st_gid, before.st_mode)
    assert "External" not in ok("tls", "nodes", name).stdout  # the installed certificate is known


@pytest.mark.parametrize("kind", ["p12", "jks", "pem"])
def test_password_login(kind: str, trusted: SshdServer, demo: Path, remote: Path, isolated_home: Path) -> None:
    (isolated_home / "known_hosts").unlink()  # start from an unknown host key
    ok("tls", "add", kind, "--name", f"{kind}-pw", "--connection_type", "ssh", "--host", trusted.host,
       "--port", str(trusted.port), "--user", trusted.user, "--password", "-",
       *type_options(kind, remote / FILES[kind]), stdin=trusted.password + "\n")
    run_job(f"{kind}-pw", kind, demo, remote)
    assert_nowhere(isolated_home, trusted.password, STORE_PASSWORD)


@pytest.mark.parametrize("kind", ["p12", "jks", "pem"])
def test_key_with_passphrase(kind: str, trusted: SshdServer, demo: Path, remote: Path, isolated_home: Path) -> None:
    (isolated_home / "known_hosts").unlink()
    key = trusted.keys["ed25519"]
    ok("tls", "add", kind, "--name", f"{kind}-key", "--connection_type", "ssh", "--host", trusted.host,
       "--port", str(trusted.port), "--user", trusted.user, "--ssh_key_path", str(key.path),
       "--ssh_key_password", "-", *type_options(kind, remote / FILES[kind], legacy=True),
       stdin=f"{key.passphrase}\n")
    run_job(f"{kind}-key", kind, demo, remote)
    assert_nowhere(isolated_home, key.passphrase or "", STORE_PASSWORD)


@pytest.mark.parametrize(("kind", "auth"), [("p12", "token"), ("jks", "approle"), ("pem", "approle-key")])
def test_credentials_from_openbao(kind: str, auth: str, trusted: SshdServer, openbao: OpenBaoServer, demo: Path,
                                  remote: Path, isolated_home: Path) -> None:
    (isolated_home / "known_hosts").unlink()
    cred_id = f"ssh/{remote.name}"
    key = trusted.keys["rsa_pem"]
    if auth == "approle-key":
        openbao.put(cred_id, {"user": trusted.user, "ssh_key": key.text, "ssh_key_password": key.passphrase or ""})
    else:
        openbao.put(cred_id, {"username": trusted.user, "password": trusted.password})
    if auth == "token":
        ok("store", "add", "vault", "--name", "corp-vault", "--url", openbao.url, "--token", "-",
           "--ca_bundle", openbao.ca_bundle, stdin=openbao.reader_token + "\n")
    else:
        ok("store", "add", "vault", "--name", "corp-vault", "--url", openbao.url, "--role_id", openbao.role_id,
           "--secret_id", "-", "--ca_bundle", openbao.ca_bundle, stdin=openbao.secret_id + "\n")
    assert "authenticated by" in ok("store", "test", "corp-vault").stdout
    ok("tls", "add", kind, "--name", f"{kind}-vault", "--connection_type", "ssh", "--host", trusted.host,
       "--port", str(trusted.port), "--store", "corp-vault", "--store_cred_id", cred_id,
       *type_options(kind, remote / FILES[kind]))
    run_job(f"{kind}-vault", kind, demo, remote)
    assert_nowhere(isolated_home, trusted.password, key.passphrase or "", openbao.reader_token, openbao.secret_id,
                   STORE_PASSWORD)


def test_store_that_does_not_exist_is_refused_at_add(trusted: SshdServer, isolated_home: Path, remote: Path) -> None:
    res = tg("tls", "add", "pem", "--name", "x", "--connection_type", "ssh", "--host", trusted.host,
             "--store", "nope", "--store_cred_id", "ssh/x", "--path", str(remote / "app.pem"))
    assert res.returncode == 2 and "--store" in res.stderr


# -- failures leave the remote keystore byte-identical ------------------------------------------
def test_wrong_password_and_closed_port(trusted: SshdServer, demo: Path, remote: Path, isolated_home: Path) -> None:
    target = remote / "app.p12"
    original = target.read_bytes()
    new = demo / "new"
    install = ["--cert", str(new / "app.crt"), "--key", str(new / "app.key"), "--chain", str(new / "chain.crt")]
    bad = "Wr0ng;$(id)"
    closed = free_port()
    ok("org", "add", "Acme")
    for name, port, password in (("bad-pw", trusted.port, bad), ("closed", closed, trusted.password)):
        ok("tls", "add", "p12", "--name", name, "--connection_type", "ssh", "--host", trusted.host,
           "--port", str(port), "--user", trusted.user, "--password", "-", *type_options("p12", target),
           stdin=password + "\n")
        ok("tls", "delegate", name, "--org", "Acme")
        res = tg("tls", "install", name, *install)
        assert res.returncode == 1
        assert "Traceback" not in res.stderr and bad not in res.stderr + res.stdout
        if name == "bad-pw":
            assert f"{trusted.user}@{trusted.host}:{trusted.port}: authentication failed" in res.stderr
        else:
            assert f"{trusted.host}:{closed}: connection refused" in res.stderr
        assert target.read_bytes() == original
    assert_nowhere(isolated_home, bad, trusted.password)


def test_connection_dropped_while_the_keystore_is_written(
    trusted: SshdServer, demo: Path, remote: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sshd session is killed after the new keystore's bytes are sent and before the rename
    (the last moment a write can fail): the remote keystore stays byte-identical and the job
    fails with a clear connection error."""
    from tlsgate.api import Gateway

    target = remote / "app.jks"
    original, mode = target.read_bytes(), target.stat().st_mode
    gw = Gateway()
    gw.add_endpoint("jks", name="drop", connection_type="ssh", host=trusted.host, port=trusted.port,
                    user=trusted.user, password=trusted.password,
                    options={"path": str(target), "store_password": STORE_PASSWORD})
    gw.add_org("Acme")
    gw.delegate("drop", "Acme")
    real_batch = ssh._sftp_write_batch  # the temporary's mode, bytes, fsync and close: one batch
    killed: list[int] = []

    def write_then_drop(*args: object, **kwargs: object) -> object:
        synced = real_batch(*args, **kwargs)  # type: ignore[arg-type]
        if not killed:  # the job's first write is the keystore's
            killed.append(trusted.kill_sessions())
        return synced

    monkeypatch.setattr(ssh, "_sftp_write_batch", write_then_drop)
    bundle = CertificateBundle.from_pem_files(demo / "new" / "app.crt", demo / "new" / "app.key",
                                              demo / "new" / "chain.crt")
    with pytest.raises(OperationError) as err:
        gw.install("drop", bundle, alias="app")
    assert killed and killed[0] >= 1
    assert "connection lost" in str(err.value) and "app.jks is unchanged" in str(err.value)
    assert "RESTORE INCOMPLETE" not in str(err.value) and err.value.rolled_back
    assert isinstance(err.value, ConnectionFailed) or isinstance(err.value.__cause__, ConnectionFailed)
    assert target.read_bytes() == original and target.stat().st_mode == mode
    for leftover in remote.glob(".tlsgate-*.tmp"):
        assert (leftover.stat().st_mode & 0o077) == 0  # the partial copy was private from its first byte
    gw.close()


def test_trust_asks_and_a_changed_key_is_refused_until_trusted_again(
    trusted: SshdServer, remote: Path, isolated_home: Path
) -> None:
    known = isolated_home / "known_hosts"
    known.unlink()
    ok("tls", "add", "pem", "--name", "web", "--connection_type", "ssh", "--host", trusted.host,
       "--port", str(trusted.port), "--user", trusted.user, "--password", "-", "--path", str(remote / "app.pem"),
       stdin=trusted.password + "\n")
    declined = tg("tls", "trust", "web", stdin="n\n")
    assert declined.returncode == 1 and "SHA256:" in declined.stdout
    assert not known.exists() or f"[{trusted.host}]:{trusted.port}" not in known.read_text()
    ok("tls", "trust", "web", stdin="y\n")
    tested = ok("tls", "test", "web")
    assert "remote platform posix" in tested.stdout
    real = ssh.fingerprint(ssh.fetch_host_key(trusted.host, trusted.port)[2])
    impostor = paramiko.Ed25519Key.from_private_key_file(str(trusted.root_key.path))
    ssh.trust_host_key(trusted.host, trusted.port, impostor)  # as if the host had been reinstalled
    changed = tg("tls", "test", "web")
    assert changed.returncode == 1
    out = changed.stdout + changed.stderr
    assert "HOST KEY CHANGED" in out and real in out and ssh.fingerprint(impostor) in out
    ok("tls", "trust", "web", "--yes")
    ok("tls", "test", "web")
    assert_nowhere(isolated_home, trusted.password)


def test_trust_with_json_or_without_an_answer(trusted: SshdServer, remote: Path, isolated_home: Path) -> None:
    """A script's ``tls trust --json``: the question goes to stderr, stdout is one JSON document;
    no answer at all (stdin closed) is a clear error naming --yes, not click's 'Aborted!'."""
    (isolated_home / "known_hosts").unlink()
    ok("tls", "add", "pem", "--name", "web", "--connection_type", "ssh", "--host", trusted.host,
       "--port", str(trusted.port), "--user", trusted.user, "--password", "-", "--path", str(remote / "app.pem"),
       stdin=trusted.password + "\n")
    real = ssh.fingerprint(ssh.fetch_host_key(trusted.host, trusted.port)[2])
    unanswered = tg("tls", "trust", "web", stdin="")
    assert unanswered.returncode == 1 and "Aborted" not in unanswered.stderr
    assert unanswered.stderr.strip().splitlines()[-1] == (
        f"error: {trusted.host}:{trusted.port}: host key {real} not trusted: no answer on standard input "
        "(check the fingerprint, then run again with --yes)")
    declined = tg("tls", "trust", "web", "--json", stdin="n\n")
    assert declined.returncode == 1 and json.loads(declined.stdout)["exit_code"] == 1
    assert real in declined.stderr and "Trust this host key?" in declined.stderr
    agreed = tg("tls", "trust", "web", "--json", stdin="y\n")
    assert agreed.returncode == 0 and json.loads(agreed.stdout)["fingerprint"] == real
    assert agreed.stdout.startswith("{") and declined.stdout.startswith("{")  # nothing of the prompt
    ok("tls", "test", "web")
