"""A small nginx configuration tokenizer and parser that keeps byte offsets.

Why not crossplane (the tests and the benchmark still compare against it)? Two reasons:

* An install must change *only* the arguments of ``ssl_certificate`` / ``ssl_certificate_key``
  and leave every other byte of every file as it was (comments, spacing, quoting). crossplane
  gives line numbers, not the byte span of each argument, so an in-place edit would have to
  re-tokenize anyway. Here each directive knows its byte offset, and
  :meth:`Directive.spans` gives the exact span of each argument.
* Discovery on big hosts: crossplane builds a dict per directive and takes ~2 s for 10,000
  server blocks on this kind of machine. Matching a whole ordinary statement with one compiled
  regular expression (the token-by-token path only for escapes, comments inside a statement and
  ``${``) does the whole discovery in under half of crossplane's bare parse; see
  ``benchmarks/RESULTS.md``.

It follows ``ngx_conf_read_token`` (src/core/ngx_conf_file.c): a token is ``;``, ``{``, ``}``,
a ``'...'`` or ``"..."`` string, or a bare word ended by space, tab, CR, LF, ``;`` or ``{``
(``${`` does not end it); ``#`` starts a comment only where a token could start; a backslash
escapes the next character. ``*_by_lua_block { ... }`` bodies are Lua, not nginx syntax, and are
skipped as one raw argument as crossplane does. The file is handled as bytes so offsets are
byte offsets and no decoding can alter what is written back.
"""

from __future__ import annotations

import re
from bisect import bisect_right

from tlsgate.plugin import OperationError, ValidationError

_TOKEN = re.compile(
    rb"""[ \t\r\n]*(?:
      (\#[^\n]*)                                   # 1 comment (to end of line)
    | ("(?:[^"\\]|\\.)*")                          # 2 double-quoted string
    | ('(?:[^'\\]|\\.)*')                          # 3 single-quoted string
    | ([;{}])                                      # 4 punctuation
    | ((?:\\.|\$\{|[^ \t\r\n;{}"'\#\\])(?:\\.|\$\{|[^ \t\r\n;{\\])*)  # 5 bare word
    )""",
    re.X | re.S,
)
# ngx_conf_read_token drops the backslash before " ' \\, translates \t \r \n, keeps the rest
_ESCAPES = {b"t": b"\t", b"r": b"\r", b"n": b"\n", b'"': b'"', b"'": b"'", b"\\": b"\\"}
_ESCAPE = re.compile(rb"\\(.)", re.S)


class Directive:
    """One directive: ``name`` and its unquoted ``args``; ``start`` is the byte offset of the
    name in ``file``, ``end`` the offset just after its ``;`` or ``}``; ``block`` holds the
    children of a block directive (None for a simple one); ``body`` is the offset just after
    ``{``. Argument offsets are recomputed on demand by :meth:`spans` (only an install needs
    them; keeping them for every directive of a 10,000-block host costs more than re-reading
    the few that change)."""

    __slots__ = ("args", "block", "body", "end", "file", "name", "start")

    def __init__(self, name: str, args: list[str], file: str, start: int) -> None:
        self.name = name
        self.args = args
        self.file = file
        self.start = start
        self.end = start
        self.body = -1
        self.block: list[Directive] | None = None

    def spans(self, data: bytes) -> list[tuple[int, int]]:
        """``(start, end)`` of each argument's raw text in ``data`` (the file), quotes included."""
        out: list[tuple[int, int]] = []
        first = True
        for m in _TOKEN.finditer(data, self.start):
            kind = m.lastindex or 0
            if kind == 1:
                continue
            if kind == 4:
                break
            if first:
                first = False
                continue
            out.append(m.span(kind))
        return out

    def __repr__(self) -> str:
        return f"Directive({self.name!r}, {self.args!r}, {self.file}@{self.start})"


def _unescape(raw: bytes) -> bytes:
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), raw)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def line_of(data: bytes, offset: int) -> int:
    """1-based line number of ``offset`` in ``data``."""
    return data.count(b"\n", 0, offset) + 1


class LineIndex:
    """Offset -> line number for one file, built once (discovery asks for many)."""

    def __init__(self, data: bytes) -> None:
        self._newlines = [m.start() for m in re.finditer(rb"\n", data)]

    def line(self, offset: int) -> int:
        return bisect_right(self._newlines, offset - 1) + 1


# One match per ordinary statement: a plain name, arguments without escapes, comments or
# ``${``, then ``;`` or ``{``. Anything else (rare) goes through the token-by-token path.
_STATEMENT = re.compile(
    rb"""[ \t\r\n]*(?:
      (\#[^\n]*)                                                  # 1 comment
    | (\})                                                        # 2 block end
    | ([^ \t\r\n\x0b\x0c;{}"'\#\\$]+)                                # 3 name
      ((?:[ \t\r\n]+(?:"[^"\\]*"|'[^'\\]*'|(?:[^ \t\r\n\x0b\x0c;{}"'\#\\$]|\$(?!\{))+))*)  # 4 arguments
      [ \t\r\n]*([;{])                                            # 5 end of statement
    )""",
    re.X,
)
_ARG = re.compile(rb""""[^"]*"|'[^']*'|[^ \t\r\n]+""")


def parse(data: bytes, file: str, words_cache: dict[bytes, str] | None = None) -> list[Directive]:
    """Parse one file into its top-level directives (``include`` is not followed here).

    Raises :class:`OperationError` naming ``file:line`` on a syntax error: an unterminated
    string, a ``}`` without ``{``, a missing ``;`` or ``}`` at the end of the file.
    """
    root: list[Directive] = []
    stack: list[Directive] = []
    current = root
    pos = 0
    size = len(data)
    statement = _STATEMENT.match
    # One str per distinct word (names and most arguments repeat: "listen", "ssl", "on"...):
    # less memory and fewer decodes on big configurations.
    text: dict[bytes, str] = words_cache if words_cache is not None else {}

    def text_of(raw: bytes) -> str:
        value = text[raw] = raw.decode("utf-8", "surrogateescape")
        return value

    while True:
        m = statement(data, pos)
        if m is not None:
            pos = m.end()
            kind = m.lastindex
            if kind == 5:
                raw_args = m.group(4)
                if not raw_args:
                    args = []
                else:
                    words = (
                        [a[1:-1] if a[0] in b"\"'" else a for a in _ARG.findall(raw_args)]
                        if b'"' in raw_args or b"'" in raw_args
                        else raw_args.split()
                    )
                    args = [text.get(w) or text_of(w) for w in words]
                raw_name = m.group(3)
                d = Directive(text.get(raw_name) or text_of(raw_name), args, file, m.start(3))
                term = m.group(5)
            elif kind == 1:
                continue
            else:  # "}"
                if not stack:
                    _fail(data, file, m.start(2), "unexpected '}'")
                stack.pop().end = pos
                current = stack[-1].block if stack else root  # type: ignore[assignment]
                continue
        else:
            slow, term, pos = _slow_statement(data, pos, file)
            if slow is None:
                if term == b"}":
                    if not stack:
                        _fail(data, file, pos - 1, "unexpected '}'")
                    stack.pop().end = pos
                    current = stack[-1].block if stack else root  # type: ignore[assignment]
                    continue
                break  # end of file
            d = slow
        current.append(d)
        if term == b";":
            d.end = pos
            continue
        d.body = pos
        if d.name.endswith("_by_lua_block"):
            end = _skip_lua(data, pos, file)
            d.args.append(_text(data[pos : end - 1]))
            d.end = pos = end
            continue
        d.block = []
        stack.append(d)
        current = d.block
    if stack:
        _fail(data, file, size, "unexpected end of file, expecting '}'")
    return root


def _slow_statement(data: bytes, pos: int, file: str) -> tuple[Directive | None, bytes | None, int]:
    """One statement token by token (escapes, comments between arguments, ``${``, odd
    quoting). Returns (directive, b";" or b"{", new pos), (None, b"}", pos) or (None, None, pos)
    at the end of the file."""
    words: list[bytes] = []
    first = pos
    for m in _TOKEN.finditer(data, pos):
        if m.start() != pos:
            break
        pos = m.end()
        kind = m.lastindex or 0
        if kind == 1:
            continue
        if kind == 4:
            ch = m.group(4)
            if ch == b"}":
                if words:
                    _fail(data, file, m.start(4), "unexpected '}' (missing ';' before it?)")
                return None, ch, pos
            if not words:
                _fail(data, file, m.start(4), f"unexpected '{ch.decode()}'")
            d = Directive(_text(words[0]), [_text(w) for w in words[1:]], file, first)
            return d, ch, pos
        raw = m.group(kind)
        if not words:
            first = m.start(kind)
        if kind != 5:
            raw = raw[1:-1]
        words.append(_unescape(raw) if b"\\" in raw else raw)
    size = len(data)
    while pos < size and data[pos] in b" \t\r\n":
        pos += 1
    if pos < size:
        ch = data[pos : pos + 1]
        reason = "unterminated string" if ch in (b'"', b"'") else f"unexpected {ch!r}"
        _fail(data, file, pos, reason)
    if words:
        _fail(data, file, size, "unexpected end of file, expecting ';' or '}'")
    return None, None, pos


def _skip_lua(data: bytes, pos: int, file: str) -> int:
    """Offset just after the ``}`` closing a Lua block that starts at ``pos`` (after ``{``).

    Braces inside Lua strings and ``--`` comments do not count; long brackets are treated as
    strings.
    """
    depth = 1
    i = pos
    n = len(data)
    while i < n:
        c = data[i]
        if c == 0x7B:  # {
            depth += 1
        elif c == 0x7D:  # }
            depth -= 1
            if depth == 0:
                return i + 1
        elif c in (0x22, 0x27):  # " '
            i += 1
            while i < n and data[i] != c:
                i += 2 if data[i] == 0x5C else 1
        elif data.startswith(b"--", i):
            j = data.find(b"\n", i)
            i = n if j < 0 else j
            continue
        elif data.startswith(b"[[", i):
            j = data.find(b"]]", i + 2)
            i = n if j < 0 else j + 2
            continue
        i += 1
    _fail(data, file, n, "unexpected end of file inside a *_by_lua_block")
    raise AssertionError  # pragma: no cover


def _fail(data: bytes, file: str, offset: int, reason: str) -> None:
    # The endpoint's configuration is broken, not the operator's input: exit 1, naming file:line.
    raise OperationError(f"{file}:{line_of(data, offset)}: {reason}")


_NEEDS_QUOTES = re.compile(r"""[\s;{}'"#\\]|^$""")


def quote(value: str) -> str:
    """``value`` as an nginx argument: bare when safe, else double-quoted with escapes.

    ``$`` cannot be escaped in nginx (variables are interpolated in quoted strings too), so a
    value with ``$`` is refused: it would name a different file.
    """
    if "$" in value:
        raise ValidationError(f"{value!r}: nginx would read '$' as a variable", option="--certs_dir")
    if not _NEEDS_QUOTES.search(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
