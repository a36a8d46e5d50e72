"""TLS probes: the verification primitive of every install (connect, handshake with SNI, read the
served certificate, compare fingerprints). Build the SSL context once per process: loading the
system store costs ~20 ms, many times a probe; probes do not verify (we compare fingerprints)."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable, Sequence
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


@attrs.frozen
class Target:
    host: str
    port: int
    sni: str | None = None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}" + (f" (SNI {self.sni})" if self.sni else "")


def probe_host(node_ip: str | None, endpoint_host: str | None, local: bool) -> str:
    """The address to probe a node at: a local node's own listen address when it is specific,
    else the endpoint's host (loopback for local endpoints)."""
    if local:
        if node_ip not in WILDCARDS:
            return str(node_ip).strip("[]")
        return "127.0.0.1"
    return endpoint_host or "127.0.0.1"


def sni_for(name: str | None) -> str | None:
    """The SNI to send for a node name (none for IPs, wildcards and catch-all names)."""
    if not name or name in ("_", "_default_", "localhost") or "*" in name or name.startswith("~"):
        return None if name != "localhost" else name
    # an IP address ends in a digit (IPv4) or holds a colon (IPv6); parsing every name with
    # ipaddress (an exception per host name) was most of the node model's time at 10,000 blocks
    if ":" not in name and not name[-1:].isdigit():
        return name
    try:
        ipaddress.ip_address(name.strip("[]"))
        return None
    except ValueError:
        return name


def _is_host_name(name: str) -> bool:
    """Whether ``name`` can be a DNS host name at all (labels of letters, digits, ``-``, ``_``,
    ``*``; IDN letters too): a BIG-IP virtual server path (``/Common/vs_www``) or an IIS site
    name (``Default Web Site``) cannot."""
    return bool(name) and all(ch.isalnum() or ch in "-_.*" for ch in name) and ".." not in name


def node_sni(name: str | None, aliases: Sequence[str] = ()) -> str | None:
    """The SNI to send to reach a node: :func:`sni_for` of its name when the name is a host name
    (or a catch-all), else of its first alias that is one (F5 names a node by the virtual
    server's path, with the client-ssl profile's ``serverName`` among its aliases)."""
    if not name or _is_host_name(name):
        return sni_for(name)
    try:
        ipaddress.ip_address(name.strip("[]"))
        return None  # an address, as sni_for says
    except ValueError:
        pass
    for alias in aliases:
        if alias and _is_host_name(alias):
            return sni_for(alias)
    return None


#: connect timeout of probes (a TCP connect on a live host answers in milliseconds; a dead or
#: filtered one should not hold a discovery of thousands of nodes)
CONNECT_TIMEOUT = 1.5


def served_certificate(host: str, port: int, sni: str | None = None, *, timeout: float = 5.0,
                       connect_timeout: float | None = None) -> bytes:
    """The DER certificate served at host:port for ``sni``. Raises OSError when unreachable."""
    with socket.create_connection((host, port), timeout=connect_timeout or timeout) as sock:
        sock.settimeout(timeout)
        with _context().wrap_socket(sock, server_hostname=sni) as tls:
            der = tls.getpeercert(binary_form=True)
    if not der:
        raise OSError("no certificate was served")
    return der


def try_served_fingerprint(host: str, port: int, sni: str | None = None, *, timeout: float = 3.0) -> str | None:
    """SHA-256 hex of what is served, or None when the port does not answer TLS."""
    try:
        return hashlib.sha256(served_certificate(host, port, sni, timeout=timeout)).hexdigest()
    except (OSError, ssl.SSLError, ValueError):
        return None


def probe_many(targets: Iterable[Target], *, timeout: float = 3.0, threads: int = 16,
               connect_timeout: float = CONNECT_TIMEOUT) -> dict[Target, bytes | None]:
    """The DER certificate each target serves (None where nothing answers TLS).

    At scale: each distinct (address, port, SNI) is handshaked once; one handshake per
    (address, port) goes first, and the other SNI names of a port that refused the connection
    (or did not accept it within ``connect_timeout``) are not tried; the rest run in a bounded
    pool of ``threads``."""
    unique = sorted(set(targets), key=str)
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
            return served_certificate(target.host, target.port, target.sni, timeout=timeout,
                                      connect_timeout=connect_timeout)
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


def node_as_served(node: Node, der: bytes | None, *, pending: str = "reload pending?") -> Node:
    """``node`` (as its files describe it) corrected by what a handshake to it showed: the same
    node when it serves that certificate; the served certificate's facts and a note when it serves
    another (``pending``: why it might); a note when it did not answer (``der`` None)."""
    if der is None:
        return attrs.evolve(node, state=node.state + "; not reachable, certificate read from its file")
    from .certs import certificate_facts

    facts = certificate_facts(der)
    if facts.fingerprint == node.fingerprint:
        return node
    note = "certificate seen by handshake" if node.fingerprint is None else (
        f"serves a certificate other than its files ({pending})"
    )
    return attrs.evolve(node, fingerprint=facts.fingerprint, certificate=der, subject=facts.subject,
                        not_after=facts.not_after, state=f"{node.state}; {note}")


def expect_served(targets: Sequence[Target], fingerprint: str, *, deadline: float = 20.0) -> None:
    """Wait until every target serves the certificate with ``fingerprint``; raise
    OperationError naming the targets that still do not (servers reload asynchronously)."""
    pending = list(targets)
    last: dict[Target, str] = {}
    end = time.monotonic() + deadline
    delay = 0.05
    while pending:
        still = []
        for target in pending:
            try:
                got = hashlib.sha256(served_certificate(target.host, target.port, target.sni)).hexdigest()
            except (OSError, ssl.SSLError) as exc:
                last[target] = f"no TLS answer ({exc.__class__.__name__}: {exc})"
                still.append(target)
                continue
            if got != fingerprint:
                last[target] = f"serves {got[:16]}..., expected {fingerprint[:16]}..."
                still.append(target)
        pending = still
        if not pending:
            return
        if time.monotonic() >= end:
            detail = "; ".join(f"{t}: {last[t]}" for t in pending)
            raise OperationError(f"verification by TLS handshake failed: {detail}")
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
