"""Fixtures for Windows hosts: the WinRM loopback peer and the simulated Windows host.

* ``winhost``: a fresh :class:`~tlsgate_testing.winhost.SimulatedWindowsHost` (in-memory C:).
* ``winrm_peer_factory``: ``make(kind, *, host=None, users=None, auth=...)`` starts a
  :class:`~tlsgate_testing.winrm_peer.WinRMPeer` on 127.0.0.1 for one test. ``kind``:
  ``"http"``, ``"https"`` (certificate from the session test CA, for 127.0.0.1 and localhost) or
  ``"https_untrusted"`` (a self-signed certificate nobody trusts).
* ``winrm_tls``: the https certificate files and ``ca_bundle`` (the test CA's root, PEM).
* ``winrm_endpoint(peer, conn_type, ...)`` and ``WINRM_USER`` / ``WINRM_PASSWORD``: an
  :class:`~tlsgate.models.Endpoint` aimed at a peer and the credentials it accepts.

The ssh_windows host (sshd + ``powershell`` shim + SFTP drive mapping) is ``ssh_windows_host``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from tlsgate.models import ConnectionSpec, Credentials, Endpoint
from tlsgate.secret import Secret

from .certs import TestCA
from .winhost import SimulatedWindowsHost
from .winrm_peer import WinRMPeer

WINRM_USER = "vagrant"
#: Registers hostname, whoami and findstr on a simulated host (a winhost plugin entry).
SAMPLE_PROGRAMS = "tlsgate_testing.winhost:register_sample_programs"
#: Spaces, quotes, ';', '$()' and backticks: a password is data everywhere it travels.
WINRM_PASSWORD = "p@ss w0rd;$(calc) `id` 'q' \"dq\""


@attrs.frozen
class WinRMTLS:
    certfile: Path
    keyfile: Path
    ca_bundle: Path  # trusts ``certfile``
    untrusted_certfile: Path  # self-signed
    untrusted_keyfile: Path


@pytest.fixture(scope="session")
def winrm_tls(test_ca: TestCA) -> Iterator[WinRMTLS]:
    from cryptography.hazmat.primitives import serialization

    with tempfile.TemporaryDirectory(prefix="tlsgate-winrm-tls-") as tmp:
        d = Path(tmp)
        leaf = test_ca.issue("127.0.0.1", "localhost")
        _, key, _ = leaf.write(d, "winrm")
        pem = serialization.Encoding.PEM
        # The server sends leaf + intermediate; the client trusts only the root.
        (d / "winrm.fullchain.crt").write_bytes(leaf.cert_pem + test_ca.intermediate.public_bytes(pem))
        (d / "ca.pem").write_bytes(test_ca.root.public_bytes(pem))
        bcrt, bkey, _ = test_ca.self_signed("127.0.0.1").write(d, "untrusted")
        yield WinRMTLS(d / "winrm.fullchain.crt", key, d / "ca.pem", bcrt, bkey)


@pytest.fixture
def winhost() -> SimulatedWindowsHost:
    """A fresh simulated Windows host (in-memory file system with drive C:)."""
    return SimulatedWindowsHost()


@pytest.fixture
def winrm_peer_factory(winrm_tls: WinRMTLS) -> Iterator[Callable[..., WinRMPeer]]:
    """``make(kind="http"|"https"|"https_untrusted", *, host=None, users=None, auth=("basic", "ntlm"))``."""
    started: list[WinRMPeer] = []

    def make(kind: str = "http", *, host: SimulatedWindowsHost | None = None,
             users: dict[str, str] | None = None, **kwargs: Any) -> WinRMPeer:
        tls = {
            "http": None,
            "https": (str(winrm_tls.certfile), str(winrm_tls.keyfile)),
            "https_untrusted": (str(winrm_tls.untrusted_certfile), str(winrm_tls.untrusted_keyfile)),
        }[kind]
        peer = WinRMPeer(host or SimulatedWindowsHost(), users=users or {WINRM_USER: WINRM_PASSWORD},
                         tls=tls, **kwargs).start()
        started.append(peer)
        return peer

    yield make
    for peer in started:
        peer.stop()


def winrm_endpoint(peer: WinRMPeer, conn_type: str = "winrm_http", *, auth: str = "ntlm",
                   ca_bundle: str | Path | None = None, type: str = "pem", options: Any = None,
                   name: str = "win1") -> Endpoint:
    """An endpoint of ``type`` that reaches ``peer`` over ``conn_type`` (winrm_*)."""
    extra: dict[str, Any] = {"winrm_auth": auth}
    if ca_bundle is not None:
        extra["ca_bundle"] = str(ca_bundle)
    spec = ConnectionSpec(conn_type, host="127.0.0.1", port=peer.port, user=WINRM_USER,
                          password=Secret(WINRM_PASSWORD), extra=extra)
    return Endpoint(name=name, type=type, connection=spec, options=options)


def winrm_credentials(password: str = WINRM_PASSWORD, user: str = WINRM_USER) -> Credentials:
    return Credentials(user=user, password=Secret(password))


# -- ssh_windows: a real sshd whose "Windows" is the simulated host on a real directory -----------
@attrs.frozen
class SSHWindowsHost:
    """A private sshd on 127.0.0.1 that behaves like Win32-OpenSSH for tlsgate's purposes.

    ``powershell`` on the session's PATH is the simulated host's shim (working on ``root``, where
    ``C:\\x`` is ``<root>/C:/x``), and the SFTP subsystem maps ``/C:/x`` to the same place.
    Use :meth:`seed` / :meth:`read` / :meth:`winhost` from tests (they keep file ownership right
    for the login user) and :meth:`calls` for what the shim received.
    """

    host: str
    port: int
    user: str
    password: str = attrs.field(repr=False)
    host_key_public: str
    root: Path
    uid: int
    gid: int
    #: Set when the fixture logs in as root with this key (the test account could not run tlsgate).
    key_path: Path | None = None

    def winhost(self) -> SimulatedWindowsHost:
        from .winhost import DirectoryFS

        return SimulatedWindowsHost(DirectoryFS(self.root))

    def _chown(self) -> None:
        import os

        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in [*dirnames, *filenames, ""]:
                os.lchown(os.path.join(dirpath, name) if name else dirpath, self.uid, self.gid)

    def seed(self, path: str, data: bytes | str = b"", *, private: bool = False) -> None:
        self.winhost().seed(path, data, private=private)
        self._chown()

    def link(self, path: str, target: str, kind: str = "SymbolicLink") -> None:
        self.winhost().link(path, target, kind)
        self._chown()

    def read(self, path: str) -> bytes:
        return self.winhost().read(path)

    def exists(self, path: str) -> bool:
        return self.winhost().exists(path)

    def calls(self) -> list[dict[str, Any]]:
        import json

        f = self.root / ".calls.jsonl"
        return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []

    def endpoint(self, *, type: str = "pem", options: Any = None, name: str = "winssh1") -> Endpoint:
        if self.key_path is not None:
            spec = ConnectionSpec("ssh_windows", host=self.host, port=self.port, user=self.user,
                                  ssh_key_path=str(self.key_path))
        else:
            spec = ConnectionSpec("ssh_windows", host=self.host, port=self.port, user=self.user,
                                  password=Secret(self.password))
        return Endpoint(name=name, type=type, connection=spec, options=options)

    def credentials(self) -> Credentials:
        if self.key_path is not None:
            return Credentials(user=self.user, ssh_key_path=str(self.key_path))
        return Credentials(user=self.user, password=Secret(self.password))


def _python_for(user: str) -> tuple[str, str] | None:
    """An interpreter the login user can run (ours may live under /root), and a PYTHONPATH that
    gives it tlsgate and its dependencies; None when there is none."""
    import os
    import subprocess
    import sys
    import sysconfig

    import tlsgate

    pythonpath = os.pathsep.join([str(Path(tlsgate.__file__).resolve().parents[1]),
                                  sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        probe = subprocess.run(
            ["runuser", "-u", user, "--", "env", f"PYTHONPATH={pythonpath}", python, "-c",
             "import tlsgate_testing.winhost, tlsgate_testing.winsftp_shim"],
            capture_output=True, check=False, cwd="/",
        )
        if probe.returncode == 0:
            return python, pythonpath
    return None


def _root_key(base: Path) -> tuple[Path, str]:
    """An unencrypted Ed25519 client key for root (file, authorized_keys line)."""
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    path = base / "id_root"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                   serialization.NoEncryption()))
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return path, line.decode()


def start_ssh_windows_host(base: Path, *, plugins: tuple[str, ...] = ()) -> tuple[SSHWindowsHost, Path]:
    """Start the sshd (returns the host and its pid file); stop it with :func:`stop_ssh_windows_host`."""
    import os
    import subprocess

    from . import sshd as sshd_mod
    from .fixtures_core import free_port, wait_for_port

    if not os.path.exists(sshd_mod.SSHD):
        pytest.skip(f"{sshd_mod.SSHD} is not installed (Debian package openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("the ssh_windows fixture needs root (private sshd with a test account)")
    password, entry = sshd_mod._ensure_test_user()
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    # The test account runs the shims when it can read tlsgate; a checkout it cannot read (under
    # /root, say) makes the fixture log in as root with a key instead (TLSGATE_WINSSH_AS_ROOT=1
    # forces that).
    found = None if os.environ.get("TLSGATE_WINSSH_AS_ROOT") == "1" else _python_for(entry.pw_name)
    key_path: Path | None = None
    if found is None:
        import sys
        import sysconfig

        import tlsgate

        login, uid, gid = "root", 0, 0
        python = sys.executable
        pythonpath = os.pathsep.join([str(Path(tlsgate.__file__).resolve().parents[1]),
                                      sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
        key_path, key_line = _root_key(base)
        (base / "authorized_keys").mkdir(mode=0o755)
        (base / "authorized_keys" / "root").write_text(key_line + "\n")
    else:
        python, pythonpath = found
        login, uid, gid = entry.pw_name, entry.pw_uid, entry.pw_gid
    root = base / "windows"
    home = root / "C:" / "Users" / login
    home.mkdir(parents=True)
    (root / "C:" / "Windows" / "Temp").mkdir(parents=True)
    bindir = base / "bin"
    bindir.mkdir()
    shim = bindir / "powershell"
    # addsitedir also reads the venv's .pth files, so editable-installed plugins can register handlers.
    shim.write_text(f"#!{python}\nimport site\nimport sys\n"
                    + "".join(f"site.addsitedir({d!r})\n" for d in pythonpath.split(os.pathsep)[1:])
                    + "from tlsgate_testing.winhost import shim_main\nsys.exit(shim_main())\n")
    shim.chmod(0o755)
    host_key = base / "ssh_host_ed25519_key"
    host_pub = sshd_mod._host_key(host_key)
    port = free_port()
    pid_file, log, config = base / "sshd.pid", base / "sshd.log", base / "sshd_config"
    env = [f"PATH={bindir}:/usr/bin:/bin", f"TLSGATE_WINHOST_ROOT={root}", f"PYTHONPATH={pythonpath}"]
    if plugins:
        env.append(f"TLSGATE_WINHOST_PLUGINS={','.join(plugins)}")
    config.write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {pid_file}
StrictModes no
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile {base}/authorized_keys/%u
PermitRootLogin prohibit-password
AllowUsers {login}
MaxStartups 50:30:100
MaxSessions 50
LogLevel VERBOSE
SetEnv {" ".join(env)}
Subsystem sftp {python} -m tlsgate_testing.winsftp_shim {root} {home}
"""
    )
    subprocess.run([sshd_mod.SSHD, "-t", "-f", str(config)], check=True, capture_output=True)
    subprocess.run([sshd_mod.SSHD, "-f", str(config), "-E", str(log)], check=True, capture_output=True)
    wait_for_port(port, timeout=20)
    server = SSHWindowsHost("127.0.0.1", port, login, password, host_pub, root, uid, gid, key_path)
    server._chown()
    return server, pid_file


def stop_ssh_windows_host(pid_file: Path) -> None:
    """SIGTERM the listener this fixture started and its per-connection children."""
    import os
    import signal
    import subprocess
    import time

    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    for child in children.stdout.split():
        try:
            os.kill(int(child), signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


@pytest.fixture(scope="session")
def ssh_windows_host_plugins() -> tuple[str, ...]:
    """``"module:function"`` names the ssh_windows shim calls with its simulated host, to register
    a driver's template handlers. Override in a conftest to add yours, keeping the default entry
    (the modules must be importable from the venv, e.g. an editable-installed plugin). The host is
    session-scoped: the first test that starts it decides its plugins."""
    return (SAMPLE_PROGRAMS,)


@pytest.fixture(scope="session")
def ssh_windows_host(ssh_windows_host_plugins: tuple[str, ...]) -> Iterator[SSHWindowsHost]:
    """The ssh_windows test host (session-scoped). Trust its key in a test's $TLSGATE_HOME with
    ``tlsgate.transports.ssh.trust_host_key(h.host, h.port, h.host_key_public)``."""
    import shutil

    base = Path(tempfile.mkdtemp(prefix="tlsgate-winssh-"))
    server, pid_file = start_ssh_windows_host(base, plugins=tuple(ssh_windows_host_plugins))
    try:
        yield server
    finally:
        stop_ssh_windows_host(pid_file)
        shutil.rmtree(base, ignore_errors=True)
