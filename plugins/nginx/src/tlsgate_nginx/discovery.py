"""Discovery: one Node per server block and listen address, with the certificate it serves."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs
from tlsgate.plugin import (
    PROXY_NOTE,
    Node,
    Target,
    certificate_facts,
    claimed_addresses,
    node_as_served,
    probe_host_for,
    probe_many,
    read_certificate,
    sni_for,
)

from .config import gc_paused, load

if TYPE_CHECKING:
    from tlsgate.plugin import CertFacts, Connection, Endpoint

    from .config import NginxConfig, ServerBlock


def resolve(config: NginxConfig, connection: Connection, value: str) -> str:
    """A path from the configuration, absolute (relative ones are against the config dir)."""
    return value if connection.path.isabs(value) else connection.path.join(config.conf_dir, value)


def build_nodes(
    config: NginxConfig, connection: Connection, *, vendor: str = "nginx"
) -> list[tuple[Node, ServerBlock]]:
    """The node model from the parsed configuration alone (no handshakes)."""
    cache: dict[str, CertFacts] = {}
    out: list[tuple[Node, ServerBlock]] = []
    for server in config.servers:
        facts: CertFacts | None = None
        notes: list[str] = []
        paths = server.certificates
        if paths:
            value = paths[0]
            if "$" in value:
                notes.append(f"certificate path {value!r} uses variables, resolved per handshake")
            else:
                path = resolve(config, connection, value)
                facts = cache.get(path)
                if facts is None:
                    facts = cache[path] = read_certificate(connection, path)
                if facts.problem:
                    notes.append(facts.problem)
            if server.inherited:
                notes.append("certificate inherited from http")
            if len(paths) > 1:
                notes.append(f"first of {len(paths)} certificate pairs (one per key type)")
        name = server.names[0] if server.names else "_"
        alias = tuple(server.names[1:])
        seen: set[tuple[str, int]] = set()
        quic_only = {(x.ip, x.port) for x in server.listens if x.quic} - {
            (x.ip, x.port) for x in server.listens if not x.quic
        }
        for listen in server.listens:
            addr = (listen.ip, listen.port)
            if addr in seen:
                continue
            seen.add(addr)
            https = listen.ssl or listen.quic
            if listen.port is None and not https:
                continue  # plain http on a unix socket: no certificate, nothing to show
            node_notes = list(notes) if https else []
            if addr in quic_only:
                node_notes.append("HTTP/3 over QUIC (UDP) only")
            if listen.proxy_protocol:
                node_notes.append(PROXY_NOTE)
            if https and not paths:
                node_notes.append("no ssl_certificate")
            node = Node(
                name=name,
                alias=alias,
                protocol="https" if https else "http",
                ip=listen.ip,
                port=listen.port,
                fingerprint=facts.fingerprint if https and facts else None,
                subject=facts.subject if https and facts else None,
                not_after=facts.not_after if https and facts else None,  # type: ignore[arg-type]
                vendor=vendor,
                state="; ".join(["active", *node_notes]),
                locator=server.locator,
                certificate=facts.der if https and facts else None,
            )
            out.append((node, server))
    return out


def probe_address(node: Node, endpoint: Endpoint, local: bool, claimed: dict[int, set[str]] | None = None) -> str | None:
    """Where to reach a node: its own address on a local host (``::1`` for ``[::]``, which
    nginx binds IPv6-only), else the endpoint's host; for a wildcard listen, an address that
    no address-specific listen of the port claims (nginx matches the address before the
    names), None when there is none (see :func:`tlsgate.plugin.probe_host_for`)."""
    if local and node.ip == "::":
        return None if "::1" in (claimed or {}).get(node.port or 0, ()) else "::1"
    return probe_host_for(node.ip, node.port, endpoint.connection.host, local, claimed)


def claimed_listens(nodes: Iterable[Node]) -> dict[int, set[str]]:
    """The specific listen addresses of the https nodes, by port."""
    return claimed_addresses((n.ip, n.port) for n in nodes if n.protocol == "https")


def default_servers(config: NginxConfig) -> dict[tuple[str, int], ServerBlock]:
    """Per listen address, the block nginx picks when no server_name matches the SNI."""
    first: dict[tuple[str, int], ServerBlock] = {}
    marked: dict[tuple[str, int], ServerBlock] = {}
    for server in config.servers:
        for listen in server.listens:
            addr = (listen.ip, listen.port)
            first.setdefault(addr, server)
            if listen.default_server:
                marked.setdefault(addr, server)
    return {**first, **marked}


def _sni_reaching(name: str) -> str | None:
    """An SNI that nginx would route to a block named ``name`` (None for catch-alls/regexes)."""
    if name.startswith("*.") and len(name) > 2:
        return "tlsgate-probe" + name[1:]  # any label matches a leading wildcard
    return sni_for(name)


def handshake_target(
    node: Node, server: ServerBlock, defaults: dict[tuple[str, int], ServerBlock], endpoint: Endpoint, local: bool,
    key_kind: str | None = None, claimed: dict[int, set[str]] | None = None,
) -> Target | None:
    """The handshake that reaches this node's block, or None when none can be sure to: a name
    nginx routes to the block, else nothing unless the block is its address's default server
    (a handshake without a matching name lands there, not here).

    A block with several certificate pairs (RSA + ECDSA) shows each only to a client asking for
    its key type: the handshake asks for ``key_kind``, else for the kind of the node's certificate.
    A ``proxy_protocol`` listen gets the PROXY header first."""
    if node.protocol != "https" or node.port is None or "QUIC" in node.state:
        return None
    sni = next((s for n in (node.name, *node.alias) if (s := _sni_reaching(n))), None)
    if sni is None and defaults.get((node.ip or "", node.port)) is not server:
        return None
    if len(server.cert_directives) > 1 and key_kind is None and node.certificate:
        key_kind = certificate_facts(node.certificate).key_kind
    proxied = any(x.proxy_protocol for x in server.listens if (x.ip, x.port) == (node.ip, node.port))
    host = probe_address(node, endpoint, local, claimed)
    if host is None:
        return None
    return Target(host, node.port, sni,
                  key_kind=key_kind if len(server.cert_directives) > 1 else None, proxy_protocol=proxied)


def confirm_by_handshake(
    config: NginxConfig, pairs: Iterable[tuple[Node, ServerBlock]], endpoint: Endpoint, local: bool
) -> list[Node]:
    """Replace each https node's certificate facts with what a TLS handshake (with SNI) shows.

    An unreachable node keeps what its files say, and says so in its state.
    """
    pairs = list(pairs)
    defaults = default_servers(config)
    claimed = claimed_listens(n for n, _ in pairs)
    targets = {node.key: t for node, server in pairs
               if (t := handshake_target(node, server, defaults, endpoint, local, claimed=claimed))}
    served = probe_many(targets.values())
    out = []
    for node, _server in pairs:
        target = targets.get(node.key)
        if target is None:
            if node.protocol == "https" and (node.ip or "").startswith("unix:"):
                node = attrs.evolve(node, state=node.state + "; not probed: listens on a unix socket")
            elif node.protocol == "https" and "QUIC" not in node.state:
                node = attrs.evolve(node, state=node.state + "; not probed: no server name reaches this block")
            out.append(node)
        else:
            out.append(node_as_served(node, served[target]))
    return out


def discover(connection: Connection, config_path: str) -> tuple[NginxConfig, list[tuple[Node, ServerBlock]]]:
    """Parse and build the node model (the part the benchmark measures)."""
    config = load(connection, config_path)
    with gc_paused():
        return config, build_nodes(config, connection)
