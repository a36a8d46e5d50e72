"""The standard IIS scene of the tests and helpers shared by the test modules (a module with a
unique name: the test folders of several plugins are on sys.path, so ``conftest`` is ambiguous)."""

from __future__ import annotations

import attrs
from iis_sim import IISSim
from tlsgate_testing.certs import Issued


@attrs.frozen
class Scene:
    """The certificates of the standard scene (see :func:`scene`)."""

    default: Issued  # Default Web Site, *:443 IP-based
    shop: Issued  # Shop, SNI shop.example.com:443
    blog: Issued  # Blog, SNI blog.example.com:443 and 127.0.0.5:8443 IP-based


def der(issued: Issued) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return issued.cert.public_bytes(serialization.Encoding.DER)


def build_scene(certs: Scene) -> IISSim:
    """Four sites: http and https bindings, IP-based and SNI, a stopped site, an unbound binding, and
    the WAS bindings (net.tcp, net.pipe) a Default Web Site often has."""
    sim = IISSim()
    sim.add_site("Default Web Site", ("http", "*:80:"), ("https", "*:443:"), ("net.tcp", "808:*"),
                 ("net.pipe", "*"))
    sim.add_site("Shop", ("http", "*:80:shop.example.com"), ("https", "*:443:shop.example.com", 1))
    sim.add_site("Blog", ("https", "*:443:blog.example.com", 1), ("https", "127.0.0.5:8443:"))
    sim.add_site("Api", ("https", "*:443:api.example.com", 1), state="Stopped")
    t_default = sim.add_certificate(der(certs.default), key=certs.default.key)
    t_shop = sim.add_certificate(der(certs.shop), key=certs.shop.key)
    t_blog = sim.add_certificate(der(certs.blog), key=certs.blog.key)
    sim.bind("Default Web Site", "*:443:", t_default)
    sim.bind("Shop", "*:443:shop.example.com", t_shop)
    sim.bind("Blog", "*:443:blog.example.com", t_blog)
    sim.bind("Blog", "127.0.0.5:8443:", t_blog)
    return sim


def table(nodes):  # type: ignore[no-untyped-def]
    return [(n.name, n.alias, n.protocol, n.ip, n.port, n.fingerprint, n.state, n.locator) for n in nodes]


def expected(certs: Scene) -> list[tuple]:  # type: ignore[type-arg]
    """The nodes of :func:`build_scene`, as :func:`table` shows them."""
    return [
        ("Default Web Site", ("Default Web Site",), "http", "0.0.0.0", 80, None, "active",
         "Default Web Site|http|*:80:"),
        ("Default Web Site", ("Default Web Site",), "https", "0.0.0.0", 443, certs.default.fingerprint,
         "active; IP-based", "Default Web Site|https|*:443:"),
        ("shop.example.com", ("Shop",), "http", "0.0.0.0", 80, None, "active", "Shop|http|*:80:shop.example.com"),
        ("shop.example.com", ("Shop",), "https", "0.0.0.0", 443, certs.shop.fingerprint, "active; SNI",
         "Shop|https|*:443:shop.example.com"),
        ("blog.example.com", ("Blog",), "https", "0.0.0.0", 443, certs.blog.fingerprint, "active; SNI",
         "Blog|https|*:443:blog.example.com"),
        ("Blog", ("Blog",), "https", "127.0.0.5", 8443, certs.blog.fingerprint, "active; IP-based",
         "Blog|https|127.0.0.5:8443:"),
        ("api.example.com", ("Api",), "https", "0.0.0.0", 443, None, "stopped; SNI; no certificate bound",
         "Api|https|*:443:api.example.com"),
    ]
