"""Nodes of an HAProxy endpoint: one per bind address and SNI name, with the certificate read from
its file and confirmed by a TLS handshake where the address answers."""

from __future__ import annotations

import attrs
from tlsgate.plugin import (
    PROXY_NOTE,
    Connection,
    Endpoint,
    Node,
    OperationError,
    Target,
    common_name,
    dns_names,
    fingerprint,
    key_kind,
    load_any_certificate,
    load_pem_certificates,
    not_after,
    probe_many,
    subject_text,
    to_der,
)

from .config import (
    BUNDLE_SUFFIXES,
    EXTRA_SUFFIXES,
    Bind,
    CertEntry,
    Config,
    ConfigError,
    bundle_kind,
    parse,
    parse_crt_list,
    resolve,
    sni_names,
)

VENDOR = "HAProxy"


@attrs.frozen
class Slot:
    """A node and what serves it: the bind, and the certificate file HAProxy loads for it."""

    node: Node
    bind: Bind
    entry: CertEntry | None  # None for plain (non-ssl) binds


def load_config(connection: Connection, path: str) -> Config:
    try:
        return parse(path, connection.read_text(path))
    except ConfigError as exc:
        raise OperationError(str(exc)) from None


def cert_entries(connection: Connection, config: Config, bind: Bind) -> list[CertEntry]:
    """Every certificate a bind loads, in HAProxy's order (crt arguments, then crt-lists)."""
    p = connection.path
    config_dir = p.dirname(config.path)
    out: list[CertEntry] = []
    for crt in bind.crt:
        path = resolve(crt, config.crt_base, config_dir, p.join)
        st = connection.stat(path)
        if st is not None and st.is_dir:
            for name in connection.listdir(path):
                if name.startswith(".") or name.endswith(EXTRA_SUFFIXES):
                    continue
                out.append(CertEntry(p.join(path, name), (), f"crt {crt} (directory)", bundle_kind(name)))
        else:
            out += _file_or_bundle(connection, path, st is not None, (), f"crt {crt}")
    for listed in bind.crt_lists:
        list_path = resolve(listed, config.crt_base, config_dir, p.join)
        try:
            entries = parse_crt_list(list_path, connection.read_text(list_path))
        except ConfigError as exc:
            raise OperationError(str(exc)) from None
        for line, cert, filters in entries:
            path = resolve(cert, config.crt_base, config_dir, p.join)
            out += _file_or_bundle(connection, path, connection.stat(path) is not None, filters,
                                   f"crt-list {listed}:{line}")
    return out


def _file_or_bundle(connection: Connection, path: str, exists: bool, filters: tuple[str, ...],
                    origin: str) -> list[CertEntry]:
    """The file itself; when there is none, the members of its multi-certificate bundle
    (``path.rsa``, ``path.ecdsa``, ``path.dsa``) that exist, as HAProxy loads them; when there
    are none either, the missing file (discovery says it is unreadable)."""
    if not exists:
        members = [CertEntry(path + suffix, filters, f"{origin} (bundle)", kind)
                   for suffix, kind in BUNDLE_SUFFIXES.items() if connection.stat(path + suffix) is not None]
        if members:
            return members
    return [CertEntry(path, filters, origin)]


def probe_host(host: str, endpoint: Endpoint) -> str:
    if endpoint.connection.type != "local":
        return endpoint.connection.host or "127.0.0.1"
    return host if host not in ("", "0.0.0.0", "::") else "127.0.0.1"  # noqa: S104 - a wildcard bind


def sni_of(name: str) -> str | None:
    return None if "*" in name or not name or name[0].isdigit() or ":" in name else name


def slots(endpoint: Endpoint, connection: Connection, *, probe: bool = True) -> tuple[Config, list[Slot]]:
    config = load_config(connection, endpoint.options.haproxy_config_path)
    out: list[Slot] = []
    asks: list[tuple[int, str, bool]] = []  # (slot, bind address, PROXY protocol): handshakes to make
    for bind in config.binds:
        locator_base = f"{bind.section}|bind {bind.index}"
        if not bind.ssl:
            for a in bind.addresses:
                node = Node(name=bind.section.split(" ", 1)[-1], protocol="http", ip=a.host or "*", port=a.port,
                            vendor=VENDOR, locator=locator_base, state="active")
                out.append(Slot(node, bind, None))
            continue
        for entry in cert_entries(connection, config, bind):
            leaf, note = _read_leaf(connection, entry.path)
            if entry.bundle_kind is not None and leaf is not None:
                # the key the member holds decides (a site.pem.rsa holding an EC pair is served as EC)
                entry = attrs.evolve(entry, bundle_kind=key_kind(leaf))
            names = sni_names(entry.filters) or (
                (dns_names(leaf) or [common_name(leaf) or ""]) if leaf is not None else [""])
            for a in bind.addresses:
                for name in names:
                    state = "active" if note is None else note
                    if entry.bundle_kind is not None:
                        member = connection.path.basename(entry.path)
                        state += f"; {entry.bundle_kind.upper()} certificate of a bundle ({member})"
                    node = Node(
                        name=name or "(default)", protocol="https", ip=a.host or "*", port=a.port, vendor=VENDOR,
                        locator=f"{locator_base}|{entry.path}",
                        state=f"{state}; {PROXY_NOTE}" if bind.accept_proxy else state,
                        **(_facts(leaf) if leaf is not None else {}),
                    )
                    out.append(Slot(node, bind, entry))
                    if probe and leaf is not None:
                        asks.append((len(out) - 1, a.host, bind.accept_proxy))
    if asks:
        out = _confirm_all(out, asks, endpoint)
    return config, out


def _confirm_all(out: list[Slot], asks: list[tuple[int, str, bool]], endpoint: Endpoint) -> list[Slot]:
    """Every slot that asked confirmed by one handshake per (address, port, name), in probe_many's
    bounded pool; a port that refuses or does not answer in time is tried once, not once per
    name (a crt-list of thousands of names on a silent port waited 3 s for each)."""
    targets: dict[int, Target] = {}
    for i, host, proxied in asks:
        node = out[i].node
        sni = sni_of(node.name)
        if sni is None:
            out[i] = attrs.evolve(out[i], node=attrs.evolve(node, state=node.state + "; not probed: no server name to send"))
            continue
        entry = out[i].entry
        # a bundle member is served to a client that asks for its key type
        targets[i] = Target(probe_host(host, endpoint), int(node.port or 0), sni,
                            key_kind=entry.bundle_kind if entry is not None else None, proxy_protocol=proxied)
    served = probe_many(targets.values(), timeout=3.0)
    for i, target in targets.items():
        out[i] = attrs.evolve(out[i], node=_as_served(out[i].node, served.get(target)))
    return out


def _read_leaf(connection: Connection, path: str):  # type: ignore[no-untyped-def]
    try:
        found = load_pem_certificates(connection.read_file(path))
    except OperationError as exc:
        return None, f"unreadable: {exc}"
    except ValueError:
        return None, "unreadable: not a PEM certificate"
    if not found:
        return None, "unreadable: no certificate in the file"
    return found[0], None


def _facts(cert) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {"fingerprint": fingerprint(cert), "subject": subject_text(cert), "not_after": not_after(cert),
            "certificate": to_der(cert)}


def _as_served(node: Node, der: bytes | None) -> Node:
    """What the address serves for the node's name, when it answers: HAProxy may not have been
    reloaded since the file changed, and the handshake is what clients get (after a PROXY
    protocol header on an ``accept-proxy`` bind)."""
    if der is None:
        return attrs.evolve(node, state=node.state + "; not reachable, certificate read from its file")
    served = load_any_certificate(der)
    if fingerprint(served) == node.fingerprint:
        return node
    return attrs.evolve(node, state=node.state + "; serves another certificate than its file (not reloaded?)",
                        **_facts(served))


def discover(endpoint: Endpoint, connection: Connection) -> list[Node]:
    return [s.node for s in slots(endpoint, connection)[1]]
