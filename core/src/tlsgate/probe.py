"""TLS probes: the verification primitive of every install (connect, handshake with SNI, read the
served certificate, compare fingerprints). Build the SSL context once per process: loading the
system store costs ~20 ms, many times a probe; probes do not verify (we compare fingerprints)."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import attrs

from .errors import OperationError
from .models import Node

WILDCARDS = {"*", "0.0.0.0", "::", "[::]", "", None}  # noqa: S104 - listen wildcards, not a bind


@lru_cache(maxsize=1)
def _context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # we compare the served certificate's fingerprint instead
    return ctx


@lru_cache(maxsize=4)
def _kind_context(key_kind: str) -> ssl.SSLContext:
    """A client that can only take a certificate of ``key_kind``: TLS 1.2 with the ciphers that
    authenticate with that key (a TLS 1.3 client cannot choose by signature algorithm from
    Python's ssl module). A server holding one pair per algorithm (nginx, httpd and Tomcat allow
    an RSA and an ECDSA pair in one block) shows each pair only to a client asking for it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_KIND_CIPHERS[key_kind])
    return ctx


#: OpenSSL cipher strings per key kind (:func:`tlsgate.certs.key_kind`)
_KIND_CIPHERS = {"rsa": "aRSA", "ec": "aECDSA", "dsa": "aDSS"}
#: the key types a server may hold a pair of side by side, most common first
KEY_KINDS = ("rsa", "ec")


@attrs.frozen
class Target:
    """Where a handshake goes. ``key_kind`` (``"rsa"``, ``"ec"``): ask for the certificate of that
    key type, for servers that hold several pairs; ``proxy_protocol``: the listener expects a
    PROXY protocol header before the handshake (nginx ``listen ... proxy_protocol``, HAProxy
    ``accept-proxy``)."""

    host: str
    port: int
    sni: str | None = None
    key_kind: str | None = None
    proxy_protocol: bool = False

    def __str__(self) -> str:
        extra = [f"SNI {self.sni}"] if self.sni else []
        if self.key_kind:
            extra.append(f"{self.key_kind.upper()} certificate")
        if self.proxy_protocol:
            extra.append("PROXY protocol")
        return f"{self.host}:{self.port}" + (f" ({', '.join(extra)})" if extra else "")


def probe_host(node_ip: str | None, endpoint_host: str | None, local: bool) -> str:
    """The address to probe a node at: a local node's own listen address when it is specific,
    else the endpoint's host (loopback for local endpoints)."""
    if local:
        if node_ip not in WILDCARDS:
            return str(node_ip).strip("[]")
        return "127.0.0.1"
    return endpoint_host or "127.0.0.1"


#: Loopback addresses a local wildcard node (``*:443``, ``listen 443``) is probed at, in turn:
#: the first that no address-specific node of that port claims. Linux routes all of 127/8 to
#: ``lo``, and a listener on every address (IPv4 or dual-stack) answers on 127.0.0.2 as on
#: 127.0.0.1; ``::1`` only where the server listens on IPv6.
WILDCARD_PROBES = ("127.0.0.1", "127.0.0.2", "::1")

#: A node address that names no one address: the listen wildcards and httpd's ``_default_``.
_ANY_ADDRESS = frozenset(WILDCARDS | {"_default_"})


def claimed_addresses(pairs: Iterable[tuple[str | None, int | None]]) -> dict[int, set[str]]:
    """The specific addresses (not wildcards) that nodes listen on, by port, from ``(ip, port)``."""
    out: dict[int, set[str]] = {}
    for ip, port in pairs:
        if port is not None and ip not in _ANY_ADDRESS:
            out.setdefault(port, set()).add(str(ip).strip("[]"))
    return out


def probe_host_for(node_ip: str | None, port: int | None, endpoint_host: str | None, local: bool,
                   claimed: dict[int, set[str]] | None) -> str | None:
    """:func:`probe_host`, for a server that prefers the most specific listen address: a node on
    a wildcard address is not what answers on an address that an address-specific node of the
    same port names (httpd: "An In-Depth Discussion of Virtual Host Matching" — the best IP match
    first, ``*`` only where none; nginx: "How nginx processes a request" — the address and port
    are matched against the listen directives before the server names). ``claimed``
    (:func:`claimed_addresses`): such addresses. A local wildcard node is probed at a loopback
    address none of them claims; a remote one whose host is claimed is not probed (None),
    rather than compared with another node's certificate."""
    host = probe_host(node_ip, endpoint_host, local)
    taken = claimed.get(port) if claimed and port is not None and node_ip in _ANY_ADDRESS else None
    if not taken or host.strip("[]") not in taken:
        return host
    free = [a for a in WILDCARD_PROBES if a not in taken] if local else []
    return free[0] if free else None


def sni_for(name: str | None) -> str | None:
    """The SNI to send for a node name (none for IPs, wildcards and catch-all names; nginx's
    ``.example.org``, example.org and every name under it, is reached as example.org)."""
    if name and name.startswith(".") and len(name) > 1:
        name = name[1:]
    if not name or name in ("_", "_default_", "localhost") or "*" in name or name.startswith("~"):
        return None if name != "localhost" else name
    if not _is_host_name(name):  # a regex, a path, a site name, bytes of another encoding
        return None
    # an IP address ends in a digit (IPv4) or holds a colon (IPv6); parsing every name with
    # ipaddress (an exception per host name) was most of the node model's time at 10,000 blocks
    if ":" not in name and not name[-1:].isdigit():
        return name
    try:
        ipaddress.ip_address(name.strip("[]"))
        return None
    except ValueError:
        return name


#: What a driver writes in a node's state when its listener expects a PROXY protocol header
#: (``tls verify`` sends one there too).
PROXY_NOTE = "PROXY protocol"


def _is_host_name(name: str) -> bool:
    """Whether ``name`` can be a DNS host name at all (labels of letters, digits, ``-``, ``_``,
    ``*``; IDN letters too): a BIG-IP virtual server path (``/Common/vs_www``) or an IIS site
    name (``Default Web Site``) cannot."""
    return bool(name) and _HOST_CHARACTERS.fullmatch(name) is not None and ".." not in name


#: \w is str.isalnum() or "_" (re's documentation): letters and digits of any script
_HOST_CHARACTERS = re.compile(r"[\w.*-]+")


def node_sni(name: str | None, aliases: Sequence[str] = ()) -> str | None:
    """The SNI that reaches a node by its names: the first of its name and aliases that is a
    host name (:func:`sni_for`; an F5 node is named by its virtual server's path, with the
    client-ssl profile's ``serverName`` among its aliases; a catch-all or an address is passed
    over for the next name); a leading wildcard (``*.example.org``) gets a label of its own."""
    for one in (name or "", *aliases):
        if one.startswith("*.") and len(one) > 2 and "*" not in one[2:] and _is_host_name(one):
            return "tlsgate-probe" + one[1:]
        if sni := sni_for(one):  # passes over what cannot be a host name
            return sni
    return None


def verify_sni(node: Node) -> str | None:
    """:func:`node_sni` of a node's name and aliases."""
    return node_sni(node.name, node.alias)


#: connect timeout of probes (a TCP connect on a live host answers in milliseconds; a dead or
#: filtered one should not hold a discovery of thousands of nodes)
CONNECT_TIMEOUT = 1.5


def served_certificate(host: str, port: int, sni: str | None = None, *, timeout: float = 5.0,
                       connect_timeout: float | None = None, key_kind: str | None = None,
                       proxy_protocol: bool = False) -> bytes:
    """The DER certificate served at host:port for ``sni``. Raises OSError when unreachable.

    ``key_kind``: the certificate of that key type (see :class:`Target`); a server that cannot
    answer such a client (TLS 1.3 only) is asked again as usual. ``proxy_protocol``: send a
    PROXY protocol v1 header (this connection's own addresses) first."""
    context = _kind_context(key_kind) if key_kind in _KIND_CIPHERS else None
    try:
        return _handshake(host, port, sni, context or _context(), timeout, connect_timeout, proxy_protocol)
    except ssl.SSLError:
        if context is None:
            raise
    return _handshake(host, port, sni, _context(), timeout, connect_timeout, proxy_protocol)


def _handshake(host: str, port: int, sni: str | None, context: ssl.SSLContext, timeout: float,
               connect_timeout: float | None, proxy_protocol: bool) -> bytes:
    with socket.create_connection((host, port), timeout=connect_timeout or timeout) as sock:
        sock.settimeout(timeout)
        if proxy_protocol:
            sock.sendall(_proxy_header(sock))
        with context.wrap_socket(sock, server_hostname=sni) as tls:
            der = tls.getpeercert(binary_form=True)
    if not der:
        raise OSError("no certificate was served")
    return der


def _proxy_header(sock: socket.socket) -> bytes:
    """The PROXY protocol v1 line for ``sock`` (haproxy.org/download/2.9/doc/proxy-protocol.txt),
    naming the connection's real addresses: ``PROXY TCP4 src dst sport dport\r\n``."""
    src, dst = sock.getsockname(), sock.getpeername()
    family = "TCP6" if sock.family == socket.AF_INET6 else "TCP4"
    return f"PROXY {family} {src[0]} {dst[0]} {src[1]} {dst[1]}\r\n".encode("ascii")


def served_by(target: Target, *, timeout: float = 5.0, connect_timeout: float | None = None) -> bytes:
    """:func:`served_certificate` for a :class:`Target` (its SNI, key kind and PROXY header)."""
    return served_certificate(target.host, target.port, target.sni, timeout=timeout,
                              connect_timeout=connect_timeout, key_kind=target.key_kind,
                              proxy_protocol=target.proxy_protocol)


def try_served_fingerprint(host: str, port: int, sni: str | None = None, *, timeout: float = 3.0,
                           key_kind: str | None = None, proxy_protocol: bool = False) -> str | None:
    """SHA-256 hex of what is served, or None when the port does not answer TLS."""
    try:
        return hashlib.sha256(served_certificate(host, port, sni, timeout=timeout, key_kind=key_kind,
                                                 proxy_protocol=proxy_protocol)).hexdigest()
    except (OSError, ssl.SSLError, ValueError):
        return None


def probe_many(targets: Iterable[Target], *, timeout: float = 3.0, threads: int = 16,
               connect_timeout: float = CONNECT_TIMEOUT) -> dict[Target, bytes | None]:
    """The DER certificate each target serves (None where nothing answers TLS).

    At scale: each distinct (address, port, SNI) is handshaked once; one handshake per
    (address, port) goes first, and the other SNI names of a port that refused the connection
    (or did not accept it within ``connect_timeout``) are not tried; the rest run in a bounded
    pool of ``threads``."""
    unique = list(dict.fromkeys(targets))  # in the order given (sorting 10,000 by their text cost 10 ms)
    if not unique:
        return {}
    by_port: dict[tuple[str, int], list[Target]] = {}
    for t in unique:
        by_port.setdefault((t.host, t.port), []).append(t)
    dead: set[tuple[str, int]] = set()

    def one(target: Target) -> bytes | None:
        if (target.host, target.port) in dead:
            return None
        try:
            return served_by(target, timeout=timeout, connect_timeout=connect_timeout)
        except (ConnectionRefusedError, TimeoutError, socket.gaierror):
            dead.add((target.host, target.port))
            return None
        except (OSError, ssl.SSLError, ValueError):
            return None

    out: dict[Target, bytes | None] = {}
    firsts = [group[0] for group in by_port.values()]
    rest = [t for group in by_port.values() for t in group[1:]]
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(unique)))) as pool:
        out.update(zip(firsts, pool.map(one, firsts), strict=True))
        live = [t for t in rest if (t.host, t.port) not in dead]
        out.update(zip(live, pool.map(one, live), strict=True))
    for t in rest:
        out.setdefault(t, None)
    return out


def served_fingerprints(targets: Iterable[Target], *, timeout: float = 3.0, threads: int = 16) -> dict[Target, str | None]:
    """:func:`probe_many` as SHA-256 fingerprints (None where nothing answers TLS)."""
    return {t: (hashlib.sha256(der).hexdigest() if der else None)
            for t, der in probe_many(targets, timeout=timeout, threads=threads).items()}


def _with_state(node: Node, state: str) -> Node:
    """``attrs.evolve(node, state=state)`` without evolve's generic work per call (a discovery
    of 10,000 nodes on a stopped server makes one per node)."""
    return Node(node.name, node.protocol, node.alias, node.ip, node.port, node.fingerprint, node.subject,
                node.not_after, node.vendor, state, node.locator, node.certificate)


def node_as_served(node: Node, der: bytes | None, *, pending: str = "reload pending?") -> Node:
    """``node`` (as its files describe it) corrected by what a handshake to it showed: the same
    node when it serves that certificate; the served certificate's facts and a note when it serves
    another (``pending``: why it might); a note when it did not answer (``der`` None)."""
    if der is None:
        return _with_state(node, node.state + "; not reachable, certificate read from its file")
    if node.fingerprint is not None and hashlib.sha256(der).hexdigest() == node.fingerprint:
        return node  # what its files say (the certificate is not parsed again per node)
    from .certs import certificate_facts

    facts = certificate_facts(der)
    if facts.fingerprint == node.fingerprint:
        return node
    note = "certificate seen by handshake" if node.fingerprint is None else (
        f"serves a certificate other than its files ({pending})"
    )
    return attrs.evolve(node, fingerprint=facts.fingerprint, certificate=der, subject=facts.subject,
                        not_after=facts.not_after, state=f"{node.state}; {note}")


def expect_served(targets: Sequence[Target], fingerprint: str, *, deadline: float = 20.0,
                  threads: int = 16) -> None:
    """Wait until every target serves the certificate with ``fingerprint``; raise
    OperationError naming the targets that still do not (servers reload asynchronously)."""
    expect_fingerprints(dict.fromkeys(targets, fingerprint), deadline=deadline, threads=threads)


def expect_fingerprints(expected: Mapping[Target, str], *, deadline: float = 20.0, threads: int = 16,
                        check: Callable[[], None] | None = None) -> None:
    """Wait until each target serves its expected fingerprint; raise OperationError naming those
    that still do not after ``deadline``.

    Each round handshakes only the targets not yet seen serving theirs, in a pool of at most
    ``threads`` (an install into thousands of server blocks verified them one by one, ~2 ms
    each, in every round). ``check``: called before each round, e.g. to raise when the server
    died (then no handshake is waited for)."""
    pending = list(dict.fromkeys(expected))
    last: dict[Target, str] = {}
    end = time.monotonic() + deadline
    delay = 0.05

    def one(target: Target) -> str | None:
        try:
            got = hashlib.sha256(served_by(target)).hexdigest()
        except (OSError, ssl.SSLError, ValueError) as exc:  # ValueError: an SNI ssl cannot send
            last[target] = f"no TLS answer ({exc.__class__.__name__}: {exc})"
            return None
        if got != expected[target]:
            last[target] = f"serves {got[:16]}..., expected {expected[target][:16]}..."
            return None
        return got

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(pending) or 1))) as pool:
        while pending:
            if check is not None:
                check()
            answers = pool.map(one, pending) if len(pending) > 1 else map(one, pending)
            pending = [t for t, got in zip(pending, answers, strict=True) if got is None]
            if not pending:
                return
            if time.monotonic() >= end:
                shown = "; ".join(f"{t}: {last[t]}" for t in pending[:20])
                more = f"; and {len(pending) - 20} more" if len(pending) > 20 else ""
                raise OperationError(f"verification by TLS handshake failed: {shown}{more}")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def expect_http_answer(host: str, port: int, host_header: str, path: str, body: str, *,
                       deadline: float = 20.0) -> None:
    """Wait until ``GET http://host:port/path`` (Host: ``host_header``) answers 200 with exactly
    ``body`` (an ACME http-01 answer after a reload); raise OperationError after ``deadline``."""
    import http.client

    end = time.monotonic() + deadline
    last = "no answer"
    delay = 0.05
    while True:
        conn = http.client.HTTPConnection(host, port, timeout=5)
        try:
            conn.request("GET", path, headers={"Host": host_header, "User-Agent": "tlsgate"})
            resp = conn.getresponse()
            got = resp.read(4096).decode(errors="replace")
            if resp.status == 200 and got.strip() == body:
                return
            last = f"HTTP {resp.status}"
        except (OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        if time.monotonic() > end:
            raise OperationError(f"http://{host_header}:{port}{path} (at {host}) does not serve the answer "
                                 f"after {deadline:.0f} s ({last})")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
