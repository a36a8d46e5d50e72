"""Fixtures of the IIS plugin's tests: a simulated IIS 10 (sites, bindings, certificate stores,
HTTP.sys) on the simulated Windows host, reached through the WinRM loopback peer with the real
pywinrm client, or directly (LoopbackWindowsConnection) for fast checks."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from iis_scene import Scene, build_scene
from iis_sim import install_iis
from tlsgate_testing.certs import TestCA
from tlsgate_testing.winhost import LoopbackWindowsConnection, SimulatedWindowsHost
from tlsgate_testing.winrm_fixtures import winrm_endpoint
from tlsgate_testing.winrm_peer import WinRMPeer


@pytest.fixture(scope="session")
def iis_ca() -> TestCA:
    return TestCA("IIS Web")


@pytest.fixture(scope="session")
def scene_certs(iis_ca: TestCA) -> Scene:
    return Scene(iis_ca.issue("www.example.org", "example.org"), iis_ca.issue("shop.example.com"),
                 iis_ca.issue("blog.example.com"))


@pytest.fixture
def iis_host(scene_certs: Scene) -> SimulatedWindowsHost:
    """A simulated Windows host with IIS and the standard scene."""
    host = SimulatedWindowsHost()
    install_iis(host, build_scene(scene_certs))
    return host


@pytest.fixture
def loopback(iis_host: SimulatedWindowsHost) -> LoopbackWindowsConnection:
    return LoopbackWindowsConnection(iis_host, name="iis1")


CONNECTION_KINDS = {"winrm_http": "http", "winrm_https": "https", "winrm_https_insecure": "https_untrusted"}


@pytest.fixture
def iis_over_winrm(winrm_peer_factory: Callable[..., WinRMPeer], winrm_tls, iis_host: SimulatedWindowsHost,
                   tlsgate_home: Path) -> Iterator[Callable[[str], tuple[WinRMPeer, object]]]:
    """``make(conn_type) -> (peer, endpoint)``: an iis endpoint reaching ``iis_host`` over WinRM."""

    def make(conn_type: str) -> tuple[WinRMPeer, object]:
        peer = winrm_peer_factory(CONNECTION_KINDS[conn_type], host=iis_host)
        ca = winrm_tls.ca_bundle if conn_type == "winrm_https" else None
        return peer, winrm_endpoint(peer, conn_type, ca_bundle=ca, type="iis", name="iis1")

    yield make


@pytest.fixture(scope="module")
def iis_ssh_host() -> Iterator[object]:
    """A private ssh_windows host (real sshd, ``powershell`` shim, SFTP drive mapping) whose shim
    also runs the simulated IIS. The shim imports its handlers by module name; ``iis_sim`` lives
    in this tests folder, so a copy goes next to the shim (its script directory is on sys.path).
    Module-scoped and our own: the shared session host decides its plugins when first started."""
    import shutil
    import tempfile

    from tlsgate_testing.winrm_fixtures import start_ssh_windows_host, stop_ssh_windows_host

    base = Path(tempfile.mkdtemp(prefix="tlsgate-iis-winssh-"))
    try:
        server, pid_file = start_ssh_windows_host(base, plugins=("iis_sim:register",))
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    copy = base / "bin" / "iis_sim.py"
    shutil.copyfile(Path(__file__).with_name("iis_sim.py"), copy)
    copy.chmod(0o644)
    try:
        yield server
    finally:
        stop_ssh_windows_host(pid_file)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def iis_over_ssh(iis_ssh_host, scene_certs: Scene, tlsgate_home: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                 monkeypatch: pytest.MonkeyPatch):
    """The ssh_windows host with the standard scene, its host key trusted in a private
    $TLSGATE_HOME (and a private $HOME, so the real known_hosts is not read)."""
    from tlsgate_testing.connections import ssh

    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    ssh.trust_host_key(iis_ssh_host.host, iis_ssh_host.port, iis_ssh_host.host_key_public)
    build_scene(scene_certs).save(iis_ssh_host)
    return iis_ssh_host


#: The opt-in test kit (fixtures: test_ca, tlsgate_home, sshd, OpenBao, servers, WinRM peer).
pytest_plugins = ["tlsgate_testing"]
