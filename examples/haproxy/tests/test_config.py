"""haproxy.cfg and crt-list reading as HAProxy reads them; the quoting round trip (hypothesis);
discovery on an in-memory host (the kit's FakeConnection) when nothing answers TLS."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlsgate.plugin import ConnectionSpec, Endpoint
from tlsgate_haproxy.config import Address, ConfigError, parse, parse_address, parse_crt_list, quote, split_words
from tlsgate_haproxy.discovery import discover
from tlsgate_haproxy.plugin import HaproxyOptions
from tlsgate_testing.fake import FakeConnection


@pytest.mark.parametrize(("line", "words"), [
    ("  bind :443 ssl crt /etc/ssl/a.pem   # comment", ["bind", ":443", "ssl", "crt", "/etc/ssl/a.pem"]),
    ('bind :443 ssl crt "/etc/ssl/with space/"', ["bind", ":443", "ssl", "crt", "/etc/ssl/with space/"]),
    ("bind :443 ssl crt '/a \"b\" $c'", ["bind", ":443", "ssl", "crt", '/a "b" $c']),
    (r"bind :443 crt /a\ b\#c", ["bind", ":443", "crt", "/a b#c"]),
    ('x "a\\"b"c', ["x", 'a"bc']),
    ("# only a comment", []),
])
def test_split_words(line: str, words: list[str]) -> None:
    assert split_words(line) == words


def test_unmatched_quote_names_file_and_line() -> None:
    with pytest.raises(ConfigError, match=r"/h.cfg:4: unmatched double quote"):
        parse("/h.cfg", 'global\n\nfrontend a\n    bind :443 ssl crt "/x\n')


@settings(max_examples=200)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30))
def test_quote_round_trips(word: str) -> None:
    assert split_words(f"crt {quote(word)} # c") == ["crt", word]


@pytest.mark.parametrize(("word", "addresses"), [
    ("127.0.0.1:8443", [Address("127.0.0.1", 8443)]),
    (":443", [Address("", 443)]), ("*:443", [Address("", 443)]),
    ("::1:443", [Address("::1", 443)]), ("[::1]:443", [Address("::1", 443)]),
    ("10.0.0.1:80,10.0.0.2:8000-8010", [Address("10.0.0.1", 80), Address("10.0.0.2", 8000)]),
    ("ipv4@127.0.0.1:443", [Address("127.0.0.1", 443)]),
    ("/run/haproxy.sock", None), ("unix@/run/x.sock", None), ("fd@3", None),
])
def test_bind_addresses(word: str, addresses: list[Address] | None) -> None:
    assert parse_address(word) == addresses


def test_sections_binds_and_globals() -> None:
    cfg = parse("/etc/haproxy/haproxy.cfg", """
global
    crt-base /etc/haproxy/certs
    pidfile /run/h.pid
    master-worker
defaults
    mode http
frontend web
    bind :443 ssl crt site.pem crt dir/ crt-list /etc/haproxy/list alpn h2
    bind :80
backend app
    server s1 127.0.0.1:8080 ssl crt /not/a/bind.pem
listen stats
    bind 127.0.0.1:9443 ssl crt stats.pem
""")
    assert (cfg.crt_base, cfg.pidfile, cfg.master_worker, cfg.daemon) == ("/etc/haproxy/certs", "/run/h.pid", True, False)
    assert [(b.section, b.index, b.line, b.ssl, b.crt, b.crt_lists) for b in cfg.binds] == [
        ("frontend web", 0, 9, True, ("site.pem", "dir/"), ("/etc/haproxy/list",)),
        ("frontend web", 1, 10, False, (), ()),
        ("listen stats", 0, 14, True, ("stats.pem",), ()),
    ]


def test_crt_list_lines() -> None:
    text = "# c\n/a.pem\nb.pem [alpn h2 ssl-min-ver TLSv1.2] b.test *.b.test !x.b.test\n'c d.pem' [verify none]\n"
    assert parse_crt_list("/l", text) == [
        (2, "/a.pem", ()), (3, "b.pem", ("b.test", "*.b.test", "!x.b.test")), (4, "c d.pem", ())]


def test_discovery_on_a_host_where_nothing_answers(test_ca) -> None:
    a, b = test_ca.issue("a.test", "www.a.test"), test_ca.issue("b.test", "other.test")
    conn = FakeConnection({
        "/etc/haproxy/haproxy.cfg": b"global\n crt-base /c\nfrontend f\n bind :1 ssl crt a.pem crt-list /c/l\n",
        "/c/a.pem": a.cert_pem + a.key_pem,
        "/c/l": b"b.pem b.test\nmissing.pem m.test\n",
        "/c/b.pem": b.cert_pem + b.key_pem,
    })
    ep = Endpoint(name="lb", type="haproxy", connection=ConnectionSpec(type="local"), options=HaproxyOptions())
    nodes = discover(ep, conn)
    assert [(n.name, n.fingerprint, n.state.split(";")[0]) for n in nodes] == [
        ("a.test", a.fingerprint, "active"), ("www.a.test", a.fingerprint, "active"),
        ("b.test", b.fingerprint, "active"),  # the crt-list names it; other.test is not routed here
        ("m.test", None, "unreadable: localhost: /c/missing.pem: no such file"),
    ]
    assert all("not reachable" in n.state for n in nodes[:3])
    assert conn.writes == []
