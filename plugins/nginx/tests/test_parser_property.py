"""Properties of the parser: the one-match-per-statement fast path and the token-by-token path
agree on everything, and the arguments are crossplane's (unescaped as nginx does)."""

from __future__ import annotations

import re

import crossplane
from hypothesis import given, settings
from hypothesis import strategies as st
from tlsgate_nginx import lexer

name = st.from_regex(r"[a-z][a-z_0-9]{0,7}", fullmatch=True)
bare = st.one_of(
    st.from_regex(r"[a-zA-Z0-9/._=:*~^()|-]{1,10}", fullmatch=True),
    st.sampled_from(["$uri", "$host$request_uri", "${x}y", "a\\;b", "\\\"q", "=404", "[::]:443", "127.0.0.1:8443"]),
)
double = st.text(alphabet="ab {};#'$/\\\"\t", max_size=8).map(
    lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
)
single = st.text(alphabet="ab {};#\"$/", max_size=8).map(lambda s: "'" + s + "'")
arg = st.one_of(bare, double, single)
space = st.sampled_from([" ", "  ", "\t", "\n", " \r\n "])
gap = st.one_of(space, st.sampled_from([" # note ; { }\n", "\n# whole line\n  "]))


@st.composite
def statement(draw, depth: int) -> str:
    words = [draw(name), *draw(st.lists(arg, max_size=4))]
    text = "".join(w + draw(gap) for w in words[:-1]) + words[-1] + draw(st.sampled_from(["", " ", "\t"]))
    if depth < 3 and draw(st.booleans()):
        body = "".join(draw(statement(depth + 1)) + draw(space) for _ in range(draw(st.integers(0, 3))))
        return text + "{" + draw(space) + body + "}"
    return text + ";"


configs = st.lists(statement(0), max_size=6).map(lambda parts: "\n".join(parts) + "\n")


def shape(directives):
    return [
        (d.name, d.args, d.start, d.end, d.body, shape(d.block) if d.block is not None else None)
        for d in directives
    ]


@settings(max_examples=150, deadline=None)
@given(configs)
def test_fast_and_token_paths_agree(text: str) -> None:
    data = text.encode()
    fast = shape(lexer.parse(data, "t.conf"))
    saved = lexer._STATEMENT
    lexer._STATEMENT = re.compile(rb"(?!)")  # never matches: every statement goes token by token
    try:
        slow = shape(lexer.parse(data, "t.conf"))
    finally:
        lexer._STATEMENT = saved
    assert fast == slow


def _ours(directives):
    out = []
    for d in directives:
        out.append((d.name, d.args))
        if d.block is not None:
            out.append(_ours(d.block))
    return out


def _crossplane(parsed):
    out = []
    for d in parsed:
        if d["directive"] == "#":  # crossplane reports a comment inside a statement as a directive
            continue
        # crossplane undoes only the escaped quote; apply nginx's full unescaping to compare
        args = [lexer._unescape(a.encode()).decode() for a in d["args"]]
        out.append((d["directive"], args))
        if "block" in d:
            out.append(_crossplane(d["block"]))
    return out


@settings(max_examples=150, deadline=None)
@given(configs)
def test_same_arguments_as_crossplane(tmp_path_factory, text: str) -> None:
    path = tmp_path_factory.getbasetemp() / "crossplane-property.conf"
    path.write_text(text)
    theirs = crossplane.parse(str(path), single=True, comments=False, check_ctx=False, check_args=False)
    assert theirs["errors"] == [], theirs["errors"]
    assert _ours(lexer.parse(text.encode(), str(path))) == _crossplane(theirs["config"][0]["parsed"])
