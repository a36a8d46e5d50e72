"""Discovery: one Node per ``<VirtualHost>`` and address:port, with the certificate it serves."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs
from tlsgate.plugin import (
    Node,
    Target,
    certificate_facts,
    node_as_served,
    probe_host_for,
    probe_many,
    read_certificate,
    sni_for,
)
from tlsgate.plugin import claimed_addresses as core_claimed

from .config import load

if TYPE_CHECKING:
    from tlsgate.plugin import CertFacts, Connection, Endpoint

    from .config import ApacheConfig, VHostSection
    from .control import ApacheControl, RunConfig, VHostEntry
    from .lexer import Directive
    from .speculate import ReadAhead

VENDOR = "Apache"


class VHostNode:
    """A node with what install needs to find its configuration again.

    The :class:`Node` is made when first asked for (``fields``: its arguments in order): a
    discovery's handshakes usually decide its state first, and a node is then made once
    (:func:`confirm_by_handshake`), not once as the files say and again as served."""

    __slots__ = ("_node", "entry", "fields", "pairs", "section", "sni", "ssl")

    def __init__(self, fields: tuple[Any, ...], entry: VHostEntry, section: VHostSection | None, ssl: bool,
                 sni: str | None = None, pairs: int = 1) -> None:
        self.fields = fields
        self.entry = entry
        self.section = section
        self.ssl = ssl
        #: The SNI name whose handshake reaches this vhost (None: none of its names does).
        self.sni = sni
        #: How many certificate pairs serve it (its own, else the server level's): 2 for RSA + ECDSA.
        self.pairs = pairs
        self._node: Node | None = None

    @property
    def node(self) -> Node:
        if self._node is None:
            self._node = Node(*self.fields)
        return self._node

    @property
    def inherited(self) -> bool:
        return self.section is not None and not self.section.named("sslcertificatefile")


#: the index of each of :class:`Node`'s fields in :attr:`VHostNode.fields`
_PROTOCOL, _IP, _PORT, _STATE, _CERTIFICATE = 1, 3, 4, 9, 11


def is_ssl(config: ApacheConfig, section: VHostSection | None) -> bool:
    if section is None:
        return False
    own = section.ssl_engine
    return own if own is not None else config.server_ssl_engine


def certificate_directives(config: ApacheConfig, section: VHostSection) -> list[Directive]:
    """The SSLCertificateFile directives in effect for a vhost (its own, else the server's)."""
    return section.named("sslcertificatefile") or config.server_named("sslcertificatefile")


#: the name of a vhost without a ServerName (the default vhost of its address)
DEFAULT_VHOST = "_default_"


def build_nodes(config: ApacheConfig, connection: Connection,
                read_ahead: dict[str, CertFacts] | None = None) -> list[VHostNode]:
    """The node model from httpd's dump and the files (no handshakes).

    Each distinct certificate path is read once (and each distinct certificate parsed once, by
    :func:`read_certificate`), or taken from ``read_ahead`` (certificates read while httpd ran,
    by resolved path); the SNI name of each vhost is chosen as the nodes are built, so every
    node is made once. The paths read are recorded in ``config.certificate_paths``."""
    cache: dict[str, CertFacts] = {}
    ahead = read_ahead or {}
    paths: dict[str, str | None] = {}
    by_addr: dict[tuple[str, int | None], _Claimed] = {}
    out: list[VHostNode] = []
    seen: set[tuple[str, str, int | None, str, int]] = set()
    server_certs = config.server_named("sslcertificatefile")
    server_ssl = config.server_ssl_engine
    vhosts = config.vhosts
    resolve = config.resolve
    for entry in config.run.vhosts:
        ident = (entry.name, entry.ip, entry.port, entry.file, entry.line)
        if ident in seen:
            continue
        seen.add(ident)
        section = vhosts.get((entry.file, entry.line))
        notes: list[str] = []
        facts: CertFacts | None = None
        own_certs: list[Directive] = []
        if section is None:
            notes.append("its <VirtualHost> section could not be read")
            https = False
        else:
            engine = None  # the last SSLEngine (section.ssl_engine), and the vhost's own certificates
            for d in section.directives:
                if d.lname == "sslengine":
                    engine = d
                elif d.lname == "sslcertificatefile":
                    own_certs.append(d)
            https = server_ssl if engine is None else bool(engine.args) and engine.args[0].lower() in ("on", "optional")
        directives: list[Directive] = []
        if https and section is not None:
            directives = own_certs or server_certs
            if not directives:
                notes.append("no SSLCertificateFile")
            else:
                if not own_certs:
                    notes.append("certificate inherited from the server level")
                if len(directives) > 1:
                    notes.append(f"first of {len(directives)} certificate pairs (one per key type)")
                value = directives[0].args[0] if directives[0].args else ""
                path = paths.get(value, "")
                if path == "":
                    path = paths[value] = resolve(connection, value)
                if path is None:
                    notes.append(f"certificate path {value!r} uses an unknown variable")
                else:
                    facts = cache.get(path)
                    if facts is None:
                        facts = ahead.get(path) or read_certificate(connection, path)
                        cache[path] = facts
                    if facts.problem:
                        notes.append(facts.problem)
        # httpd gives an SNI name to the first vhost of the address (in configuration order)
        # that names it in ServerName or ServerAlias; a vhost whose every name an earlier one
        # claims cannot be reached by a handshake, and is marked so rather than checked against
        # the wrong vhost
        claimed = by_addr.get((entry.ip, entry.port))
        if claimed is None:
            claimed = by_addr[(entry.ip, entry.port)] = _Claimed()
        aliases = entry.aliases
        if not aliases and section is not None and section.aliases:
            aliases = tuple(section.aliases)  # a vhost alone on its address: the dump lists no alias
        names = (entry.name, *aliases)  # httpd matches SNI against its own name for the vhost
        sni = None
        for cand in names:
            name = sni_for(cand)
            if name and name not in claimed:
                sni = name
                break
        if sni is None and https and not entry.default and any(sni_for(n) for n in names):
            notes.append("its names are answered by an earlier vhost on this address")
        claimed.add(names)
        fields = (  # Node's fields in order (see VHostNode)
            # without a ServerName httpd prints its fallback (the address or the host name): the
            # vhost is its address's default, and shown so
            entry.name if section is None or section.server_name else DEFAULT_VHOST,
            "https" if https else "http",
            aliases,
            entry.ip,
            entry.port,
            facts.fingerprint if facts else None,
            facts.subject if facts else None,
            facts.not_after if facts else None,
            VENDOR,
            "; ".join(["active", *notes]) if notes else "active",
            f"{entry.file}:{entry.line}",
            facts.der if facts else None,
        )
        out.append(VHostNode(fields, entry, section, https, sni, max(1, len(directives))))
    config.certificate_paths = list(cache)
    return out


class _Claimed:
    """The names the earlier vhosts of one address answer: exact names in a set, wildcard
    patterns (``*.example.org``) in a list, so a lookup costs O(1) plus the few patterns
    (a linear scan of every earlier vhost made discovery quadratic in the vhosts per address)."""

    __slots__ = ("exact", "patterns")

    def __init__(self) -> None:
        self.exact: set[str] = set()
        self.patterns: list[str] = []

    def add(self, names: Iterable[str]) -> None:
        exact, patterns = self.exact, self.patterns
        for n in names:
            low = n.lower()
            (patterns.append(low) if "*" in low or "?" in low else exact.add(low))

    def __contains__(self, name: str) -> bool:
        low = name.lower()
        if low in self.exact:
            return True
        patterns = self.patterns
        return bool(patterns) and any(fnmatch.fnmatchcase(low, p) for p in patterns)


def claimed_addresses(vnodes: Iterable[VHostNode]) -> dict[int, set[str]]:
    """The specific addresses (not ``*``) that vhosts listen on, by port."""
    return core_claimed((vn.fields[_IP], vn.fields[_PORT]) for vn in vnodes)


def handshake_target(vn: VHostNode, endpoint: Endpoint, local: bool, key_kind: str | None = None,
                     claimed: dict[int, set[str]] | None = None) -> Target | None:
    """The TLS handshake that reaches this vhost, or None (no port, no usable name).

    A vhost with several pairs (RSA + ECDSA) shows each only to a client asking for its key
    type: the handshake asks for ``key_kind``, else for the kind of the node's certificate.

    A ``*:port`` vhost is probed where httpd serves it: not on an address an address-specific
    vhost of that port claims (``claimed``, see :func:`tlsgate.plugin.probe_host_for`)."""
    fields = vn.fields
    port = fields[_PORT]
    if fields[_PROTOCOL] != "https" or port is None:
        return None
    ip = "*" if fields[_IP] == "_default_" else fields[_IP]
    if vn.sni is None and not vn.entry.default:
        return None
    if vn.pairs < 2:
        key_kind = None
    elif key_kind is None and fields[_CERTIFICATE]:
        key_kind = certificate_facts(fields[_CERTIFICATE]).key_kind
    host = probe_host_for(ip, port, endpoint.connection.host, local, claimed)
    return None if host is None else Target(host, port, vn.sni, key_kind=key_kind)


def confirm_by_handshake(vnodes: Iterable[VHostNode], endpoint: Endpoint, local: bool) -> list[Node]:
    """Each https node's certificate facts replaced by what a TLS handshake (with SNI) shows.

    An unreachable node keeps what its files say, and says so in its state.
    """
    vnodes = list(vnodes)
    claimed = claimed_addresses(vnodes)
    targets = [handshake_target(vn, endpoint, local, claimed=claimed) for vn in vnodes]
    served = probe_many(t for t in targets if t is not None)
    suffix: str | None = None
    asked = False
    out = []
    for vn, t in zip(vnodes, targets, strict=True):
        if t is None:
            out.append(vn.node)
            continue
        der = served[t]
        if der is None and vn._node is None:  # node_as_served(vn.node, None) without making vn.node first
            if not asked:
                suffix, asked = _unreachable_suffix(), True
            if suffix is not None:
                fields = list(vn.fields)
                fields[_STATE] += suffix
                out.append(Node(*fields))
                continue
        out.append(node_as_served(vn.node, der, pending="graceful restart pending?"))
    return out


def _unreachable_suffix() -> str | None:
    """What :func:`node_as_served` adds to the state of a node that did not answer, when that
    is all it changes (else None: it is asked for each node)."""
    sample = Node("n", "https", ("a",), "127.0.0.1", 1, "f", "s", None, VENDOR, "active", "l:1", b"c")
    told = node_as_served(sample, None)
    state = told.state
    if not state.startswith(sample.state) or told != attrs.evolve(sample, state=state):
        return None
    return state[len(sample.state):]


def discover(connection: Connection, control: ApacheControl, run: RunConfig | None = None,
             read_ahead: ReadAhead | None = None) -> tuple[ApacheConfig, list[VHostNode]]:
    """Ask httpd (unless ``run``: what it said), parse its files, build the node model
    (``read_ahead``: files and certificates read while httpd ran, see speculate.py)."""
    config = load(connection, run if run is not None else control.dump(),
                  read_ahead.files if read_ahead else None)
    return config, build_nodes(config, connection, read_ahead.certificates if read_ahead else None)
