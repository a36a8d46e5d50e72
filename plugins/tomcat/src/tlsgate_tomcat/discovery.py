"""Discovery: server.xml -> one node per TLS connector and SSLHostConfig, with the certificate
its configuration names (keystore file + alias + type, or PEM file), confirmed by handshake."""

from __future__ import annotations

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tlsgate.plugin import (
    Connection,
    Endpoint,
    Node,
    OperationError,
    Target,
    fingerprint,
    load_pem_certificates,
    not_after,
    probe_host,
    probe_many,
    subject_text,
    to_der,
)

from . import serverxml
from .keystore import KeystoreError, find_entry, read_entries
from .serverxml import CertificateConfig, HostConfig, ServerXml

VENDOR = "Apache Tomcat"
DEFAULT_KEYSTORE_PASSWORD = "changeit"  # noqa: S105 - Tomcat's documented default, not ours


@attrs.frozen
class TomcatConfig:
    """server.xml as read from one Tomcat directory (CATALINA_BASE) over a connection."""

    base: str
    path: str  # conf/server.xml
    xml: ServerXml
    properties: dict[str, str]

    def host_configs(self) -> list[HostConfig]:
        return self.xml.host_configs()


def server_xml_path(connection: Connection, base: str) -> str:
    return str(connection.path.join(base, "conf", "server.xml"))


def load_config(connection: Connection, base: str, data: bytes | None = None) -> TomcatConfig:
    """Read and parse ``<base>/conf/server.xml`` (or parse ``data`` as that file)."""
    p = connection.path
    path = server_xml_path(connection, base)
    if data is None:
        if not connection.exists(path):
            raise OperationError(f"{connection.host}: {path}: no such file (is --tomcat_dir the CATALINA_BASE?)")
        data = connection.read_file(path)
    props: dict[str, str] = {}
    props_path = p.join(base, "conf", "catalina.properties")
    try:
        if connection.exists(props_path):
            props = serverxml.parse_properties(connection.read_text(props_path, "latin-1"))
    except OperationError:
        props = {}
    props.setdefault("catalina.base", base)
    return TomcatConfig(base=base, path=path, xml=serverxml.parse(data, properties=props, where=path), properties=props)


def resolve(connection: Connection, base: str, value: str) -> str:
    """A path from server.xml: absolute as written, relative ones against CATALINA_BASE."""
    p = connection.path
    if p.isabs(value) or (connection.platform == "windows" and len(value) > 1 and value[1] == ":"):
        return str(value)
    return str(p.normpath(p.join(base, value)))


def keystore_password(connection: Connection, base: str, cert: CertificateConfig) -> str:
    """The keystore password Tomcat would use (attribute, password file, else ``changeit``)."""
    password = cert.get("certificateKeystorePassword")
    if password is not None:
        return password
    pw_file = cert.get("certificateKeystorePasswordFile")
    if pw_file:
        text = connection.read_text(resolve(connection, base, pw_file))
        return text.splitlines()[0] if text else ""
    return DEFAULT_KEYSTORE_PASSWORD


@attrs.frozen
class Material:
    """The certificate a Certificate element's configuration holds (or why it cannot be read)."""

    certificate: x509.Certificate | None = None
    key: object | None = attrs.field(default=None, repr=False)
    path: str | None = None
    error: str | None = None


def read_material(connection: Connection, base: str, cert: CertificateConfig) -> Material:
    """Open what ``cert`` points at, as Tomcat would (never raises)."""
    try:
        if cert.uses_pem:
            path = resolve(connection, base, cert.get("certificateFile") or "")
            found = load_pem_certificates(connection.read_file(path))
            key = None
            key_file = cert.get("certificateKeyFile")
            key_path = resolve(connection, base, key_file) if key_file else path
            try:
                pw = cert.get("certificateKeyPassword")
                key = serialization.load_pem_private_key(connection.read_file(key_path), pw.encode() if pw else None)
            except (ValueError, TypeError, OperationError):
                key = None
            return Material(found[0] if found else None, key, path)
        ks_file = cert.get("certificateKeystoreFile")
        if not ks_file or ks_file.upper() == "NONE":
            return Material(error="no keystore file configured")
        path = resolve(connection, base, ks_file)
        data = connection.read_file(path)
        entries = read_entries(data, keystore_password(connection, base, cert))
        entry = find_entry(entries, cert.get("certificateKeyAlias"))
        if entry is None:
            return Material(path=path, error=f"{path}: no key entry {cert.get('certificateKeyAlias')!r}")
        return Material(entry.certificate, entry.key, path)
    except (OperationError, KeystoreError, ValueError) as exc:
        return Material(error=str(exc))


def probe_sni(hc: HostConfig) -> str | None:
    """The SNI that reaches ``hc``: none for the connector's default host, the host name
    otherwise (a wildcard host name is reached with a made-up name under it)."""
    if hc.is_default or hc.host_name == serverxml.DEFAULT_HOST:
        return None
    if hc.host_name.startswith("*."):
        return "tlsgate-probe." + hc.host_name[2:]
    return hc.host_name


def probe_target(endpoint: Endpoint, hc: HostConfig, key_kind: str | None = None) -> Target | None:
    """The handshake that reaches ``hc``. A host with several <Certificate>s (RSA + EC) shows each
    only to a client asking for its key type: ``key_kind`` asks for one (an install checks the
    one it replaced)."""
    if hc.port is None or hc.port <= 0:
        return None
    local = endpoint.connection.type == "local"
    return Target(probe_host(hc.address, endpoint.host, local), hc.port, probe_sni(hc),
                  key_kind=key_kind if len(hc.certificates) > 1 else None)


def discover(endpoint: Endpoint, connection: Connection, *, probe: bool = True) -> list[Node]:
    config = load_config(connection, endpoint.options.tomcat_dir)
    hcs = config.host_configs()
    targets = [probe_target(endpoint, hc) if probe else None for hc in hcs]
    served = probe_many([t for t in targets if t is not None], timeout=3.0)  # all connectors at once
    nodes = [node_for(endpoint, connection, config, hc, served[t] if t is not None else None, probe=probe)
             for hc, t in zip(hcs, targets, strict=True)]
    # plain HTTP connectors are nodes too (as nginx's and Apache's plain listeners are): no certificate
    nodes += [Node(name=DEFAULT_HTTP_NAME, protocol="http", ip=address, port=port, vendor=VENDOR, state="active",
                   locator=f"{service}/{address or '*'}:{port}/http")
              for service, address, port in config.xml.plain_connectors()]
    return nodes


#: the name of a plain HTTP connector's node (a connector has no host name of its own)
DEFAULT_HTTP_NAME = "_default_"


def node_for(
    endpoint: Endpoint, connection: Connection, config: TomcatConfig, hc: HostConfig, served_der: bytes | None,
    *, probe: bool = True,
) -> Node:
    """The node of one connector host; ``served_der``: what a handshake to it got (None: nothing)."""
    # Several <Certificate>s (RSA + EC): the node shows the first; the handshake may get any.
    materials = [read_material(connection, config.base, c) for c in hc.certificates]
    configured_all = [m.certificate for m in materials if m.certificate is not None]
    configured = materials[0].certificate if materials else None
    served: x509.Certificate | None = None
    if served_der is not None:
        try:
            served = x509.load_der_x509_certificate(served_der)
        except ValueError:
            served = None
    if served is None:
        state = "down" if probe else "configured"
    elif configured is None or served in configured_all:
        state = "active"
    else:
        state = "restart-pending"  # the files changed since Tomcat last started
    shown = served or configured  # what the node presents; its configuration when it is down
    return Node(
        name=hc.host_name,
        protocol="https",
        ip=hc.address,
        port=hc.port,
        fingerprint=fingerprint(shown) if shown is not None else None,
        subject=subject_text(shown) if shown is not None else None,
        not_after=not_after(shown) if shown is not None else None,
        vendor=VENDOR,
        state=state,
        locator=hc.locator,
        certificate=to_der(shown) if shown is not None else None,
    )
