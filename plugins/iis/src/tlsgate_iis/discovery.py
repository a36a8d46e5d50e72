"""Reading IIS: sites, their bindings and the certificate each https binding presents.

One :class:`tlsgate.Node` per http and https binding (net.tcp, net.pipe, msmq and ftp bindings
are not web bindings and are left out): the name is the binding's host header,
or the site's name when it has none; the alias is the site's name; ``*`` listens on 0.0.0.0.
The locator (``<site>|<protocol>|<bindingInformation>``) finds the binding again at install time;
``--node`` accepts it, the node's name, or the site name (every binding of that site).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from tlsgate.plugin import (
    WILDCARDS,
    CommandResult,
    Connection,
    Endpoint,
    Node,
    OperationError,
    Target,
    certificate_facts,
    powershell_error_detail,
    served_fingerprints,
    sni_for,
)

from . import scripts

SNI_FLAG = 1
CENTRAL_CERT_STORE_FLAG = 2


@attrs.frozen
class Binding:
    """One entry of a site's ``<bindings>``, with the certificate HTTP.sys has for it."""

    site: str
    site_state: str
    protocol: str
    binding_information: str
    ssl_flags: int = 0
    certificate_hash: str = ""
    certificate_store: str = ""
    #: Why the host could not read this binding (or its site), "" when it could.
    error: str = ""

    @property
    def ip(self) -> str:
        return split_binding_information(self.binding_information)[0]

    @property
    def port(self) -> int | None:
        return split_binding_information(self.binding_information)[1]

    @property
    def host_header(self) -> str:
        return split_binding_information(self.binding_information)[2]

    @property
    def sni(self) -> bool:
        return bool(self.ssl_flags & SNI_FLAG)

    @property
    def https(self) -> bool:
        return self.protocol.lower() == "https"

    @property
    def locator(self) -> str:
        return f"{self.site}|{self.protocol}|{self.binding_information}"

    @property
    def listen_ip(self) -> str:
        """The address as a Node shows it: ``*`` is 0.0.0.0, IPv6 without brackets."""
        ip = self.ip
        if ip in ("*", ""):
            return "0.0.0.0"  # noqa: S104 - a listen wildcard, not a bind
        return ip.strip("[]")

    @property
    def http_sys_key(self) -> tuple[str, str, int | None]:
        """Where HTTP.sys keeps this binding's certificate: SNI bindings by host:port, the others
        by ip:port, shared with every non-SNI binding on the same address."""
        if self.sni:
            return ("hostnameport", self.host_header.lower(), self.port)
        return ("ipport", self.listen_ip, self.port)

    @property
    def netsh_key(self) -> str:
        """The HTTP.sys entry as ``netsh http ... sslcert`` names it: ``ipport=0.0.0.0:443``,
        ``ipport=[2001:db8::1]:443`` (IPv6 in brackets) or ``hostnameport=www.example.org:443``."""
        kind, addr, port = self.http_sys_key
        if kind == "ipport" and ":" in addr:
            addr = f"[{addr}]"
        return f"{kind}={addr}:{port}"


@attrs.frozen
class StoreCertificate:
    der: bytes
    has_key: bool
    store: str


@attrs.frozen
class IISState:
    """What ``iis-discover`` returned: sites and bindings, bound certificates, host facts."""

    bindings: tuple[Binding, ...]
    certificates: Mapping[str, StoreCertificate]
    version: str = ""
    admin: bool = True
    temp_dir: str = "C:\\Windows\\Temp"
    build: int | None = None

    def find(self, locator: str) -> Binding | None:
        return next((b for b in self.bindings if b.locator == locator), None)

    def sharing(self, binding: Binding) -> list[Binding]:
        """Other https bindings that HTTP.sys serves with the same certificate slot."""
        return [
            b for b in self.bindings
            if b.https and b is not binding and b.locator != binding.locator and b.http_sys_key == binding.http_sys_key
        ]


def split_binding_information(info: str) -> tuple[str, int | None, str]:
    """``IP:port:host`` -> (ip, port, host). The IP may be IPv6 in brackets (``[::1]:443:h``)."""
    if info.startswith("["):
        close = info.find("]")
        ip, rest = info[: close + 1], info[close + 2 :]
    else:
        ip, _, rest = info.partition(":")
    port_text, _, host = rest.partition(":")
    try:
        port: int | None = int(port_text)
    except ValueError:
        port = None
    return ip, port, host


def read_state(connection: Connection) -> IISState:
    """Run ``iis-discover`` and parse its answer (OperationError with the host's reason)."""
    res = connection.run_powershell(scripts.DISCOVER, {})
    if not res.ok:
        detail = failure_detail(res)
        raise OperationError(f"{connection.host}: reading the IIS configuration failed: {detail}",
                             host=connection.host)
    return parse_state(decode_json(res.stdout, connection.host, "iis-discover"))


def failure_detail(res: CommandResult) -> str:
    """Why an IIS template failed: its own language-mode message (exit 6, on stdout: the only
    stream that works in every language mode), else the PowerShell error record or stderr line."""
    if res.exit_code == scripts.EXIT_NOT_FULL_LANGUAGE and res.stdout.strip().startswith(scripts.NOT_FULL_LANGUAGE):
        return res.stdout.strip().splitlines()[0]
    return powershell_error_detail(res.stderr, res.exit_code)


def decode_json(stdout: str, host: str, what: str) -> Any:
    text = stdout.strip()
    if not text:
        return None
    try:
        return json.loads(base64.b64decode(text, validate=True).decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise OperationError(f"{host}: {what} returned output tlsgate cannot read", host=host) from None


def _list(value: Any) -> list[Any]:
    """PowerShell 5.1 serialises a one-element array as the element itself; undo that."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def parse_state(data: Any) -> IISState:
    data = data or {}
    bindings = []
    for site in _list(data.get("sites")):
        name = str(site.get("name") or "")
        state = str(site.get("state") or "")
        if site.get("stateError"):
            state = f"unknown ({site.get('stateError')})"
        if site.get("error"):  # the bindings of this site could not be read at all
            bindings.append(Binding(site=name, site_state=state, protocol="", binding_information="",
                                    error=str(site.get("error"))))
            continue
        for b in _list(site.get("bindings")):
            bindings.append(Binding(
                site=name,
                site_state=state,
                protocol=str(b.get("protocol") or "").lower(),
                binding_information=str(b.get("bindingInformation") or ""),
                ssl_flags=int(b.get("sslFlags") or 0),
                certificate_hash=str(b.get("certificateHash") or "").upper(),
                certificate_store=str(b.get("certificateStoreName") or ""),
                error=str(b.get("error") or ""),
            ))
    certs = {}
    for thumb, c in (data.get("certs") or {}).items():
        try:
            der = base64.b64decode(c.get("der") or "")
        except (binascii.Error, ValueError):
            continue
        certs[str(thumb).upper()] = StoreCertificate(der, bool(c.get("hasKey")), str(c.get("store") or ""))
    build = data.get("build")
    return IISState(
        bindings=tuple(bindings),
        certificates=certs,
        version=str(data.get("version") or "").strip("."),
        admin=bool(data.get("admin", True)),
        temp_dir=str(data.get("temp") or "C:\\Windows\\Temp"),
        build=int(build) if isinstance(build, int | str) and str(build).isdigit() else None,
    )


def vendor(state: IISState) -> str:
    return f"Microsoft IIS {state.version}" if state.version else "Microsoft IIS"


def binding_node(binding: Binding, state: IISState) -> Node:
    if binding.error:
        what = "binding" if binding.protocol or binding.binding_information else "site's bindings"
        return Node(name=binding.host_header or binding.site, alias=(binding.site,), protocol=binding.protocol,
                    ip=binding.listen_ip if binding.binding_information else None, port=binding.port,
                    vendor=vendor(state), state=f"unreadable: the {what} could not be read: {binding.error}",
                    locator=binding.locator)
    site_state = binding.site_state if binding.site_state.startswith("unknown (") else binding.site_state.lower()
    notes = ["active" if site_state == "started" else (site_state or "unknown")]
    if binding.https:
        notes.append("SNI" if binding.sni else "IP-based")
        if binding.ssl_flags & ~SNI_FLAG:
            notes.append(f"sslFlags={binding.ssl_flags}")
    der = None
    if binding.https and binding.certificate_hash:
        found = state.certificates.get(binding.certificate_hash)
        if found is None:
            store = binding.certificate_store or scripts.STORE
            notes.append(f"bound certificate {binding.certificate_hash} not found in LocalMachine\\{store}")
        else:
            der = found.der
    elif binding.https and binding.ssl_flags & CENTRAL_CERT_STORE_FLAG:
        # sslFlags bit 2 (CentralCertStore, Microsoft Learn "Binding <binding>"): HTTP.sys serves
        # <host>.pfx from the Centralized Certificate Store share; the binding names no hash
        notes.append("certificate from the Centralized Certificate Store (not managed by tlsgate)")
    elif binding.https:
        notes.append("no certificate bound")
    node = Node(
        name=binding.host_header or binding.site,
        alias=(binding.site,),
        protocol=binding.protocol,
        ip=binding.listen_ip,
        port=binding.port,
        vendor=vendor(state),
        state="; ".join(notes),
        locator=binding.locator,
    )
    if der is None:
        return node
    try:
        facts = certificate_facts(der)
    except ValueError:
        return attrs.evolve(node, state=node.state + "; bound certificate unreadable")
    return attrs.evolve(node, fingerprint=facts.fingerprint, certificate=der, subject=facts.subject,
                        not_after=facts.not_after)


def probe_target(endpoint: Endpoint, binding: Binding) -> tuple[str, int, str | None] | None:
    """Where the gateway can handshake with a binding: its own address when it is specific, else
    the endpoint's host; SNI is the host header (what browsers send)."""
    if not binding.https or binding.port is None:
        return None
    ip = binding.listen_ip
    host = ip if ip not in WILDCARDS else endpoint.host
    return host, binding.port, sni_for(binding.host_header) if binding.host_header else None


def confirm_served(endpoint: Endpoint, nodes: Sequence[Node], state: IISState) -> list[Node]:
    """Mark nodes whose port answers with a different certificate than the bound one."""
    pairs = [(n, state.find(n.locator)) for n in nodes]
    targets = {i: Target(*t) for i, (n, b) in enumerate(pairs)
               if b is not None and n.fingerprint and (t := probe_target(endpoint, b)) is not None}
    served = served_fingerprints(targets.values(), timeout=2.0, threads=8)
    out = list(nodes)
    for i, target in targets.items():
        node, got = out[i], served[target]
        if got is not None and got != node.fingerprint:
            out[i] = attrs.evolve(node, state=node.state + f"; serves a different certificate ({got[:16]}...)")
    return out


#: Binding protocols that serve web traffic; net.tcp, net.pipe, msmq.formatname (WAS activation)
#: and ftp bindings are not certificate nodes (their binding information is not ``ip:port:host``).
WEB_PROTOCOLS = ("http", "https")


def discover(endpoint: Endpoint, connection: Connection, *, probe: bool = True) -> list[Node]:
    state = read_state(connection)
    nodes = [binding_node(b, state) for b in state.bindings if b.protocol in WEB_PROTOCOLS or b.error]
    return confirm_served(endpoint, nodes, state) if probe else nodes
