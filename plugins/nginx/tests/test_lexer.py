"""The tokenizer against nginx's rules and against crossplane."""

from __future__ import annotations

import crossplane
import pytest
from tlsgate import OperationError, ValidationError
from tlsgate_nginx.lexer import LineIndex, parse, quote


def flatten(directives):
    out = []
    for d in directives:
        out.append((d.name, d.args))
        if d.block is not None:
            out.append(("{", flatten(d.block)))
    return out


def test_quotes_escapes_comments_and_offsets() -> None:
    data = b"""a "b\\"c" 'd e' f\\;g ${x}y; # comment { ; }
  b "#not" #yes
  ;"""
    tree = parse(data, "t.conf")
    assert [(d.name, d.args) for d in tree] == [("a", ['b"c', "d e", "f\\;g", "${x}y"]), ("b", ["#not"])]
    a = tree[0]
    assert [data[s:e] for s, e in a.spans(data)] == [b'"b\\"c"', b"'d e'", b"f\\;g", b"${x}y"]
    assert LineIndex(data).line(tree[1].start) == 2


def test_blocks_and_braces_in_strings() -> None:
    data = b"http { server { listen 80; location / { return 200 '{ } ;'; } } }"
    tree = parse(data, "t.conf")
    assert flatten(tree) == [
        ("http", []),
        ("{", [("server", []), ("{", [("listen", ["80"]), ("location", ["/"]),
                                      ("{", [("return", ["200", "{ } ;"])])])]),
    ]
    server = tree[0].block[0]
    assert data[server.start:server.end].startswith(b"server {") and data[server.end - 1:server.end] == b"}"


def test_backslash_kept_where_nginx_keeps_it() -> None:
    (d,) = parse(b'location ~ "\\.php$" { }', "t")
    assert d.args == ["~", "\\.php$"]


def test_lua_block_is_one_raw_argument() -> None:
    data = b"""server { content_by_lua_block { local s = "}" -- } here
  if x then ngx.say('{') end } listen 80; }"""
    (server,) = parse(data, "t")
    names = [d.name for d in server.block]
    assert names == ["content_by_lua_block", "listen"]
    assert "ngx.say('{')" in server.block[0].args[0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"a 'b;\n", "unterminated string"),
        (b"a {\n b;\n", "expecting '}'"),
        (b"a;\n}\n", "unexpected '}'"),
        (b"a b\n", "expecting ';'"),
        (b"a { b }", "missing ';'"),
    ],
)
def test_errors_name_file_and_line(text: bytes, reason: str) -> None:
    with pytest.raises(OperationError, match=reason) as info:
        parse(text, "/etc/nginx/x.conf")
    assert "/etc/nginx/x.conf:" in str(info.value)


def test_quote() -> None:
    assert quote("/etc/ssl/a.pem") == "/etc/ssl/a.pem"
    assert quote("/etc/my certs/a.pem") == '"/etc/my certs/a.pem"'
    assert quote('/x/"q";{}') == '"/x/\\"q\\";{}"'
    with pytest.raises(ValidationError):
        quote("/x/$host.pem")


def raw_flatten(directives, data):
    # crossplane keeps escapes as written; compare the raw text without the quotes
    out = []
    for d in directives:
        raw = [data[s:e].decode() for s, e in d.spans(data)]
        out.append((d.name, [r[1:-1] if r[:1] in "'\"" else r for r in raw]))
        if d.block is not None:
            out.append(("{", raw_flatten(d.block, data)))
    return out


def _crossplane_flat(parsed):
    out = []
    for d in parsed:
        out.append((d["directive"], d["args"]))
        if "block" in d:
            out.append(("{", _crossplane_flat(d["block"])))
    return out


def test_same_tree_as_crossplane(tmp_path, test_ca) -> None:
    from nginx_peer import generate_config, nginx_site

    site = nginx_site(tmp_path / "site", test_ca)
    issued = test_ca.issue("x.test")
    main = generate_config(tmp_path / "gen", 30, per_file=7, cert_pem=issued.cert_pem, key_pem=issued.key_pem)
    files = [*site.config_files(), main, *sorted((main.parent / "sites").glob("*.conf"))]
    for path in files:
        data = path.read_bytes()
        ours = raw_flatten(parse(data, str(path)), data)
        theirs = crossplane.parse(str(path), single=True, comments=False, check_ctx=False, check_args=False)
        assert theirs["errors"] == [], theirs["errors"]
        assert ours == _crossplane_flat(theirs["config"][0]["parsed"]), path
