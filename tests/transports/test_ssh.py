"""The ssh transport against a real OpenSSH sshd on 127.0.0.1 (fixture ``sshd``)."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import paramiko
import pytest
from tlsgate import CommandFailed, ConnectionFailed, Credentials, HostKeyError, OperationError, Secret, Transaction
from tlsgate.registry import get_registry
from tlsgate.transports import ssh
from tlsgate_testing.fixtures_core import free_port
from tlsgate_testing.sshd import SshdServer

from .conftest import password_credentials, ssh_endpoint

pytestmark = pytest.mark.slow


def keygen_fingerprint(public_line: str, tmp_path: Path) -> str:
    pub = tmp_path / "host.pub"
    pub.write_text(public_line + "\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]


# -- the plugin ---------------------------------------------------------------------------------
def test_ssh_is_a_registered_connection_type_with_port_22(isolated_home: Path) -> None:
    registry = get_registry(reload=True)
    assert registry.connection_types["ssh"].default_port == 22
    assert ssh.connect(endpoint=ssh_endpoint_for_type("local"), credentials=Credentials()) is None


def ssh_endpoint_for_type(conn_type: str):  # type: ignore[no-untyped-def]
    from tlsgate import ConnectionSpec, Endpoint

    return Endpoint(name="x", type="pem", connection=ConnectionSpec(type=conn_type))


def test_registry_connects_through_the_ssh_plugin(trusted: SshdServer) -> None:
    registry = get_registry(reload=True)
    with registry.connect(ssh_endpoint(trusted), password_credentials(trusted)) as conn:
        assert isinstance(conn, ssh.SSHConnection)
        assert conn.platform == "posix"
        assert conn.run(["id", "-un"]).stdout.strip() == trusted.user


# -- authentication -----------------------------------------------------------------------------
def test_password_login_and_one_connection_reused(conn: ssh.SSHConnection, trusted: SshdServer) -> None:
    sock = conn.client.get_transport().sock  # type: ignore[union-attr]
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    # acknowledges every read at once (else each connection waits ~40 ms for sshd's Nagle-held
    # channel confirmation; see ssh._QuickAckSocket)
    assert isinstance(sock, ssh._QuickAckSocket) and sock.gettimeout() is not None
    pids = {conn.run(["sh", "-c", "echo $PPID"]).stdout for _ in range(3)}
    assert len(pids) == 3  # a fresh exec channel each time ...
    assert len(trusted.session_pids()) >= 1
    peer = conn.client.get_transport().getpeername()  # type: ignore[union-attr]
    assert peer[1] == trusted.port  # ... over the same transport
    assert conn.is_admin() is False


@pytest.mark.parametrize("kind", ["ed25519", "rsa_pem", "ecdsa"])
def test_key_login_from_file_with_passphrase(trusted: SshdServer, kind: str) -> None:
    key = trusted.keys[kind]
    creds = Credentials(ssh_key_path=str(key.path),
                        ssh_key_password=Secret(key.passphrase) if key.passphrase else None)
    with ssh.connect_ssh(ssh_endpoint(trusted), creds) as conn:
        assert conn.run(["id", "-un"]).stdout.strip() == trusted.user


def test_key_text_from_a_credential_store(trusted: SshdServer) -> None:
    key = trusted.keys["ed25519"]
    creds = Credentials(user=trusted.user, ssh_key=Secret(key.text), ssh_key_password=Secret(key.passphrase or ""))
    with ssh.connect_ssh(ssh_endpoint(trusted, user="nobody-from-cli"), creds) as conn:
        assert conn.run(["id", "-un"]).stdout.strip() == trusted.user  # the store's user wins


def test_wrong_key_passphrase_is_a_clear_error(trusted: SshdServer) -> None:
    key = trusted.keys["ed25519"]
    with pytest.raises(ConnectionFailed, match="wrong passphrase") as err:
        ssh.connect_ssh(ssh_endpoint(trusted), Credentials(ssh_key_path=str(key.path),
                                                           ssh_key_password=Secret("not it")))
    assert "not it" not in str(err.value)
    with pytest.raises(ConnectionFailed, match="encrypted: give its passphrase"):
        ssh.connect_ssh(ssh_endpoint(trusted), Credentials(ssh_key_path=str(key.path)))


def test_wrong_password_is_a_clear_error_without_the_password(trusted: SshdServer) -> None:
    bad = "Wr0ng;$(id)'pass"
    with pytest.raises(ConnectionFailed) as err:
        ssh.connect_ssh(ssh_endpoint(trusted), Credentials(password=Secret(bad)))
    message = str(err.value)
    assert "authentication failed" in message
    assert f"{trusted.user}@{trusted.host}:{trusted.port}" in message
    assert bad not in message and trusted.password not in message


def test_unauthorised_key_is_refused(trusted: SshdServer) -> None:
    creds = Credentials(ssh_key_path=str(trusted.root_key.path))  # authorised for root only
    with pytest.raises(ConnectionFailed, match="authentication failed \\(private key refused\\)"):
        ssh.connect_ssh(ssh_endpoint(trusted), creds)


def test_no_credential_at_all(trusted: SshdServer) -> None:
    with pytest.raises(ConnectionFailed, match="no SSH credential"):
        ssh.connect_ssh(ssh_endpoint(trusted), Credentials())


# -- reaching the host --------------------------------------------------------------------------
def test_closed_port_is_connection_refused(isolated_home: Path, sshd: SshdServer) -> None:
    port = free_port()
    with pytest.raises(ConnectionFailed, match=f"127.0.0.1:{port}: connection refused"):
        ssh.connect_ssh(ssh_endpoint(sshd, port=port), password_credentials(sshd))


def test_silent_server_times_out(isolated_home: Path, sshd: SshdServer) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(ConnectionFailed, match="no SSH banner within 1 s"):
            ssh.connect_ssh(ssh_endpoint(sshd, port=port, timeout=1), password_credentials(sshd))
        assert time.monotonic() - start < 10


def test_unreachable_address_fails_fast(isolated_home: Path) -> None:
    from tlsgate import ConnectionSpec, Endpoint

    ep = Endpoint(name="x", type="pem", connection=ConnectionSpec(type="ssh", host="192.0.2.1", port=22, user="u",
                                                                  extra={"timeout": 1}))  # TEST-NET-1 (a sandbox may refuse it)
    start = time.monotonic()
    with pytest.raises(ConnectionFailed, match=r"192\.0\.2\.1:22: (connection timed out after 1 s|host unreachable|connection refused)"):
        ssh.connect_ssh(ep, Credentials(password=Secret("p")))
    assert time.monotonic() - start < 5


def test_unresolvable_host(isolated_home: Path, sshd: SshdServer) -> None:
    from tlsgate import ConnectionSpec, Endpoint

    ep = Endpoint(name="x", type="pem", connection=ConnectionSpec(type="ssh", host="no-such-host.invalid",
                                                                  user="u"))
    with pytest.raises(ConnectionFailed, match="cannot resolve host name"):
        ssh.connect_ssh(ep, Credentials(password=Secret("p")))


# -- host keys ----------------------------------------------------------------------------------
def test_unknown_host_key_is_refused_then_trusted(
    sshd: SshdServer, isolated_home: Path, tmp_path: Path
) -> None:
    expected = keygen_fingerprint(sshd.host_key_public, tmp_path)
    with pytest.raises(HostKeyError) as err:
        ssh.connect_ssh(ssh_endpoint(sshd, name="web-7"), password_credentials(sshd))
    assert err.value.fingerprint == expected
    assert expected in str(err.value) and "tlsgate tls trust web-7" in str(err.value)

    key_type, fp, key = ssh.fetch_host_key(sshd.host, sshd.port, timeout=5)
    assert (key_type, fp) == ("ssh-ed25519", expected)
    path = ssh.trust_host_key(sshd.host, sshd.port, key)
    assert path == isolated_home / "known_hosts"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == f"[{sshd.host}]:{sshd.port} {sshd.host_key_public}\n"
    with ssh.connect_ssh(ssh_endpoint(sshd), password_credentials(sshd)) as conn:
        assert conn.run(["true"]).ok


def test_changed_host_key_is_refused_until_trusted_again(
    sshd: SshdServer, isolated_home: Path, tmp_path: Path
) -> None:
    impostor = paramiko.Ed25519Key.from_private_key_file(str(sshd.root_key.path))  # any other key
    other = f"[other.example]:{sshd.port} ssh-ed25519 {impostor.get_base64()}\n"
    (isolated_home / "known_hosts").write_text(other)
    ssh.trust_host_key(sshd.host, sshd.port, impostor)  # as if trusted before a reinstall
    with pytest.raises(HostKeyError) as err:
        ssh.connect_ssh(ssh_endpoint(sshd), password_credentials(sshd))
    message = str(err.value)
    real = keygen_fingerprint(sshd.host_key_public, tmp_path)
    assert "HOST KEY CHANGED" in message
    assert real in message and ssh.fingerprint(impostor) in message
    assert "tlsgate tls trust web1" in message

    _, _, key = ssh.fetch_host_key(sshd.host, sshd.port)
    ssh.trust_host_key(sshd.host, sshd.port, key)
    lines = (isolated_home / "known_hosts").read_text().splitlines()
    assert lines == [other.strip(), f"[{sshd.host}]:{sshd.port} {sshd.host_key_public}"]  # old key replaced
    with ssh.connect_ssh(ssh_endpoint(sshd), password_credentials(sshd)) as conn:
        assert conn.run(["true"]).ok


def test_users_known_hosts_is_honoured_and_tlsgate_file_wins(
    sshd: SshdServer, isolated_home: Path
) -> None:
    user_kh = Path(os.environ["HOME"]) / ".ssh" / "known_hosts"
    user_kh.parent.mkdir()
    hashed = paramiko.HostKeys.hash_host(f"[{sshd.host}]:{sshd.port}")
    user_kh.write_text(f"{hashed} {sshd.host_key_public}\n")  # hashed, as ssh HashKnownHosts writes
    with ssh.connect_ssh(ssh_endpoint(sshd), password_credentials(sshd)) as conn:
        assert conn.run(["true"]).ok
    stale = paramiko.Ed25519Key.from_private_key_file(str(sshd.root_key.path))
    user_kh.write_text(f"[{sshd.host}]:{sshd.port} ssh-ed25519 {stale.get_base64()}\n")
    with pytest.raises(HostKeyError, match="CHANGED"):
        ssh.connect_ssh(ssh_endpoint(sshd), password_credentials(sshd))
    ssh.trust_host_key(sshd.host, sshd.port, sshd.host_key_public)
    with ssh.connect_ssh(ssh_endpoint(sshd), password_credentials(sshd)) as conn:
        assert conn.run(["true"]).ok
    assert user_kh.read_text().count("\n") == 1  # the user's file is never written


# -- commands -----------------------------------------------------------------------------------
def test_run_exit_code_streams_stdin_and_check(conn: ssh.SSHConnection) -> None:
    res = conn.run(["sh", "-c", "cat; echo oops >&2; exit 3"], stdin=b"in\xc3\xa9")
    assert (res.exit_code, res.stdout, res.stderr) == (3, "iné", "oops\n")
    assert res.argv == ("sh", "-c", "cat; echo oops >&2; exit 3")
    with pytest.raises(CommandFailed, match="oops") as err:
        conn.run(["sh", "-c", "echo oops >&2; exit 4"], check=True)
    assert err.value.command_exit_code == 4
    assert conn.run(["no-such-program-xyz"]).exit_code == 127


def test_large_output_on_both_streams_does_not_deadlock(conn: ssh.SSHConnection) -> None:
    script = "head -c 3000000 /dev/zero; head -c 3000000 /dev/zero >&2; head -c 3000000 /dev/zero"
    res = conn.run(["sh", "-c", script], timeout=60)
    assert res.ok and len(res.stdout) == 6_000_000 and len(res.stderr) == 3_000_000


def test_run_timeout(conn: ssh.SSHConnection) -> None:
    start = time.monotonic()
    with pytest.raises(OperationError, match=r"sleep did not finish within 0\.5 s"):
        conn.run(["sleep", "30"], timeout=0.5)
    assert time.monotonic() - start < 5
    assert conn.run(["true"]).ok  # the connection survives
    with pytest.raises(OperationError, match=r"sleep did not finish within 1 s"):
        conn.run(["sleep", "30"], stdin=b"x" * (8 << 20), timeout=1)  # never reads its input
    assert conn.run(["true"]).ok


def test_env_values_are_data_and_stay_off_the_command_line(conn: ssh.SSHConnection, trusted: SshdServer) -> None:
    secret = "s3cret ;$(touch /tmp/tlsgate-pwned) `id` 'q' \"d\"\n\\n end\n\n"
    script = 'printf "%s|%s" "$SECRET" "$OTHER"; ps -eo args | grep -c "s3""cret" >&2; cat'
    res = conn.run(["sh", "-c", script], env={"SECRET": secret, "OTHER": ""}, stdin=b"rest of stdin")
    assert res.ok, res.stderr
    assert res.stdout == secret + "|" + "rest of stdin"
    assert res.stderr.strip() == "1"  # only the grep itself mentions it
    assert not os.path.exists("/tmp/tlsgate-pwned")
    with pytest.raises(ValueError, match="invalid environment variable name"):
        conn.run(["true"], env={"A;B": "x"})


def test_which_and_systemd_helpers(conn: ssh.SSHConnection) -> None:
    assert conn.which("sh") in ("/bin/sh", "/usr/bin/sh")
    assert conn.which("no-such-program-xyz") is None


# -- files --------------------------------------------------------------------------------------
def test_file_operations(conn: ssh.SSHConnection, trusted: SshdServer) -> None:
    d = trusted.user_path("ops", "a b", "c;$(x)")
    conn.makedirs(d)
    assert conn.stat(d).is_dir  # type: ignore[union-attr]
    conn.makedirs(d)  # idempotent
    f = f"{d}/file 'q'.txt"
    conn.write_file(f, b"one", mode=0o640)
    assert conn.read_file(f) == b"one"
    st = conn.stat(f)
    assert st is not None and (st.size, st.mode, st.uid, st.is_dir) == (3, 0o640, trusted.uid, False)
    assert Path(f).read_bytes() == b"one"  # same machine: check from the outside too
    conn.write_file(f"{d}/other", b"two")
    conn.rename(f"{d}/other", f)  # replaces an existing target (posix-rename)
    assert conn.read_file(f) == b"two"
    assert conn.listdir(d) == ["file 'q'.txt"]
    assert conn.glob(trusted.user_path("ops", "*", "c*", "*.txt")) == [f]
    conn.remove(f)
    conn.remove(f)  # missing is fine
    assert conn.stat(f) is None and not conn.exists(f)
    with pytest.raises(OperationError, match="no such file"):
        conn.read_file(f)
    with pytest.raises(OperationError, match="permission denied"):
        conn.write_file("/etc/tlsgate-must-not-exist", b"x")
    with pytest.raises(OperationError, match="permission denied"):
        conn.read_file("/etc/shadow")


def test_atomic_write_replaces_and_keeps_mode(conn: ssh.SSHConnection, trusted: SshdServer) -> None:
    path = trusted.user_path("server.key")
    conn.write_file(path, b"old key", mode=0o600)
    inode = os.stat(path).st_ino
    conn.write_file(path, b"new key" * 1000, mode=0o600)
    st = os.stat(path)
    assert Path(path).read_bytes() == b"new key" * 1000
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_ino != inode  # a new file renamed over it
    assert [n for n in os.listdir(trusted.workdir) if n.startswith(".tlsgate-")] == []


def test_write_as_root_keeps_the_owner_and_chown_like(root_conn: ssh.SSHConnection, trusted: SshdServer) -> None:
    path = trusted.user_path("owned.pem")
    Path(path).write_bytes(b"old")
    os.chown(path, trusted.uid, trusted.gid)
    root_conn.write_file(path, b"new", mode=0o640)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (trusted.uid, trusted.gid, 0o640)
    fresh = trusted.user_path("fresh.pem")
    root_conn.write_file(fresh, b"x")
    assert os.stat(fresh).st_uid == 0
    root_conn.chown_like(fresh, path)
    assert (os.stat(fresh).st_uid, os.stat(fresh).st_gid) == (trusted.uid, trusted.gid)
    assert root_conn.is_admin()


def test_chown_like_without_permission_is_silent(conn: ssh.SSHConnection, trusted: SshdServer) -> None:
    path = trusted.user_path("mine.txt")
    conn.write_file(path, b"x")
    conn.chown_like(path, "/etc/hostname")  # root-owned reference: not permitted, not an error
    assert os.stat(path).st_uid == trusted.uid


# -- a connection dropped in the middle of a write ----------------------------------------------
def _drop_during_write(conn: ssh.SSHConnection, server: SshdServer, path: str, drop) -> BaseException:  # type: ignore[no-untyped-def]
    """Start a big write; once its temporary file holds some bytes, call ``drop``; return what
    write_file raised (the test fails if the write completed first)."""
    data = b"\xa5" * (192 * 1024 * 1024)
    outcome: list[BaseException] = []

    def write() -> None:
        try:
            conn.write_file(path, data, mode=0o600)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    worker = threading.Thread(target=write)
    worker.start()
    deadline = time.monotonic() + 30
    dropped = False
    while worker.is_alive() and time.monotonic() < deadline:
        partial = [p for p in server.workdir.iterdir() if p.name.startswith(".tlsgate-")]
        if partial and partial[0].stat().st_size > 1024 * 1024:
            drop()
            dropped = True
            break
        time.sleep(0.001)
    worker.join(30)
    assert dropped, "the write finished before the connection could be dropped"
    assert outcome, "write_file reported success although the connection was dropped"
    leftovers = [p for p in server.workdir.iterdir() if p.name.startswith(".tlsgate-")]
    for p in leftovers:  # the partial temporary file already had the final mode
        assert stat.S_IMODE(p.stat().st_mode) == 0o600 and p.stat().st_size < len(data)
        p.unlink()
    return outcome[0]


@pytest.mark.parametrize("side", ["server kills the session", "network drops under the client"])
def test_dropped_connection_mid_write_leaves_the_file_byte_identical(
    trusted: SshdServer, side: str
) -> None:
    path = trusted.user_path("keystore.p12")
    original = os.urandom(4096)
    Path(path).write_bytes(original)
    os.chown(path, trusted.uid, trusted.gid)
    os.chmod(path, 0o640)
    conn = ssh.connect_ssh(ssh_endpoint(trusted), password_credentials(trusted))
    try:
        if side == "server kills the session":
            drop = trusted.kill_sessions
        else:
            def drop() -> None:
                conn.client.get_transport().sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        exc = _drop_during_write(conn, trusted, path, drop)
    finally:
        conn.close()
    assert isinstance(exc, ConnectionFailed), repr(exc)
    assert "connection lost" in str(exc) and f"{path} is unchanged" in str(exc)
    assert Path(path).read_bytes() == original
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    with pytest.raises(ConnectionFailed, match="closed"):
        conn.run(["true"])


def test_silent_peer_mid_job_is_a_timeout_not_a_hang(trusted: SshdServer) -> None:
    client = ssh.open_ssh_client(ssh_endpoint(trusted), password_credentials(trusted))
    conn = ssh.SSHConnection(client, host=trusted.host, port=trusted.port, io_timeout=1)
    path = trusted.user_path("silent.txt")
    conn.write_file(path, b"before")
    stopped = trusted.signal_sessions(signal.SIGSTOP)
    try:
        assert stopped >= 1
        start = time.monotonic()
        with pytest.raises(ConnectionFailed, match=r"lost during read of .* \(no answer within 1 s\)"):
            conn.read_file(path)
        assert time.monotonic() - start < 10
        with pytest.raises(ConnectionFailed, match="closed"):
            conn.run(["true"])
    finally:
        trusted.signal_sessions(signal.SIGCONT)
        conn.close()
    assert Path(path).read_bytes() == b"before"


# -- the transaction helper over SFTP -----------------------------------------------------------
def test_transaction_over_ssh_restores_on_failure(conn: ssh.SSHConnection, trusted: SshdServer) -> None:
    cert, key, new = (trusted.user_path(n) for n in ("tx.crt", "tx.key", "tx.new"))
    conn.write_file(cert, b"old cert", mode=0o644)
    conn.write_file(key, b"old key", mode=0o600)
    with pytest.raises(OperationError) as err, Transaction(conn) as tx:
        tx.write(cert, b"new cert")
        tx.write(key, b"new key", mode=0o600)
        tx.write(new, b"created")
        assert conn.read_file(key) == b"new key"
        tx.run(["sh", "-c", "echo config test failed >&2; exit 1"], what="config test")
    assert err.value.rolled_back and "config test failed" in str(err.value)
    assert conn.read_file(cert) == b"old cert" and conn.stat(cert).mode == 0o644  # type: ignore[union-attr]
    assert conn.read_file(key) == b"old key" and conn.stat(key).mode == 0o600  # type: ignore[union-attr]
    assert not conn.exists(new)


def test_transaction_over_ssh_commits(conn: ssh.SSHConnection, trusted: SshdServer) -> None:
    path = trusted.user_path("tx-ok.crt")
    with Transaction(conn) as tx:
        tx.write(path, b"v2", mode=0o644)
        tx.run(["test", "-s", path], what="check")
    assert conn.read_file(path) == b"v2"
    assert tx.result().files_written == (path,)


def test_dry_run_transaction_changes_nothing(conn: ssh.SSHConnection, trusted: SshdServer) -> None:
    path = trusted.user_path("dry.crt")
    with Transaction(conn, dry_run=True) as tx:
        tx.write(path, b"x")
        tx.run(["rm", "-rf", "/"])
    assert not conn.exists(path)
    assert [s.action for s in tx.plan] == ["write", "run"]


# -- private key formats (no server needed) -----------------------------------------------------
@pytest.mark.parametrize(("kind", "fmt"), [(k, f) for k in ("rsa", "ecdsa", "ed25519")
                                           for f in ("OpenSSH", "TraditionalOpenSSL", "PKCS8")
                                           if (k, f) != ("ed25519", "TraditionalOpenSSL")])  # no such form
@pytest.mark.parametrize("passphrase", [None, "pä$$ 'phrase'"])
def test_load_private_key_formats(kind: str, fmt: str, passphrase: str | None) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    key = {"rsa": lambda: rsa.generate_private_key(65537, 2048), "ecdsa": lambda: ec.generate_private_key(ec.SECP384R1()),
           "ed25519": ed25519.Ed25519PrivateKey.generate}[kind]()
    enc = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
           else serialization.NoEncryption())
    text = key.private_bytes(serialization.Encoding.PEM, getattr(serialization.PrivateFormat, fmt), enc)
    loaded = ssh.load_private_key(text, passphrase)
    expected = {"rsa": paramiko.RSAKey, "ecdsa": paramiko.ECDSAKey, "ed25519": paramiko.Ed25519Key}[kind]
    assert isinstance(loaded, expected)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert loaded.get_base64() == public.split()[1].decode()
    if passphrase:
        with pytest.raises(ConnectionFailed, match="wrong passphrase") as err:
            ssh.load_private_key(text, "nope", source="key.pem")
        assert "nope" not in str(err.value) and passphrase not in str(err.value)
        with pytest.raises(ConnectionFailed, match=r"key\.pem is encrypted: give its passphrase"):
            ssh.load_private_key(text, None, source="key.pem")
    else:
        assert isinstance(ssh.load_private_key(text, "ignored for a clear key"), expected)


def test_garbage_is_not_a_key() -> None:
    with pytest.raises(ConnectionFailed, match="is not a private key tlsgate can read"):
        ssh.load_private_key("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", None, source="x")
