"""The Tomcat driver on a Windows host over winrm_http / winrm_https / winrm_https_insecure (the
WinRM loopback peer + simulated Windows host). The host's ``# tlsgate:tomcat-restart`` handler
plays the Tomcat service: it reads server.xml and the keystores from the host's disk with its
own code (ElementTree + cryptography) and serves each connector's certificate on 127.0.0.1, or
leaves the port dead when a keystore does not load, as Tomcat does."""

from __future__ import annotations

import ntpath
import socket
import ssl
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from tlsgate import CertificateBundle, ConnectionSpec, Endpoint, OperationError, Secret
from tlsgate.registry import get_registry
from tlsgate_testing.certs import TestCA
from tlsgate_testing.fixtures_core import free_port
from tlsgate_testing.winhost import PSError, SimulatedWindowsHost
from tlsgate_testing.winrm_fixtures import WINRM_PASSWORD, WINRM_USER, winrm_credentials
from tlsgate_tomcat.plugin import TomcatOptions
from tlsgate_tomcat.restart import WINDOWS_RESTART_TEMPLATE

BASE = r"C:\Program Files\Apache Software Foundation\Tomcat 10.1"
SERVICE = "Tomcat10"
SERVER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Windows Tomcat 10.1 -->
<Server port="8005" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="{a}" address="127.0.0.1" protocol="org.apache.coyote.http11.Http11NioProtocol" SSLEnabled="true">
      <SSLHostConfig>
        <Certificate certificateKeystoreFile="conf\\site-a.p12" certificateKeystorePassword="a pw;$(calc)"
                     certificateKeystoreType="PKCS12" type="EC" />
      </SSLHostConfig>
    </Connector>
    <Connector port="{b}" address="127.0.0.1" protocol="org.apache.coyote.http11.Http11NioProtocol" SSLEnabled="true">
      <SSLHostConfig>
        <Certificate certificateKeystoreFile="conf/site-b.p12" certificateKeystorePassword="b-pw"
                     certificateKeystoreType="PKCS12" type="EC" />
      </SSLHostConfig>
    </Connector>
  </Service>
</Server>
"""


def p12(issued, password: str) -> bytes:  # type: ignore[no-untyped-def]
    enc = serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(2048).build(password.encode())
    return pkcs12.serialize_key_and_certificates(b"tomcat", issued.key, issued.cert, None, enc)


class FakeTomcatService:
    """Serves what server.xml on the simulated host configures, one TLS listener per connector."""

    def __init__(self, host: SimulatedWindowsHost, tmp: Path) -> None:
        self.host = host
        self.tmp = tmp
        self.listeners: list[socket.socket] = []
        self.restarts: list[dict[str, Any]] = []
        self.unreadable: set[str] = set()  # paths the service account may not read

    def handle(self, host: SimulatedWindowsHost, params: dict[str, Any]) -> str:
        self.restarts.append(dict(params))
        if params["service"] not in ("", SERVICE):
            raise PSError(f"Cannot find any service with service name '{params['service']}'.")
        if ntpath.normcase(params["base"]).rstrip("\\") != ntpath.normcase(BASE):
            raise PSError("no Tomcat service runs with catalina.base " + params["base"], 3)
        self.stop()
        root = ET.fromstring(host.read(BASE + r"\conf\server.xml"))  # noqa: S314 - the test's own file
        for connector in root.iter("Connector"):
            cert = connector.find("SSLHostConfig/Certificate")
            if cert is None:
                continue
            path = ntpath.join(BASE, cert.get("certificateKeystoreFile", "").replace("/", "\\"))
            try:
                if path in self.unreadable:
                    raise PermissionError(path)
                key, leaf, _ = pkcs12.load_key_and_certificates(
                    host.read(path), cert.get("certificateKeystorePassword", "changeit").encode())
            except (OSError, ValueError, KeyError):
                continue  # like Tomcat: the connector fails, the service keeps running
            self.listen(int(connector.get("port", "0")), key, leaf)
        return SERVICE + "\r\n"

    def listen(self, port: int, key: Any, leaf: Any) -> None:
        d = Path(tempfile.mkdtemp(dir=self.tmp))
        (d / "c.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        (d / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(d / "c.pem", d / "k.pem")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(8)
        self.listeners.append(sock)

        def serve() -> None:
            while True:
                try:
                    conn, _ = sock.accept()
                except OSError:
                    return
                try:
                    with ctx.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)
                except (OSError, ssl.SSLError):
                    pass

        threading.Thread(target=serve, daemon=True).start()

    def stop(self) -> None:
        for sock in self.listeners:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() of its thread, frees the port
            except OSError:
                pass
            sock.close()
        self.listeners.clear()


@pytest.fixture
def windows_tomcat(request: pytest.FixtureRequest, winrm_peer_factory: Callable[..., Any], winrm_tls: Any,
                   tlsgate_home: Path, tmp_path: Path, test_ca: TestCA) -> Iterator[Any]:
    kind = request.param
    host = SimulatedWindowsHost()
    service = FakeTomcatService(host, tmp_path)
    host.register("tomcat-restart", service.handle, template=WINDOWS_RESTART_TEMPLATE)
    ports = {"a": free_port(), "b": free_port()}
    certs = {"a": test_ca.issue("a.example.test"), "b": test_ca.issue("b.example.test")}
    host.seed(BASE + r"\conf\server.xml", SERVER_XML.format(**ports))
    host.seed(BASE + r"\conf\site-a.p12", p12(certs["a"], "a pw;$(calc)"))
    host.seed(BASE + r"\conf\site-b.p12", p12(certs["b"], "b-pw"))
    service.handle(host, {"service": "", "base": BASE})  # the service is running
    peer = winrm_peer_factory({"winrm_http": "http", "winrm_https": "https",
                               "winrm_https_insecure": "https_untrusted"}[kind], host=host)
    extra: dict[str, Any] = {"winrm_auth": "ntlm"}
    if kind == "winrm_https":
        extra["ca_bundle"] = str(winrm_tls.ca_bundle)
    spec = ConnectionSpec(kind, host="127.0.0.1", port=peer.port, user=WINRM_USER,
                          password=Secret(WINRM_PASSWORD), extra=extra)
    endpoint = Endpoint(name="win-tc", type="tomcat", connection=spec, options=TomcatOptions(tomcat_dir=BASE))
    try:
        yield endpoint, host, service, ports, certs
    finally:
        service.stop()


def served(port: int) -> str | None:
    from tlsgate.plugin import try_served_fingerprint

    return try_served_fingerprint("127.0.0.1", port)


@pytest.mark.parametrize("windows_tomcat", ["winrm_http", "winrm_https", "winrm_https_insecure"], indirect=True)
def test_install_over_winrm_restarts_the_service(windows_tomcat: Any, test_ca: TestCA) -> None:
    endpoint, host, service, ports, certs = windows_tomcat
    registry = get_registry()
    assert registry.validate(endpoint) == []
    new = test_ca.issue("a.example.test")
    bundle = CertificateBundle.from_pem(new.cert_pem, new.key_pem, new.chain_pem)
    before_xml = host.read(BASE + r"\conf\server.xml")
    with registry.connect(endpoint, winrm_credentials()) as conn:
        nodes = registry.discover_nodes(endpoint, conn)
        assert [(n.name, n.port, n.fingerprint, n.state) for n in nodes] == [
            ("_default_", ports["a"], certs["a"].fingerprint, "active"),
            ("_default_", ports["b"], certs["b"].fingerprint, "active")]
        chosen = [n for n in nodes if n.port == ports["a"]]
        dry = registry.install(endpoint, conn, bundle, chosen, dry_run=True, alias=None)
        assert dry.plan[3].target == "Restart-Service (the Tomcat service of this directory)"
        assert host.read(BASE + r"\conf\server.xml") == before_xml and len(service.restarts) == 1
        result = registry.install(endpoint, conn, bundle, chosen, dry_run=False, alias=None)
    assert result.verified and result.messages[0] == f"restarted Windows service {SERVICE}"
    assert served(ports["a"]) == new.fingerprint
    assert served(ports["b"]) == certs["b"].fingerprint
    new_rel = f"conf/tlsgate/127.0.0.1_{ports['a']}__default_-{new.fingerprint[:12]}.p12"
    assert host.read(BASE + r"\conf\server.xml") == before_xml.replace(
        b'certificateKeystoreFile="conf\\site-a.p12"', f'certificateKeystoreFile="{new_rel}"'.encode()).replace(
        b'type="EC" />', b'type="EC" certificateKeyAlias="tomcat" />', 1)
    assert host.exists(BASE + "\\" + new_rel.replace("/", "\\"))
    # the restart went through the fixed template with its parameters as data
    call = [c for c in host.calls if c.template == "tomcat-restart"][-1]
    assert call.params == {"service": "", "base": BASE}
    assert BASE not in call.script.split("# tlsgate:tomcat-restart", 1)[1]


@pytest.mark.parametrize("windows_tomcat", ["winrm_http"], indirect=True)
def test_unloadable_keystore_is_restored_over_winrm(windows_tomcat: Any, test_ca: TestCA) -> None:
    endpoint, host, service, ports, certs = windows_tomcat
    new = test_ca.issue("b.example.test")
    new_path = BASE + f"\\conf\\tlsgate\\127.0.0.1_{ports['b']}__default_-{new.fingerprint[:12]}.p12"
    service.unreadable.add(new_path)
    before_xml = host.read(BASE + r"\conf\server.xml")
    registry = get_registry()
    with registry.connect(endpoint, winrm_credentials()) as conn, pytest.raises(OperationError) as err:
        chosen = [n for n in registry.discover_nodes(endpoint, conn) if n.port == ports["b"]]
        registry.install(endpoint, conn, CertificateBundle.from_pem(new.cert_pem, new.key_pem), chosen, False, None)
    assert err.value.rolled_back
    assert host.read(BASE + r"\conf\server.xml") == before_xml
    assert not host.exists(new_path)
    assert len(service.restarts) == 3  # fixture start, install, rollback
    assert served(ports["a"]) == certs["a"].fingerprint
    assert served(ports["b"]) == certs["b"].fingerprint


@pytest.mark.parametrize("windows_tomcat", ["winrm_http"], indirect=True)
def test_restart_hook_names_the_service(windows_tomcat: Any) -> None:
    endpoint, _host, service, ports, certs = windows_tomcat
    import attrs

    named = attrs.evolve(endpoint, options=TomcatOptions(tomcat_dir=BASE, tomcat_service=SERVICE))
    registry = get_registry()
    with registry.connect(named, winrm_credentials()) as conn:
        result = registry.restart(named, conn)
    assert result.restarted and SERVICE in result.message
    assert service.restarts[-1] == {"service": SERVICE, "base": BASE}
    assert served(ports["a"]) == certs["a"].fingerprint
