"""Helpers shared by the F5 tests and their fixtures: the device layout, endpoints that point at
a peer, credentials. (A uniquely named module: ``conftest`` is not importable by name when several
test folders are collected together.)"""

from __future__ import annotations

from pathlib import Path

from icontrol_peer import NONE, Device, IControlPeer, User
from tlsgate import ConnectionSpec, Credentials, Endpoint, Secret
from tlsgate_testing.certs import Issued, TestCA

VERSIONS = ("15.1.10", "16.1.5", "17.1.2")
ADMIN_PASSWORD = "admin-Pa55 'quoted' $word"


def pem(cert) -> bytes:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def build_device(version: str, web_ca: TestCA, certs: dict[str, Issued], www_port: int, plain_port: int,
                 v6_port: int = 443) -> Device:
    """Two partitions, four client-ssl profiles (one parent), four virtual servers:

    * ``/Common/vs_www`` on 127.0.0.1:<www_port> (TLS listener): SNI profiles ``cs_www``
      (default) and ``cs_api``, plus tcp, http and a server-ssl profile;
    * ``/Common/vs_api6`` on ``::1.<v6_port>`` (nothing listens: refused at once): ``cs_api``
      (shared with vs_www);
    * ``/Tenant_A/vs_shop`` on ``10.1.0.5%2:443`` (route domain 2, disabled): ``/Tenant_A/cs_shop``;
    * ``/Common/vs_plain``: no client-ssl profile (no node).

    ``/Common/inter_chain.crt`` is the chain of both cs_www and cs_api.
    """
    dev = Device(version)
    dev.partitions.add("Tenant_A")
    dev.users["admin"] = User(ADMIN_PASSWORD)
    dev.users["operator"] = User("operator-pw", role="operator", shell="none")  # noqa: S604 - a BIG-IP login shell, not a subprocess
    inter = pem(web_ca.intermediate)
    dev.add_cert("/Common/default.crt", certs["default"].cert_pem)
    dev.add_key("/Common/default.key", certs["default"].key_pem)
    dev.add_cert("/Common/ca-bundle.crt", inter + pem(web_ca.root))
    dev.add_cert("/Common/inter_chain.crt", inter)
    for name in ("www", "api"):
        dev.add_cert(f"/Common/{name}_2025.crt", certs[name].cert_pem)
        dev.add_key(f"/Common/{name}_2025.key", certs[name].key_pem)
    dev.add_cert("/Tenant_A/shop_2025.crt", certs["shop"].cert_pem)
    dev.add_key("/Tenant_A/shop_2025.key", certs["shop"].key_pem)
    dev.add_cert("/Tenant_A/shop_chain.crt", inter)
    dev.add_profile("/Common/clientssl", "/Common/default.crt", "/Common/default.key")
    dev.add_profile("/Common/cs_www", "/Common/www_2025.crt", "/Common/www_2025.key", "/Common/inter_chain.crt",
                    server_name="www.example.com", sni_default=True)
    dev.add_profile("/Common/cs_api", "/Common/api_2025.crt", "/Common/api_2025.key", "/Common/inter_chain.crt",
                    server_name="api.example.com")
    dev.add_profile("/Tenant_A/cs_shop", "/Tenant_A/shop_2025.crt", "/Tenant_A/shop_2025.key",
                    "/Tenant_A/shop_chain.crt")
    dev.server_profiles["/Common/serverssl"] = {"defaultsFrom": NONE, "certKeyChain": []}
    dev.other_profiles.update({"/Common/tcp": "tcp", "/Common/http": "http"})
    dev.add_virtual("/Common/vs_www", f"/Common/127.0.0.1:{www_port}", [
        ("/Common/tcp", "all"), ("/Common/http", "all"), ("/Common/cs_www", "clientside"),
        ("/Common/cs_api", "clientside"), ("/Common/serverssl", "serverside")])
    dev.add_virtual("/Common/vs_api6", f"/Common/::1.{v6_port}", [("/Common/tcp", "all"), ("/Common/cs_api", "clientside")])
    dev.add_virtual("/Tenant_A/vs_shop", "/Tenant_A/10.1.0.5%2:443",
                    [("/Common/tcp", "all"), ("/Tenant_A/cs_shop", "clientside")], enabled=False)
    dev.add_virtual("/Common/vs_plain", f"/Common/127.0.0.1:{plain_port}", [("/Common/tcp", "all"), ("/Common/http", "all")])
    return dev


def server_context(cert: Issued):  # type: ignore[no-untyped-def]
    import ssl
    import tempfile

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        crt, key = Path(tmp, "mgmt.crt"), Path(tmp, "mgmt.key")
        crt.write_bytes(cert.cert_pem + pem(cert.chain[0]))
        key.write_bytes(cert.key_pem)
        ctx.load_cert_chain(crt, key)
    return ctx


def make_endpoint(peer: IControlPeer, *, connection_type: str = "rest", ca_bundle: Path | None = None,
                  user: str = "admin", password: str = ADMIN_PASSWORD) -> Endpoint:
    extra = {"ca_bundle": str(ca_bundle)} if ca_bundle else {}
    spec = ConnectionSpec(connection_type, host="127.0.0.1", port=peer.port, user=user,
                          password=Secret(password), extra=extra)
    return Endpoint(name="bigip", type="f5", connection=spec)


def credentials(endpoint: Endpoint) -> Credentials:
    return Credentials(user=endpoint.connection.user, password=endpoint.connection.password)


