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

import itertools
import re
from collections.abc import Iterable

import attrs


class ConfigSyntaxError(ValueError):
    """A file httpd itself would refuse (unbalanced sections)."""


@attrs.define(eq=False)
class Directive:
    """One directive or section as written: its name, unquoted args and their byte spans."""

    name: str
    args: list[str]
    #: each argument's bytes in the file, quotes included (computed on first use: only the
    #: directives an install edits need them)
    _spans: list[tuple[int, int]] | None
    file: str
    line: int
    start: int  # offset of the name (of ``<`` for a section)
    end: int  # offset just past the logical line (before its newline)
    children: list[Directive] | None = None  # sections only
    close_line: int | None = None
    #: the name in lower case (the lexer passes it: one ``str`` per distinct name)
    lname: str = attrs.field(default=attrs.Factory(lambda self: self.name.lower(), takes_self=True))
    _data: bytes = attrs.field(default=b"", repr=False)  # the file's bytes, for the spans

    @property
    def spans(self) -> list[tuple[int, int]]:
        if self._spans is None:
            self._spans = _arg_spans(self._data, self.start, self.is_section)
        return self._spans

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


#: A line that holds a directive (not blank, not a comment): its first word and the rest of the
#: line. Blank and comment lines are skipped inside the regular-expression engine.
_LINE = re.compile(rb"^[ \t\r\f\v]*([^ \t\r\n\f\v#][^ \t\r\n\f\v]*)([^\n]*)", re.M)


def _section_args(data: bytes, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """A section tag's argument spans without the closing ``>`` (a word of its own or the end of
    the last one)."""
    spans = list(spans)
    if spans:
        s, e = spans[-1]
        if data[s:e] == b">":
            spans.pop()
        elif data[e - 1 : e] == b">":
            spans[-1] = (s, e - 1)
    return spans


def _arg_spans(data: bytes, start: int, section: bool) -> list[tuple[int, int]]:
    """The argument spans of the directive whose name starts at ``start``."""
    spans = _tokens(data, start)[0][1:]
    return _section_args(data, spans) if section else spans


#: Directive and section names seen (one ``str`` and its lower case per distinct name, shared by
#: every file of a process: httpd's vocabulary is a few hundred names; bounded all the same).
_NAMES: dict[bytes, tuple[str, str]] = {}
_MAX_NAMES = 4096


class _Tree:
    """The directive tree being built, and the names seen (one ``str`` per distinct name)."""

    __slots__ = ("data", "file", "keep", "names", "root", "stack")

    def __init__(self, data: bytes, file: str, keep: frozenset[str] | None = None) -> None:
        self.data, self.file, self.keep = data, file, keep
        self.root: list[Directive] = []
        self.stack: list[Directive] = []
        self.names = _NAMES

    def finish(self) -> list[Directive]:
        if self.stack:
            raise ConfigSyntaxError(f"{self.file}:{self.stack[-1].line}: <{self.stack[-1].name}> is never closed")
        return self.root

    def add(self, first: bytes, args: list[str] | None, words: list[bytes] | None,
            spans: list[tuple[int, int]] | None, line: int, start: int, end: int) -> None:
        """One logical line: ``args`` (unquoted, with ``spans``) or the bare ``words``."""
        if first.startswith(b"</"):
            name = first[2:].rstrip(b">").decode("utf-8", "surrogateescape")
            if not self.stack or self.stack[-1].lname != name.lower():
                raise ConfigSyntaxError(f"{self.file}:{line}: </{name}> without a matching <{name}>")
            self.stack.pop().close_line = line
            return
        section = first.startswith(b"<")
        key = first[1:] if section else first
        if section and key.endswith(b">"):
            key = key[:-1]
        named = self.names.get(key)
        if named is None:
            text = key.decode("utf-8", "surrogateescape")
            named = (text, text.lower())
            if len(self.names) < _MAX_NAMES:
                self.names[key] = named
        if not section and self.keep is not None and named[1] not in self.keep:
            return
        if args is None:
            if section and words:  # the closing ">": a word of its own or the end of the last one
                if words[-1] == b">":
                    words = words[:-1]
                elif words[-1].endswith(b">"):
                    words = [*words[:-1], words[-1][:-1]]
            args = [w.decode("utf-8", "surrogateescape") for w in words] if words else []
        elif section and spans is not None:
            spans = _section_args(self.data, spans)
            args = [unquote(self.data[s:e]) for s, e in spans]
        d = Directive(named[0], args, spans, self.file, line, start, end, [] if section else None, None,
                      named[1], self.data)
        (self.stack[-1].children if self.stack else self.root).append(d)  # type: ignore[union-attr]
        if section:
            self.stack.append(d)


def _slow_line(tree: _Tree, data: bytes, pos: int, line: int) -> tuple[int, int]:
    """The logical line at ``pos`` token by token (quotes, backslashes); returns the next
    line's offset and number."""
    spans, end, crossed = _tokens(data, pos)
    if spans:
        s0, e0 = spans[0]
        args_spans = spans[1:]
        tree.add(data[s0:e0], [unquote(data[s:e]) for s, e in args_spans], None, args_spans, line, s0, end)
    return end + 1, line + crossed + 1


def _decoded(words: list[bytes]) -> list[str]:
    """Each word as text (bytes that are not UTF-8 kept as surrogates)."""
    try:
        return list(map(bytes.decode, words))  # strict UTF-8 decodes as surrogateescape does, in C
    except UnicodeDecodeError:
        return [w.decode("utf-8", "surrogateescape") for w in words]


#: the fast path's expressions per ``keep`` (see :func:`_line_patterns`)
_PATTERNS: dict[frozenset[str] | None, tuple[re.Pattern[bytes], re.Pattern[bytes], bool]] = {}


def _line_patterns(keep: frozenset[str] | None) -> tuple[re.Pattern[bytes], re.Pattern[bytes], bool]:
    """The expression of the lines the fast path reads, anchored at the start of a line and as
    the newline before it (a literal first character, which the engine finds quickly, where
    ``^`` is tried at every byte: twice as fast), and whether it finds every directive line
    (:data:`_LINE`). With ``keep``, only the section tags and the lines whose first word is one of ``keep``
    (ASCII-case-insensitively, as the lexer's ``str.lower`` compares it: the Kelvin sign is a
    ``k`` there), so that the other lines are skipped inside the engine; every line when a name
    in ``keep`` is not a plain lower-case ASCII word (then ``keep`` is checked per line)."""
    found = _PATTERNS.get(keep)
    if found is not None:
        return found
    body, every = _LINE.pattern[1:], True  # without its "^"
    if keep is not None and all(k and k.isascii() and k == k.lower() and not any(ch.isspace() or ch in "#<" for ch in k)
                                for k in keep):
        alternatives = [b"".join(rb"(?:k|\xe2\x84\xaa)" if ch == "k" else re.escape(ch.encode()) for ch in name)
                        for name in sorted(keep, key=len, reverse=True)]
        names = b"|".join(alternatives) or rb"(?!)"
        body, every = rb"[ \t\r\f\v]*(<[^ \t\r\n\f\v]*|(?i:" + names + rb")(?=[ \t\r\n\f\v]|\Z))([^\n]*)", False
    found = re.compile(b"^" + body, re.M), re.compile(b"\n" + body), every
    if len(_PATTERNS) < 64:
        _PATTERNS[keep] = found
    return found


def _next_slow(data: bytes, pos: int, n: int) -> int:
    """The offset of the next quote or backslash from ``pos`` (``n``: none), by one ``find`` per
    character (a regular expression's character class tests every byte: 14 ns a byte)."""
    for ch in (b'"', b"'", b"\\"):
        i = data.find(ch, pos, n)
        if i >= 0:
            n = i
    return n


def parse(data: bytes, file: str, *, keep: frozenset[str] | None = None, tokenwise: bool = False) -> list[Directive]:
    """The directive tree of one file (includes are not followed here).

    Lines without quotes or backslashes (nearly all) are found by one regular expression and
    split in C; a region holding a quote or a backslash is read line by line, token by token
    (``_tokens``). Each step moves forward through the file, so the time is linear in its size
    (one vhost per file or a hundred alike). ``tokenwise``: every line token by token (the
    reference the tests compare the fast path with). ``keep``: the (lower-case) names of the
    directives to keep; sections are always kept, other directives left out (discovery needs a
    few names of a file's hundreds of lines: the others are skipped by the expression)."""
    tree = _Tree(data, file, keep)
    if tokenwise:
        pos, line = 0, 1
        while pos < len(data):
            pos, line = _slow_line(tree, data, pos, line)
        return tree.finish()
    names, stack, root, add = tree.names, tree.stack, tree.root, tree.add
    at_start, after_newline, every = _line_patterns(keep)
    check = keep is not None and every  # else each directive line the expressions find is one of ``keep``
    count = data.count
    pos, line, n = 0, 1, len(data)
    while pos < n:
        next_slow = _next_slow(data, pos, n)
        # the directive lines before the next quote or backslash (the search ends there: a
        # line that reaches it is read token by token below); ``pos`` starts a line
        if pos:
            found: Iterable[re.Match[bytes]] = after_newline.finditer(data, pos - 1, next_slow)
        else:
            head = at_start.match(data, 0, next_slow)
            found = after_newline.finditer(data, 0, next_slow)
            if head is not None:
                found = itertools.chain((head,), found)
        for m in found:
            end = m.end()
            if end >= next_slow:
                break
            first, rest = m.groups()
            start = m.start(1)
            line += count(b"\n", pos, start)
            pos = end + 1
            if first[0] != 60:  # 60: "<"
                named = names.get(first) if stack else None
                if named is not None:  # the common case, inline: a directive of a known name in a section
                    if check and named[1] not in keep:  # type: ignore[operator]
                        line += 1
                        continue
                    stack[-1].children.append(Directive(  # type: ignore[union-attr]
                        named[0], _decoded(rest.split()), None, file, line, start, end, None, None, named[1], data))
                    line += 1
                    continue
            elif first[1:2] == b"/":  # a closing tag: inline when it closes the innermost section
                named = names.get(first[2:].rstrip(b">"))
                if named is not None and stack and stack[-1].lname == named[1]:
                    stack.pop().close_line = line
                    line += 1
                    continue
            else:  # an opening tag of a known name, inline (as add reads it)
                key = first[1:]
                named = names.get(key[:-1] if key.endswith(b">") else key)
                if named is not None:
                    words = rest.split()
                    if words:  # the closing ">": a word of its own or the end of the last one
                        if words[-1] == b">":
                            words.pop()
                        elif words[-1].endswith(b">"):
                            words[-1] = words[-1][:-1]
                    d = Directive(named[0], _decoded(words), None, file, line, start, end, [], None, named[1], data)
                    (stack[-1].children if stack else root).append(d)  # type: ignore[union-attr]
                    stack.append(d)
                    line += 1
                    continue
            add(first, None, rest.split(), None, line, start, end)
            line += 1
        else:
            if next_slow >= n:
                break  # only blank, comment and left-out lines are left
        # a quote or a backslash before the end of the next directive line: token by token from
        # here until past the logical line holding it (a backslash may continue a comment line)
        while pos < n and pos <= next_slow:
            pos, line = _slow_line(tree, data, pos, line)
    return tree.finish()


def line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1
