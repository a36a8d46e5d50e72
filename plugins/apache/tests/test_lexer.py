"""httpd's configuration syntax, byte-exactly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlsgate_apache.lexer import ConfigSyntaxError, parse, quote, unquote


def test_directives_sections_and_spans() -> None:
    data = (
        b"# comment \\\n  continued comment line\n"
        b"ServerRoot \"/srv/a b\"\n"
        b"<VirtualHost 127.0.0.1:443 [::1]:443>\n"
        b"  SSLCertificateFile \\\n      'c d.pem'\n"
        b"  Header set X \"a \\\" # b\"\n"
        b"  Alias /x /y # not a comment\n"
        b"  Path c:\\\\dir\\\\\n"
        b"</VirtualHost>\n"
    )
    tree = parse(data, "f.conf")
    assert [(d.name, d.args, d.line) for d in tree] == [
        ("ServerRoot", ["/srv/a b"], 3),
        ("VirtualHost", ["127.0.0.1:443", "[::1]:443"], 4),
    ]
    vhost = tree[1]
    assert vhost.close_line == 10
    assert [(d.name, d.args, d.line) for d in vhost.children or []] == [
        ("SSLCertificateFile", ["c d.pem"], 5),
        ("Header", ["set", "X", 'a " # b'], 7),
        ("Alias", ["/x", "/y", "#", "not", "a", "comment"], 8),
        ("Path", ["c:\\\\dir\\\\"], 9),  # a doubled backslash does not continue the line
    ]
    cert = (vhost.children or [])[0]
    start, end = cert.spans[0]
    assert data[start:end] == b"'c d.pem'"


def test_section_end_tag_forms_and_errors() -> None:
    tree = parse(b"<IfModule ssl_module >\n<IfDefine X>\nA 1\n</IfDefine>\n</ifmodule>\n", "f")
    assert tree[0].args == ["ssl_module"] and tree[0].children[0].children[0].args == ["1"]  # type: ignore[index]
    with pytest.raises(ConfigSyntaxError, match="f:1: <VirtualHost> is never closed"):
        parse(b"<VirtualHost *:443>\n", "f")
    with pytest.raises(ConfigSyntaxError, match="without a matching"):
        parse(b"</VirtualHost>\n", "f")


@given(st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1))
def test_quote_round_trips(value: str) -> None:
    try:
        q = quote(value)
    except ValueError:
        assert '"' in value or "\n" in value or "\r" in value or value.endswith("\\")
        return
    assert parse(f"D {q}\n".encode(), "f")[0].args == [value]
    assert unquote(q.encode()) == value


_PIECES = st.sampled_from([
    "SSLEngine", "on", "SSLCertificateFile", "certs/a.pem", '"a b.pem"', "'c d'", '"x \\" y"', "\\", "\\\\",
    "#", "# c", "#x", "<VirtualHost", "127.0.0.1:443>", ">", "</VirtualHost>", "<IfModule", "ssl_module>",
    "</IfModule>", "<VirtualHost>", "\u00e9t\u00e9", "${X}", "a#b", "<<x", "<x", "</x>",
])
_SPACE = st.sampled_from([" ", "  ", "\t", " \t", "\r", "\f", "\v"])
_END = st.sampled_from(["\n", "\r\n", " \\\n", "\\\n", "\\\r\n", " \n"])


@st.composite
def _config(draw) -> bytes:  # type: ignore[no-untyped-def]
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        words = draw(st.lists(_PIECES, max_size=5))
        indent = draw(st.sampled_from(["", "    ", "\t"]))
        sep = draw(_SPACE)
        lines.append(indent + sep.join(words) + draw(_END))
    text = "".join(lines)
    if draw(st.booleans()) and text.endswith("\n"):
        text = text[:-1]  # a last line without its newline
    return text.encode()


def _shape(tree: list) -> list:  # type: ignore[type-arg]
    return [(d.name, d.lname, d.args, d.spans, d.file, d.line, d.start, d.end, d.close_line,
             None if d.children is None else _shape(d.children)) for d in tree]


@settings(max_examples=300, deadline=None)  # a loaded CI machine must not fail on time
@given(_config())
def test_the_fast_path_reads_every_file_as_token_by_token_reading_does(data: bytes) -> None:
    """Lines without quotes or backslashes are split by one regular expression; the rest go
    token by token: both give the same tree (names, arguments, spans, lines, offsets) or the
    same error."""
    try:
        want = _shape(parse(data, "f", tokenwise=True))
    except ConfigSyntaxError as exc:
        with pytest.raises(ConfigSyntaxError) as got:
            parse(data, "f")
        assert str(got.value) == str(exc)
        return
    assert _shape(parse(data, "f")) == want


def _kept(tree: list, keep: frozenset[str] | None) -> list:  # type: ignore[type-arg]
    """The tree's shape, only the sections and the directives named in ``keep`` (None: all)."""
    return [(d.name, d.args, d.line, d.start, d.end, d.close_line, None if d.children is None else _kept(d.children, keep))
            for d in tree if d.children is not None or keep is None or d.lname in keep]


@settings(max_examples=100, deadline=None)
@given(_config(), st.sets(st.sampled_from(["sslengine", "sslcertificatefile", "on", "x"])))
def test_keep_leaves_out_only_the_other_directives(data: bytes, names: set[str]) -> None:
    keep = frozenset(names)
    try:
        full = parse(data, "f")
    except ConfigSyntaxError:
        return
    assert _kept(parse(data, "f", keep=keep), None) == _kept(full, keep)
    assert _kept(parse(data, "f", keep=keep, tokenwise=True), None) == _kept(full, keep)


_NAMED = st.sampled_from([
    "SSLEngine", "sslengine", "SSLENGINE", "SslEngine", "SSLEngineX", "xSSLEngine", "SSLEngine#", "SSLEngine>",
    "SSLCertificateKeyFile", "SSLCertificate\u212aeyFile", "sslcertificate\u212aeyfile", "SSLCertificateKey",
    "Include", "IncludeOptional", "INCLUDEOPTIONAL", "Includes", "ServerName", "<VirtualHost", "</VirtualHost>",
    "<IfModule", "</IfModule>", "on", "#", '"q"', "'q", "\\", "a\\", "x", "<ServerName", "\u0130nclude",
])


@st.composite
def _named_config(draw) -> bytes:  # type: ignore[no-untyped-def]
    lines = []
    for _ in range(draw(st.integers(0, 14))):
        words = draw(st.lists(_NAMED | _PIECES, min_size=1, max_size=4))
        lines.append(draw(st.sampled_from(["", "  ", "\t", "\f", "\v "])) + draw(_SPACE).join(words) + draw(_END))
    return "".join(lines).encode()


@settings(max_examples=300, deadline=None)
@given(_named_config())
def test_keep_finds_its_names_as_the_lexer_compares_them(data: bytes) -> None:
    """The fast path with ``keep`` skips the other lines inside the expression: it keeps the
    names as ``str.lower`` compares them (any ASCII case; the Kelvin sign is a ``k``), whole
    first words only, and gives the tree token-by-token reading gives (spans and lines too)."""
    keep = frozenset({"sslengine", "sslcertificatekeyfile", "include", "includeoptional", "servername"})
    try:
        want = _shape(parse(data, "f", keep=keep, tokenwise=True))
    except ConfigSyntaxError as exc:
        with pytest.raises(ConfigSyntaxError) as got:
            parse(data, "f", keep=keep)
        assert str(got.value) == str(exc)
        return
    assert _shape(parse(data, "f", keep=keep)) == want
    full = parse(data, "f")
    assert _kept(parse(data, "f", keep=keep), None) == _kept(full, keep)
