"""The helpers plugins share through tlsgate.plugin: reading a certificate file through a
connection, key kinds, span edits, and probing several nodes at once (against real TLS
listeners on 127.0.0.1)."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlsgate.plugin import (
    Node,
    Target,
    apply_edits,
    fingerprint,
    key_kind,
    node_as_served,
    probe_many,
    read_certificate,
    served_fingerprints,
    to_der,
)
from tlsgate.transports.local import LocalConnection
from tlsgate_testing.certs import Issued, TestCA


def test_read_certificate_reads_the_leaf_and_says_why_it_cannot(tmp_path: Path, test_ca: TestCA) -> None:
    issued = test_ca.issue("www.example.test", key_type="rsa")
    good = tmp_path / "full.pem"
    good.write_bytes(issued.cert_pem + issued.chain_pem)
    (tmp_path / "junk.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    (tmp_path / "key.pem").write_bytes(issued.key_pem)
    with LocalConnection() as conn:
        facts = read_certificate(conn, str(good))
        assert facts.fingerprint == fingerprint(issued.cert) and facts.der == to_der(issued.cert)
        assert facts.key_kind == "rsa" and "www.example.test" in (facts.subject or "") and facts.problem is None
        assert facts.not_after == issued.cert.not_valid_after_utc
        assert "not a valid certificate" in (read_certificate(conn, str(tmp_path / "junk.pem")).problem or "")
        assert "no PEM certificate" in (read_certificate(conn, str(tmp_path / "key.pem")).problem or "")
        missing = read_certificate(conn, str(tmp_path / "absent.pem"))
        assert missing.der is None and "cannot read" in (missing.problem or "")


_PEM_PIECES = st.sampled_from([b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----", b"\n", b" \t\r\n",
                                b"\x0b\x0c", b"MIIB", b"-", b"-----BEGIN PRIVATE KEY-----", b"AAAA\nBBBB", b""])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PEM_PIECES, max_size=10).map(b"".join))
def test_the_first_pem_body_is_what_the_pem_expression_captures(data: bytes) -> None:
    """read_certificate finds the first certificate's body with two find calls (the regular
    expression cost 25 µs a file): the same bytes, or None, in every arrangement."""
    from tlsgate.certs import _PEM_CERT, _first_pem_body

    m = _PEM_CERT.search(data)
    assert _first_pem_body(data) == (m.group(1) if m else None)


def test_key_kind_of_keys_and_certificates(test_ca: TestCA) -> None:
    rsa, ec = test_ca.issue("a.test", key_type="rsa"), test_ca.issue("a.test", key_type="ec")
    assert [key_kind(x) for x in (rsa.key, rsa.cert, rsa.cert.public_key())] == ["rsa"] * 3
    assert [key_kind(x) for x in (ec.key, ec.cert)] == ["ec", "ec"]
    assert key_kind("not a key") == "other"


_edits = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 6), st.binary(max_size=5)), max_size=6)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=0, max_size=40), raw=_edits)
def test_apply_edits_equals_splicing_from_the_end(data: bytes, raw: list[tuple[int, int, bytes]]) -> None:
    spans: list[tuple[int, int, bytes]] = []
    for start, length, text in raw:
        start = min(start, len(data))
        end = min(start + length, len(data))
        if all(end <= s or start >= e for s, e, _ in spans) and all(start != s for s, _, _ in spans):
            spans.append((start, end, text))
    expected = data
    for start, end, text in sorted(spans, reverse=True):
        expected = expected[:start] + text + expected[end:]
    assert apply_edits(data, spans) == expected
    if len(spans) >= 1 and spans[0][1] > spans[0][0]:
        s, e, _ = spans[0]
        with pytest.raises(ValueError, match="overlapping"):
            apply_edits(data, [*spans, (s, e, b"again")])


def _tls_listener(issued: Issued, tmp_path: Path, name: str) -> Iterator[int]:
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert.write_bytes(issued.cert_pem + issued.chain_pem)
    key.write_bytes(issued.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    sock = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = sock.accept()
            except TimeoutError:
                continue
            try:
                with ctx.wrap_socket(client, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        sock.close()


@pytest.fixture
def two_listeners(tmp_path: Path, test_ca: TestCA) -> Iterator[tuple[tuple[int, Issued], tuple[int, Issued]]]:
    a, b = test_ca.issue("a.test"), test_ca.issue("b.test")
    gen_a, gen_b = _tls_listener(a, tmp_path, "a"), _tls_listener(b, tmp_path, "b")
    port_a, port_b = next(gen_a), next(gen_b)
    yield (port_a, a), (port_b, b)
    for gen in (gen_a, gen_b):
        next(gen, None)


def test_probe_many_reads_each_listener_once_and_none_for_a_closed_port(two_listeners) -> None:  # type: ignore[no-untyped-def]
    (port_a, a), (port_b, b) = two_listeners
    closed = socket.create_server(("127.0.0.1", 0))
    dead = closed.getsockname()[1]
    closed.close()
    ta, tb, tdead = Target("127.0.0.1", port_a, "a.test"), Target("127.0.0.1", port_b), Target("127.0.0.1", dead)
    served = probe_many([ta, tb, ta, tdead], timeout=2.0)
    assert set(served) == {ta, tb, tdead} and served[tdead] is None
    assert fingerprint(served[ta] or b"") == fingerprint(a.cert) and fingerprint(served[tb] or b"") == fingerprint(b.cert)
    assert served_fingerprints([ta, tdead]) == {ta: fingerprint(a.cert), tdead: None}
    assert probe_many([]) == {}


def test_expect_fingerprints_waits_for_what_is_pending_and_names_at_most_20(two_listeners) -> None:  # type: ignore[no-untyped-def]
    from tlsgate.plugin import OperationError, expect_fingerprints, expect_served

    (port_a, a), (port_b, b) = two_listeners
    ta, tb = Target("127.0.0.1", port_a, "a.test"), Target("127.0.0.1", port_b, "b.test")
    expect_fingerprints({ta: fingerprint(a.cert), tb: fingerprint(b.cert)}, deadline=5)
    # 30 names on a listener serving another certificate: one line naming 20 of them and the count
    wrong = [Target("127.0.0.1", port_a, f"n{i}.test") for i in range(30)]
    with pytest.raises(OperationError) as excinfo:
        expect_served(wrong, fingerprint(b.cert), deadline=0.3)
    message = str(excinfo.value)
    assert message.startswith("verification by TLS handshake failed: ") and "\n" not in message
    assert sum(f"SNI n{i}.test)" in message for i in range(30)) == 20
    assert message.endswith("; and 10 more") and f"expected {fingerprint(b.cert)[:16]}..." in message


def test_node_as_served_keeps_agrees_corrects_and_notes(test_ca: TestCA) -> None:
    a, b = test_ca.issue("a.test"), test_ca.issue("b.test")
    der_a, der_b = to_der(a.cert), to_der(b.cert)
    node = Node(name="a.test", port=443, fingerprint=fingerprint(der_a), state="active")
    assert node_as_served(node, der_a) is node
    moved = node_as_served(node, der_b, pending="graceful restart pending?")
    assert moved.fingerprint == fingerprint(der_b) and moved.certificate == der_b and "b.test" in (moved.subject or "")
    assert moved.state == "active; serves a certificate other than its files (graceful restart pending?)"
    assert node_as_served(node, None).state == "active; not reachable, certificate read from its file"
    # every other field kept as it was (Node's fields may grow: each one set here)
    full = Node(name="a.test", protocol="https", alias=("w.a.test",), ip="127.0.0.1", port=443,
                fingerprint=fingerprint(der_a), subject="CN=a.test", not_after=a.cert.not_valid_after_utc,
                vendor="V", state="active", locator="f:1", certificate=der_a)
    assert len(attrs.fields(Node)) == 12
    assert node_as_served(full, None) == attrs.evolve(full, state="active; not reachable, certificate read from its file")
    fresh = node_as_served(Node(name="x", port=443, state="active"), der_a)
    assert fresh.state == "active; certificate seen by handshake" and fresh.fingerprint == fingerprint(der_a)


def _dual_proxy_listener(pairs: list[Issued], tmp_path: Path, proxy: bool) -> Iterator[tuple[int, list[bytes]]]:
    """A TLS listener holding one pair per key type; with ``proxy`` it reads a PROXY v1 line
    first (and records it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for i, issued in enumerate(pairs):
        cert, key = tmp_path / f"p{i}.crt", tmp_path / f"p{i}.key"
        cert.write_bytes(issued.cert_pem)
        key.write_bytes(issued.key_pem)
        ctx.load_cert_chain(cert, key)  # OpenSSL keeps one certificate per key type
    sock = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    headers: list[bytes] = []

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = sock.accept()
            except TimeoutError:
                continue
            try:
                if proxy:
                    client.settimeout(2)
                    line = b""
                    while not line.endswith(b"\r\n") and len(line) < 108:
                        line += client.recv(1)
                    headers.append(line)
                with ctx.wrap_socket(client, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], headers
    finally:
        stop.set()
        thread.join()
        sock.close()


@pytest.mark.parametrize("proxy", [False, True], ids=["plain", "proxy-protocol"])
def test_a_probe_asks_for_a_key_type_and_sends_a_proxy_header(tmp_path: Path, test_ca: TestCA, proxy: bool) -> None:
    rsa, ec = test_ca.issue("d.test", key_type="rsa"), test_ca.issue("d.test")
    gen = _dual_proxy_listener([rsa, ec], tmp_path, proxy)
    port, headers = next(gen)
    try:
        got = served_fingerprints([Target("127.0.0.1", port, "d.test", key_kind=k, proxy_protocol=proxy)
                                   for k in ("rsa", "ec")])
        assert {t.key_kind: fp for t, fp in got.items()} == {"rsa": fingerprint(rsa.cert), "ec": fingerprint(ec.cert)}
        if proxy:
            assert headers and all(h.startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 ") and h.endswith(b"\r\n")
                                   for h in headers)
        else:
            assert headers == []
    finally:
        next(gen, None)


_LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-ü", min_size=1, max_size=12)
_HOST = st.lists(_LABEL, min_size=2, max_size=4).map(".".join)


@given(host=_HOST, path=st.text(min_size=1, max_size=20).map(lambda t: "/Common/" + t))
def test_node_sni_takes_the_first_host_name_among_name_and_aliases(host: str, path: str) -> None:
    """`tls verify` sends a node's host name as SNI: its name when that is one (nginx, Apache,
    IIS host headers), else its first alias that is one (an F5 virtual server path named with its
    profile's serverName; a catch-all or an address named by the block's other names); a wildcard
    gets a label of its own; never a path or a site name."""
    from tlsgate.probe import node_sni, sni_for

    # a name that is an address ("0.0.0.0" is made of such labels too) passes to the next name
    assert node_sni(host, ("other.example",)) == (sni_for(host) or "other.example")
    assert node_sni("_", (host,)) == sni_for(host) and node_sni("_") is None
    assert node_sni("*.example.org", (host,)) == "tlsgate-probe.example.org"
    assert node_sni(path, (path.replace("/Common/", "/Common/cs_"), host)) == sni_for(host)
    assert node_sni(path, ("/Common/cs", "Default Web Site")) is None
    assert node_sni("Default Web Site", ("Default Web Site",)) is None
    assert node_sni("10.1.0.5", (host,)) == sni_for(host) and node_sni("::1") is None


def test_a_wildcard_node_is_probed_where_no_address_specific_node_of_its_port_answers() -> None:
    from tlsgate.probe import claimed_addresses, probe_host_for

    claimed = claimed_addresses([("127.0.0.1", 443), ("*", 443), ("::1", 8443), ("*", 80), (None, None)])
    assert claimed == {443: {"127.0.0.1"}, 8443: {"::1"}}
    assert probe_host_for("*", 443, None, True, claimed) == "127.0.0.2"  # 127.0.0.1 is another vhost's
    assert probe_host_for("0.0.0.0", 8443, None, True, claimed) == "127.0.0.1"
    assert probe_host_for("127.0.0.1", 443, None, True, claimed) == "127.0.0.1"  # its own address
    assert probe_host_for("*", 443, "127.0.0.1", False, claimed) is None  # remote: cannot reach it
    assert probe_host_for("*", 443, "web1.test", False, claimed) == "web1.test"
    assert probe_host_for("*", 443, None, True, {443: {"127.0.0.1", "127.0.0.2", "::1"}}) is None
