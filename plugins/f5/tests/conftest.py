"""Fixtures of the F5 plugin's tests: a loopback iControl REST peer (one device per test) over
HTTPS with a certificate from a test management CA, an endpoint that points at it, and an open
iControl REST session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from f5_setup import VERSIONS, build_device, credentials, make_endpoint, pem, server_context
from icontrol_peer import Device, IControlPeer
from tlsgate import Endpoint
from tlsgate_testing.certs import Issued, TestCA
from tlsgate_testing.fixtures_core import free_port


@pytest.fixture(scope="session")
def web_ca() -> TestCA:
    """The CA that issues the certificates the virtual servers present."""
    return TestCA("F5 Web")


@pytest.fixture(scope="session")
def mgmt_ca() -> TestCA:
    """The CA that issued the BIG-IP's management (iControl REST) certificate."""
    return TestCA("BIG-IP Mgmt")


@pytest.fixture(scope="session")
def mgmt_cert(mgmt_ca: TestCA) -> Issued:
    return mgmt_ca.issue("localhost", "127.0.0.1")


@pytest.fixture(scope="session")
def ca_bundle(mgmt_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("f5-trust") / "bigip-mgmt-ca.pem"
    path.write_bytes(pem(mgmt_ca.root))
    return path


@pytest.fixture(scope="session")
def web_certs(web_ca: TestCA) -> dict[str, Issued]:
    return {
        "default": web_ca.self_signed("localhost.localdomain"),
        "www": web_ca.issue("www.example.com"),
        "api": web_ca.issue("api.example.com", "api2.example.com"),
        "shop": web_ca.issue("shop.example.org"),
    }


@pytest.fixture
def f5_version() -> str:
    """Override with ``@pytest.mark.parametrize("f5_version", VERSIONS)``."""
    return VERSIONS[0]


@pytest.fixture
def device(f5_version: str, web_ca: TestCA, web_certs: dict[str, Issued]) -> Device:
    return build_device(f5_version, web_ca, web_certs, free_port(), free_port(), free_port())


@pytest.fixture
def peer(device: Device, mgmt_cert: Issued) -> Iterator[IControlPeer]:
    """The device served over HTTPS (management certificate from ``mgmt_ca``), with TLS
    listeners on its 127.0.0.1 virtual servers."""
    server = IControlPeer(device, server_context(mgmt_cert)).start()
    server.serve_virtuals()
    yield server
    server.stop()


@pytest.fixture
def plain_peer(device: Device) -> Iterator[IControlPeer]:
    """The device served over plain HTTP (no TLS at all)."""
    server = IControlPeer(device, None).start()
    yield server
    server.stop()


@pytest.fixture
def endpoint(peer: IControlPeer, ca_bundle: Path) -> Endpoint:
    return make_endpoint(peer, ca_bundle=ca_bundle)


@pytest.fixture
def session(endpoint: Endpoint, peer: IControlPeer) -> Iterator[object]:
    """An open, verified iControl REST session to ``peer`` (closed, token deleted, afterwards)."""
    from tlsgate_f5 import plugin

    conn = plugin.connect(endpoint, credentials(endpoint))
    with conn:
        yield conn
    assert peer.device.live_tokens() == 0


@pytest.fixture(autouse=True)
def _quick_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    """A virtual server that serves the wrong certificate is reported after 1.5 s, not 10."""
    from tlsgate_f5 import install

    monkeypatch.setattr(install, "VERIFY_DEADLINE", 1.5)


#: The opt-in test kit (fixtures: test_ca, tlsgate_home, sshd, OpenBao, servers, WinRM peer).
pytest_plugins = ["tlsgate_testing"]
