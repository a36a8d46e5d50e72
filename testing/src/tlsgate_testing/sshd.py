"""A real OpenSSH ``sshd`` on 127.0.0.1 for tests (fixture ``sshd``).

The server runs from a private ``sshd_config`` (own host key, pid file, log, authorized keys) on a
free port; the machine's own sshd and its configuration are never touched. Logins:

* ``tlsgate-test``: a dedicated local account the fixture creates once (idempotently, under a
  lock) with a random password kept in a root-only file, so the account is never guessable
  through another sshd on the machine. Password login and key login (Ed25519 in OpenSSH format
  and RSA in PEM format, each with a passphrase, and an unencrypted ECDSA key).
* ``root``: key login only (``PermitRootLogin prohibit-password``); the machine's root password
  is never changed. Used where a test needs ``chown``.

Tests run as root (as in CI). The fixture is session-scoped; it kills only the sshd it started
(and, through :meth:`SshdServer.kill_sessions`, only that server's per-connection children).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from .fixtures_core import free_port, wait_for_port

SSHD = "/usr/sbin/sshd"
TEST_USER = "tlsgate-test"
KEY_PASSPHRASE = "pass phrase; $(touch /tmp/x) `id` 'q'"
_STATE_DIR = Path("/var/lib/tlsgate-testing")


@attrs.frozen
class ClientKey:
    """A client private key file and its passphrase (None: unencrypted)."""

    path: Path
    passphrase: str | None
    public_line: str

    @property
    def text(self) -> str:
        return self.path.read_text()


@attrs.frozen
class SshdServer:
    """What a test needs to reach the fixture's sshd."""

    host: str
    port: int
    user: str
    password: str = attrs.field(repr=False)
    uid: int
    gid: int
    home: Path  # the test user's home (writable by the test user)
    workdir: Path  # a fresh-per-session directory owned by the test user
    keys: dict[str, ClientKey]  # "ed25519" (OpenSSH, passphrase), "rsa_pem" (PEM, passphrase), "ecdsa"
    root_key: ClientKey  # unencrypted, for root
    host_key_public: str  # "ssh-ed25519 AAAA..."
    config: Path
    log: Path
    pid_file: Path

    @property
    def pid(self) -> int:
        return int(self.pid_file.read_text().strip())

    def session_pids(self) -> list[int]:
        """PIDs of this server's per-connection processes (all its descendants: the privileged
        monitor, the user's child, the commands it runs), never anyone else's."""
        children: dict[int, list[int]] = {}
        for stat_file in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat_file.read_text()
            except OSError:
                continue  # the process just ended
            ppid = int(text.rsplit(")", 1)[1].split()[1])  # the command name may hold spaces and ")"
            children.setdefault(ppid, []).append(int(stat_file.parent.name))
        found: list[int] = []
        parents = [self.pid]
        while parents:
            parents = [c for p in parents for c in children.get(p, []) if c not in found]
            found += parents
        return found

    def kill_sessions(self) -> int:
        """SIGKILL every open session of this server (a dropped connection); return how many."""
        return self.signal_sessions(signal.SIGKILL)

    def signal_sessions(self, sig: int) -> int:
        """Send ``sig`` to every open session of this server (SIGSTOP: a peer that goes silent,
        SIGCONT: back again); return how many processes got it."""
        pids = self.session_pids()
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return len(pids)

    def user_path(self, *parts: str) -> str:
        """A path inside ``workdir`` as a str (remote and local are the same machine here)."""
        return str(self.workdir.joinpath(*parts))


def _ensure_test_user() -> tuple[str, pwd.struct_passwd]:
    """Create ``tlsgate-test`` once and give it the machine's stored random password."""
    _STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    lock = _STATE_DIR / "user.lock"
    with open(lock, "w") as lockfh:
        fcntl.flock(lockfh, fcntl.LOCK_EX)
        pw_file = _STATE_DIR / "tlsgate-test.password"
        if not pw_file.exists():
            fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(24))
        password = pw_file.read_text().strip()
        try:
            entry = pwd.getpwnam(TEST_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--create-home", "--shell", "/bin/sh", TEST_USER],
                check=True, capture_output=True,
            )
            entry = pwd.getpwnam(TEST_USER)
        subprocess.run(["chpasswd"], input=f"{TEST_USER}:{password}\n", text=True, check=True,
                       capture_output=True)
    return password, entry


def _client_keys(directory: Path) -> tuple[dict[str, ClientKey], ClientKey]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    def write(name: str, key, fmt, passphrase: str | None) -> ClientKey:  # type: ignore[no-untyped-def]
        enc = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
               else serialization.NoEncryption())
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.private_bytes(serialization.Encoding.PEM, fmt, enc))
        pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        return ClientKey(path, passphrase, pub.decode())

    keys = {
        "ed25519": write("id_ed25519", ed25519.Ed25519PrivateKey.generate(),
                         serialization.PrivateFormat.OpenSSH, KEY_PASSPHRASE),
        "rsa_pem": write("id_rsa_pem", rsa.generate_private_key(65537, 2048),
                         serialization.PrivateFormat.TraditionalOpenSSL, KEY_PASSPHRASE),
        "ecdsa": write("id_ecdsa", ec.generate_private_key(ec.SECP256R1()),
                       serialization.PrivateFormat.PKCS8, None),
    }
    root_key = write("id_root", ed25519.Ed25519PrivateKey.generate(), serialization.PrivateFormat.OpenSSH, None)
    return keys, root_key


def _host_key(path: Path) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                   serialization.NoEncryption()))
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()


def start_sshd(base: Path, *, listen: str = "127.0.0.1", log_level: str = "VERBOSE",
               extra_config: str = "") -> SshdServer:
    """Start a private sshd under ``base`` (created); the caller stops it with :func:`stop_sshd`.

    ``listen``: the loopback address it binds (a second one, 127.0.0.2, for a host reachable only
    through a bastion); ``extra_config``: more sshd_config lines (before any ``Match``)."""
    if not os.path.exists(SSHD):
        pytest.skip(f"{SSHD} is not installed (Debian package openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("the sshd fixture needs root (it runs a private sshd and a test account)")
    password, entry = _ensure_test_user()
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)  # sshd reads authorized_keys as the target user
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    keys, root_key = _client_keys(base)
    auth_dir = base / "authorized_keys"
    auth_dir.mkdir(mode=0o755)
    (auth_dir / TEST_USER).write_text("".join(k.public_line + "\n" for k in keys.values()))
    (auth_dir / "root").write_text(root_key.public_line + "\n")
    for f in auth_dir.iterdir():
        f.chmod(0o644)
    host_key = base / "ssh_host_ed25519_key"
    host_pub = _host_key(host_key)
    workdir = Path(tempfile.mkdtemp(prefix="tlsgate-sshd-work-"))
    os.chown(workdir, entry.pw_uid, entry.pw_gid)
    workdir.chmod(0o755)
    port = free_port()
    pid_file, log = base / "sshd.pid", base / "sshd.log"
    config = base / "sshd_config"
    config.write_text(
        f"""Port {port}
ListenAddress {listen}
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {auth_dir}/%u
StrictModes no
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowUsers {TEST_USER} root
MaxStartups 50:30:100
MaxSessions 50
LogLevel {log_level}
Subsystem sftp internal-sftp
{extra_config}"""
    )
    subprocess.run([SSHD, "-t", "-f", str(config)], check=True, capture_output=True)
    subprocess.run([SSHD, "-f", str(config), "-E", str(log)], check=True, capture_output=True)
    wait_for_port(port, host=listen, timeout=20)
    return SshdServer(
        host=listen, port=port, user=TEST_USER, password=password, uid=entry.pw_uid,
        gid=entry.pw_gid, home=Path(entry.pw_dir), workdir=workdir, keys=keys, root_key=root_key,
        host_key_public=host_pub, config=config, log=log, pid_file=pid_file,
    )


def stop_sshd(server: SshdServer) -> None:
    """Stop the listener this fixture started and its sessions; remove the work directory."""
    try:
        pid = server.pid
    except (OSError, ValueError):
        pid = None
    if pid is not None:
        server.kill_sessions()
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
    shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshdServer]:
    """A private OpenSSH server on 127.0.0.1 (session-scoped). See :class:`SshdServer`."""
    base = Path(tempfile.mkdtemp(prefix="tlsgate-sshd-"))
    server = start_sshd(base)
    try:
        yield server
    finally:
        stop_sshd(server)
        shutil.rmtree(base, ignore_errors=True)


# -- sudo for the non-root account ---------------------------------------------------------------
SUDOERS_DIR = Path("/etc/sudoers.d")


@contextlib.contextmanager
def sudoers_rule(*lines: str) -> Iterator[Path]:
    """Install a sudoers rule file for the test (a unique name under /etc/sudoers.d, mode 0440,
    checked with ``visudo -cf`` before it goes live), removed when the block ends.

    Rules are machine-wide and every test session on the machine shares the ``tlsgate-test``
    account, so a block holds a machine-wide lock: one test's rule never grants or refuses
    something in another's (a test of "a command outside the rule" would pass or fail by luck)."""
    if shutil.which("visudo") is None or shutil.which("sudo") is None:
        pytest.skip("sudo is not installed (Debian package sudo)")
    _STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    with open(_STATE_DIR / "sudoers.lock", "w") as lock:
        deadline = time.monotonic() + 900
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError("another test session held the sudoers lock for 15 minutes") from None
                time.sleep(0.2)
        with _rule_file(lines) as path:
            yield path


@contextlib.contextmanager
def _rule_file(lines: tuple[str, ...]) -> Iterator[Path]:
    text = "".join(line + "\n" for line in lines)
    staged = SUDOERS_DIR / f".tlsgate-test-{secrets.token_hex(6)}.tmp"  # sudo skips names with '.'
    final = SUDOERS_DIR / f"tlsgate-test-{secrets.token_hex(6)}"
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o440)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    try:
        check = subprocess.run(["visudo", "-cf", str(staged)], capture_output=True, text=True)
        if check.returncode != 0:
            raise AssertionError(f"invalid sudoers rule {text!r}: {check.stdout}{check.stderr}")
        os.rename(staged, final)
        yield final
    finally:
        for path in (staged, final):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def sudo_commands(*names: str) -> str:
    """Full paths of commands for a sudoers Cmnd list (as sudo resolves them on secure_path)."""
    paths = []
    for name in names:
        found = shutil.which(name, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        if found is None:
            pytest.skip(f"{name} is not installed")
        paths.append(found)
    return ", ".join(paths)


README = Path(__file__).resolve().parents[3] / "README.md"  # the repository's (the kit is installed editable)


def readme_sudoers(kind: str) -> list[str]:
    """The commands of the README's minimal sudoers rule for ``kind`` (``nginx``, ``apache``,
    ``tomcat``, ``p12`` for the keystores), as written there: the tests use exactly these."""
    specs: list[str] = []
    current, in_comment = None, False
    for line in README.read_text().splitlines():
        text = line.strip()
        if text.startswith("# "):
            if not in_comment:  # the first of consecutive comment lines names the type
                current = text[2:].split()[0].rstrip(":")
            in_comment = True
            if specs and current != kind:
                break
            continue
        in_comment = False
        if current == kind and "NOPASSWD:" in text:
            specs += [c.strip() for c in text.split("NOPASSWD:", 1)[1].split(",")]
        elif text.startswith("```") and specs:
            break
    if not specs:
        raise AssertionError(f"no sudoers rule for {kind!r} in {README}")
    return specs


def readme_commands(kind: str, *, without: tuple[str, ...] = (), replace: dict[str, str] | None = None) -> str:
    """:func:`readme_sudoers` as a sudoers Cmnd list for this machine: each command's full path
    as sudo finds it (:func:`sudo_commands`), its arguments kept; ``without``: command names left
    out (a test of a command outside the rule); ``replace``: a name's path in the test's tree."""
    out = []
    for spec in readme_sudoers(kind):
        program, *args = spec.split()
        name = program.rsplit("/", 1)[-1]
        if name in without:
            continue
        path = (replace or {}).get(name) or sudo_commands(name)
        out.append(" ".join([path, *args]))
    return ", ".join(out)


@pytest.fixture(scope="session")
def bastion_pair() -> Iterator[tuple[SshdServer, SshdServer]]:
    """Two private sshds: a bastion on 127.0.0.1 (debug log, so a test can see what it
    forwarded) and an inner host on 127.0.0.2 (the endpoint a test reaches through the bastion)."""
    base = Path(tempfile.mkdtemp(prefix="tlsgate-bastion-"))
    base.chmod(0o755)  # each sshd reads its authorized_keys as the test user
    bastion = start_sshd(base / "bastion", log_level="DEBUG1", extra_config="AllowTcpForwarding yes\n")
    try:
        inner = start_sshd(base / "inner", listen="127.0.0.2")
    except BaseException:
        stop_sshd(bastion)
        raise
    try:
        yield bastion, inner
    finally:
        stop_sshd(inner)
        stop_sshd(bastion)
        shutil.rmtree(base, ignore_errors=True)
