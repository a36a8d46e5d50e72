"""Discovery: one node per binding, with the certificate HTTP.sys has for it, over the loopback
connection and over every WinRM connection type with the real pywinrm client."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from iis_scene import Scene, expected, table
from iis_sim import IISSim
from tlsgate import ConnectionSpec, Endpoint, OperationError
from tlsgate.registry import get_registry
from tlsgate_iis import plugin
from tlsgate_iis.discovery import split_binding_information
from tlsgate_testing.winhost import LoopbackWindowsConnection, SimulatedWindowsHost
from tlsgate_testing.winrm_fixtures import winrm_credentials

ENDPOINT = Endpoint(name="iis1", type="iis", connection=ConnectionSpec("winrm_http", host="127.0.0.1", port=5985))


def test_discovery_is_exact(loopback: LoopbackWindowsConnection, scene_certs: Scene) -> None:
    nodes = plugin.discover_nodes(ENDPOINT, loopback)
    assert table(nodes) == expected(scene_certs)
    https = [n for n in nodes if n.fingerprint]
    assert all(n.vendor == "Microsoft IIS 10.0" for n in nodes)
    assert all(n.certificate and n.subject and n.not_after for n in https)
    shop = next(n for n in nodes if n.locator == "Shop|https|*:443:shop.example.com")
    assert shop.subject == "CN=shop.example.com"
    assert shop.not_after == scene_certs.shop.cert.not_valid_after_utc
    assert loopback.winhost.templates_run() == ["iis-discover"]


@pytest.mark.parametrize("conn_type", ["winrm_http", "winrm_https", "winrm_https_insecure"])
def test_discovery_over_winrm(iis_over_winrm, scene_certs: Scene, conn_type: str) -> None:  # type: ignore[no-untyped-def]
    peer, endpoint = iis_over_winrm(conn_type)
    with get_registry().connect(endpoint, winrm_credentials()) as conn:
        nodes = get_registry().discover_nodes(endpoint, conn)
    assert table(nodes) == expected(scene_certs)
    assert "iis-discover" in peer.host.templates_run()
    if conn_type == "winrm_http":
        assert all(r.encrypted for r in peer.requests if r.action), "NTLM over http must seal every message"


def test_bound_certificate_missing_from_store_is_reported(scene_certs: Scene) -> None:
    host = SimulatedWindowsHost()
    from iis_sim import install_iis

    sim = IISSim()
    sim.add_site("Gone", ("https", "192.0.2.7:443:", 0))
    sim.http_sys["ipport=192.0.2.7:443"] = {"hash": "AB" * 20, "store": "My"}
    sim.add_site("CCS", ("https", "*:443:ccs.example.com", 3))
    install_iis(host, sim)
    nodes = plugin.discover_nodes(ENDPOINT, LoopbackWindowsConnection(host))
    assert nodes[0].fingerprint is None
    assert nodes[0].state == "active; IP-based; bound certificate " + "AB" * 20 + " not found in LocalMachine\\My"
    # not "no certificate bound": HTTP.sys serves the Centralized Certificate Store's ccs.example.com.pfx
    assert nodes[1].state == ("active; SNI; sslFlags=3; certificate from the Centralized Certificate Store "
                              "(not managed by tlsgate)")


def test_missing_webadministration_is_a_clear_error(iis_host: SimulatedWindowsHost) -> None:
    sim = IISSim.load(iis_host)
    sim.webadministration = False
    sim.save(iis_host)
    with pytest.raises(OperationError, match="reading the IIS configuration failed: The WebAdministration module"):
        plugin.discover_nodes(ENDPOINT, LoopbackWindowsConnection(iis_host, name="iis1"))


@pytest.mark.parametrize(("info", "parts"), [
    ("*:443:", ("*", 443, "")),
    ("*:443:www.example.com", ("*", 443, "www.example.com")),
    ("10.0.0.1:8443:", ("10.0.0.1", 8443, "")),
    ("[::1]:443:v6.example.com", ("[::1]", 443, "v6.example.com")),
    ("[2001:db8::1]:443:", ("[2001:db8::1]", 443, "")),
])
def test_split_binding_information(info: str, parts: tuple[str, int, str]) -> None:
    assert split_binding_information(info) == parts


@given(ip=st.one_of(st.just("*"), st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(lambda a: f"[{a}]")),
       port=st.integers(1, 65535), host=st.text(max_size=30))
def test_split_binding_information_round_trips(ip: str, port: int, host: str) -> None:
    assert split_binding_information(f"{ip}:{port}:{host}") == (ip, port, host)
