"""Discovery over the loopback peer, exact, for each supported TMOS version."""

from __future__ import annotations

import datetime as dt

import pytest
from f5_setup import VERSIONS
from tlsgate_f5 import plugin
from tlsgate_f5.discovery import CERTS


def _node(name, alias, ip, port, issued, state="active"):  # type: ignore[no-untyped-def]
    return {"name": name, "alias": list(alias), "protocol": "https", "ip": ip, "port": port,
            "fingerprint": issued.fingerprint, "subject": f"CN={issued.cert.subject.rfc4514_string()[3:]}",
            "not_after": dt.datetime.fromtimestamp(int(issued.cert.not_valid_after_utc.timestamp()), dt.UTC).isoformat(),
            "vendor": "", "state": state, "locator": f"{name}|{alias[0]}"}


@pytest.mark.parametrize("f5_version", VERSIONS)
def test_discovery_is_exact(session, peer, web_certs, f5_version):
    nodes = plugin.discover_nodes(endpoint=None, connection=session)
    www_port = int(peer.device.virtuals["/Common/vs_www"]["destination"].rsplit(":", 1)[1])
    v6_port = int(peer.device.virtuals["/Common/vs_api6"]["destination"].rsplit(".", 1)[1])
    expected = [
        _node("/Common/vs_api6", ("/Common/cs_api", "api.example.com"), "::1", v6_port, web_certs["api"]),
        _node("/Common/vs_www", ("/Common/cs_api", "api.example.com"), "127.0.0.1", www_port, web_certs["api"]),
        _node("/Common/vs_www", ("/Common/cs_www", "www.example.com"), "127.0.0.1", www_port, web_certs["www"]),
        _node("/Tenant_A/vs_shop", ("/Tenant_A/cs_shop",), "10.1.0.5%2", 443, web_certs["shop"],
              state="disabled; not probed: a disabled virtual server accepts no connections"),
    ]
    for e in expected:
        e["vendor"] = f"F5 BIG-IP {f5_version}"
    assert [n.to_json() for n in nodes] == expected
    # the certificate itself comes from a handshake where the virtual address answers
    by_locator = {n.locator: n for n in nodes}
    assert by_locator["/Common/vs_www|/Common/cs_www"].certificate == web_certs["www"].cert.public_bytes(
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER)
    assert by_locator["/Common/vs_www|/Common/cs_api"].certificate is not None  # by SNI api.example.com
    assert by_locator["/Tenant_A/vs_shop|/Tenant_A/cs_shop"].certificate is None  # route domain 2
    # inventory from sys/file/ssl-cert, never sys/crypto/cert; discovery changes nothing
    paths = [p for m, p, _ in peer.device.log if m == "GET"]
    assert CERTS in paths and not [p for p in paths if "/sys/crypto/" in p]
    assert not [e for e in peer.device.log if e[0] != "GET" and "login" not in e[1] and "tokens" not in e[1]]


@pytest.mark.parametrize("f5_version", VERSIONS)
def test_self_links_carry_the_version(session, peer, f5_version):
    body = session.get("/mgmt/tm/ltm/virtual", params={"expandSubcollections": "true"})
    assert body["selfLink"].endswith(f"?ver={f5_version}")
    assert all(i["selfLink"].endswith(f"?ver={f5_version}") for i in body["items"])
    assert session.version == f5_version


def test_discovery_without_expanded_subcollections(session, peer, monkeypatch):
    """A device that ignores expandSubcollections: the profiles are fetched per virtual server."""
    from tlsgate_f5 import discovery as disc

    real = session.items

    def no_expand(path, *, params=None):  # type: ignore[no-untyped-def]
        items = real(path, params=None if path == disc.VIRTUALS else params)
        if path == disc.VIRTUALS:
            for item in items:
                item["profilesReference"].pop("items", None)
        return items

    monkeypatch.setattr(session, "items", no_expand)
    assert len(plugin.discover_nodes(endpoint=None, connection=session)) == 4
    assert any(p.endswith("/profiles") for _m, p, _b in peer.device.log)


def test_empty_device_has_no_nodes(session, peer):
    peer.device.virtuals.clear()
    assert plugin.discover_nodes(endpoint=None, connection=session) == []


def test_a_device_without_the_server_ssl_collection_is_discovered(session, peer):
    """server-ssl profiles only tell install which objects stay referenced: a device (or an
    account) that answers 404 for that collection failed every discovery ("GET
    /mgmt/tm/ltm/profile/server-ssl failed: 404")."""
    from tlsgate_f5 import discovery as disc

    peer.device.fail("GET", disc.SERVER_PROFILES, 404, "The requested URI was not found", times=10)
    assert len(plugin.discover_nodes(endpoint=None, connection=session)) == 4
