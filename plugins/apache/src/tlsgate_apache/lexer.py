"""A byte-exact reader of Apache httpd configuration files.

We parse ourselves rather than through Augeas or ``apacheconfig`` (protocols.md 7b: 11 s and 39 s
on 10,000 vhosts, and neither keeps byte offsets): an in-place edit must know where each argument
starts and ends in the file so that every other byte stays as the operator wrote it. The rules
are httpd's own (``ap_cfg_getline`` / ``ap_getword_conf``):

* a line ending in a backslash right before the newline continues on the next line (a doubled
  backslash does not continue);
* ``#`` starts a comment only as the first word of a line (httpd 2.4 has no trailing comments);
* an argument in double or single quotes may hold spaces; ``\\"`` inside it is a quote;
* ``<Section args>`` opens a block that ``</Section>`` closes.
"""

from __future__ import annotations

import re

import attrs

_WORD = re.compile(rb"[^ \t\r\n\f\v]+")
_SLOW = re.compile(rb"[\"'\\]")


class ConfigSyntaxError(ValueError):
    """A file httpd itself would refuse (unbalanced sections)."""


@attrs.define(eq=False)
class Directive:
    """One directive or section as written: its name, unquoted args and their byte spans."""

    name: str
    args: list[str]
    spans: list[tuple[int, int]]  # each argument's bytes in the file, quotes included
    file: str
    line: int
    start: int  # offset of the name (of ``<`` for a section)
    end: int  # offset just past the logical line (before its newline)
    children: list[Directive] | None = None  # sections only
    close_line: int | None = None

    @property
    def lname(self) -> str:
        return self.name.lower()

    @property
    def is_section(self) -> bool:
        return self.children is not None

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _continuation(data: bytes, i: int) -> int:
    """Length of a line continuation (``\\`` + newline) at ``i``, else 0."""
    if data[i : i + 1] != b"\\" or (i > 0 and data[i - 1 : i] == b"\\"):
        return 0
    if data[i + 1 : i + 2] == b"\n":
        return 2
    if data[i + 1 : i + 3] == b"\r\n":
        return 3
    return 0


def _tokens(data: bytes, pos: int) -> tuple[list[tuple[int, int]], int, int]:
    """Tokens of the logical line at ``pos``; returns (spans, end of line, newlines crossed)."""
    n = len(data)
    spans: list[tuple[int, int]] = []
    crossed = 0
    comment = False
    while pos < n:
        c = data[pos : pos + 1]
        if c == b"\n":
            break
        cont = _continuation(data, pos)
        if cont:
            pos += cont
            crossed += 1
            continue
        if c in (b" ", b"\t", b"\r", b"\f", b"\v"):
            pos += 1
            continue
        if comment:
            pos += 1
            continue
        if not spans and c == b"#":
            comment = True
            pos += 1
            continue
        start = pos
        if c in (b'"', b"'"):
            pos += 1
            while pos < n:
                ch = data[pos : pos + 1]
                if ch == b"\\" and data[pos + 1 : pos + 2] == c:
                    pos += 2
                    continue
                if ch == b"\n" and not _continuation(data, pos - 1):
                    break
                pos += 1
                if ch == c:
                    break
        else:
            while pos < n and data[pos : pos + 1] not in (b" ", b"\t", b"\r", b"\n", b"\f", b"\v"):
                if _continuation(data, pos):
                    break
                pos += 1
        spans.append((start, pos))
    return spans, pos, crossed


def unquote(raw: bytes) -> str:
    """An argument's value: quotes removed, ``\\"`` (or ``\\'``) turned into the quote."""
    text = raw.decode("utf-8", "surrogateescape")
    if len(text) >= 2 and text[0] in "\"'" and text[-1] == text[0]:
        q = text[0]
        return text[1:-1].replace("\\" + q, q)
    if text[:1] in ("\"", "'"):
        return text[1:]
    return text


def quote(value: str) -> str:
    """``value`` as an argument: bare when it can be, else in double quotes."""
    if value and not any(ch.isspace() or ch in "\"'\\#<>" for ch in value):
        return value
    if '"' in value or "\n" in value or "\r" in value or value.endswith("\\"):
        raise ValueError(f"cannot write {value!r} as an Apache argument")
    return '"' + value + '"'


def parse(data: bytes, file: str) -> list[Directive]:
    """The directive tree of one file (includes are not followed here)."""
    root: list[Directive] = []
    stack: list[Directive] = []
    pos, line, n = 0, 1, len(data)
    while pos < n:
        nl = data.find(b"\n", pos)
        nl = n if nl < 0 else nl
        if not _SLOW.search(data, pos, nl):  # most lines: no quotes, no backslash
            spans = [m.span() for m in _WORD.finditer(data, pos, nl)]
            if spans and data[spans[0][0] : spans[0][0] + 1] == b"#":
                spans = []
            end, crossed = nl, 0
        else:
            spans, end, crossed = _tokens(data, pos)
        if spans:
            first = data[spans[0][0] : spans[0][1]]
            args_spans = spans[1:]
            if first.startswith(b"</"):
                name = first[2:].rstrip(b">").decode("utf-8", "surrogateescape")
                if not stack or stack[-1].lname != name.lower():
                    raise ConfigSyntaxError(f"{file}:{line}: </{name}> without a matching <{name}>")
                stack.pop().close_line = line
            elif first.startswith(b"<"):
                name = first[1:].decode("utf-8", "surrogateescape")
                if name.endswith(">"):
                    name = name[:-1]
                args_spans = list(args_spans)
                if args_spans:
                    s, e = args_spans[-1]
                    if data[s:e] == b">":
                        args_spans.pop()
                    elif data[e - 1 : e] == b">":
                        args_spans[-1] = (s, e - 1)
                d = Directive(name, [unquote(data[s:e]) for s, e in args_spans], args_spans, file, line,
                              spans[0][0], end, children=[])
                (stack[-1].children if stack else root).append(d)  # type: ignore[union-attr]
                stack.append(d)
            else:
                name = first.decode("utf-8", "surrogateescape")
                d = Directive(name, [unquote(data[s:e]) for s, e in args_spans], list(args_spans), file, line,
                              spans[0][0], end)
                (stack[-1].children if stack else root).append(d)  # type: ignore[union-attr]
        line += crossed
        pos = end + 1
        line += 1
    if stack:
        raise ConfigSyntaxError(f"{file}:{stack[-1].line}: <{stack[-1].name}> is never closed")
    return root


def line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1
