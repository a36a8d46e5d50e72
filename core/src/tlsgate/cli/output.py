"""Printing: JSON (stable shapes, secrets already redacted) or rich tables for people.

Human output escapes every control and bidi-control character of the data it shows (an alias
or certificate subject with ESC sequences, backspaces or newlines is printed as ``\x1b``,
``\x08``, ``\n``): :func:`escape` is the one function, and :func:`table`, :func:`say` and
:func:`warn` apply it to everything they print. ``--json`` output is JSON-escaped already."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..validate import BAD_CHARACTERS, SURROGATES, shown_surrogate

if TYPE_CHECKING:  # rich is imported by the first command that prints through it (start-up time)
    from rich.console import Console

_console: Console | None = None


def console() -> Console:
    global _console
    if _console is None:
        from rich.console import Console

        # piped output (scripts, CI logs) gets wide tables instead of rich's 80-column default
        _console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    return _console


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """``text`` with control characters (C0, DEL, C1), bidi controls and unpaired surrogates
    written as Python-style escapes, so a terminal shows them instead of obeying them."""
    if BAD_CHARACTERS.search(text) is None:
        return text
    return BAD_CHARACTERS.sub(_escaped, text)


def _escaped(found: Any) -> str:
    ch = found.group()
    if ch in _NAMED:
        return _NAMED[ch]
    if ord(ch) <= 0xFF:
        return f"\\x{ord(ch):02x}"
    if SURROGATES.match(ch):  # a byte of another encoding (surrogateescape) as \xNN
        return shown_surrogate(ch)
    return f"\\u{ord(ch):04x}"


#: a JSON list longer than this is written one element per line (still one JSON document)
STREAM_ITEMS = 100
#: JSON longer than this (compact) is not indented (see emit_json)
PRETTY_LIMIT = 256 * 1024


def emit_json(data: Any) -> None:
    # json's indent= runs its pure-Python encoder (10,000 endpoints took ~1 s; 90 certificates
    # with 100 nodes each, 1.3 MB, 0.6 s): a long or large list is written by the C encoder
    # one element per line (still one JSON document), anything else large on one line
    write = _json_writer()
    encode = _element_encoder()
    if isinstance(data, list) and data:
        parts = list(map(encode, data))
        if len(data) > STREAM_ITEMS or sum(map(len, parts)) > PRETTY_LIMIT:
            _write_list(write, parts)
            return
    elif not isinstance(data, list):
        compact = encode(data)
        if len(compact) > PRETTY_LIMIT:
            write(compact + "\n")
            return
    write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def _json_writer() -> Any:
    """``sys.stdout.write`` for JSON text that may hold lone surrogates: a byte of another
    encoding decoded with surrogateescape (a path or name from a Latin-1 configuration) would
    stop a UTF-8 stdout with UnicodeEncodeError; inside a JSON string it is written as the text
    ``\\xNN`` (the form the inventory stores and tables show), other lone surrogates as
    ``\\uNNNN`` text. A raw surrogate can only stand inside a string literal of the document."""
    write = sys.stdout.write

    def safe(text: str) -> Any:
        if SURROGATES.search(text) is not None:  # its backslash escaped: text inside a JSON string
            text = SURROGATES.sub(lambda found: shown_surrogate(found.group()).replace("\\", "\\\\"), text)
        return write(text)

    return safe


def emit_json_texts(parts: list[str]) -> None:
    """A JSON list whose elements are already encoded (the inventory built them): written one
    element per line as :func:`emit_json` writes a long list; a short one exactly as emit_json."""
    if len(parts) <= STREAM_ITEMS and sum(map(len, parts)) <= PRETTY_LIMIT:
        emit_json(json.loads("[" + ",".join(parts) + "]"))
        return
    _write_list(sys.stdout.write, parts)


def _write_list(write: Any, parts: list[str]) -> None:
    """One JSON list of encoded elements, one element per line, in writes of 1,000."""
    write("[\n")
    for start in range(0, len(parts), 1000):
        write(",\n".join(parts[start : start + 1000]) + (",\n" if start + 1000 < len(parts) else "\n"))
    write("]\n")


def _element_encoder() -> Any:
    """``json.dumps(item, default=str, ensure_ascii=False)`` as one function: the C encoder that
    ``json.dumps`` builds for every call, built once (per call, that set-up was as long as
    encoding an endpoint). Where the interpreter has no C encoder, ``json.dumps`` itself."""
    from json import encoder as json_encoder

    make = json_encoder.c_make_encoder
    if make is None:
        return lambda item: json.dumps(item, default=str, ensure_ascii=False)
    iterencode = make(None, str, json_encoder.encode_basestring, None, ": ", ", ", False, False, True)
    return lambda item: "".join(iterencode(item, 0))


def say(text: str) -> None:
    """One line (data in it escaped; a newline in data cannot start a fake line)."""
    if _console is None and not sys.stdout.isatty():
        sys.stdout.write(escape(text) + "\n")  # piped: no need to import rich for one line
        return
    console().print(escape(text), markup=False)


def say_lines(text: str) -> None:
    """Several lines of data (a script's output): line breaks kept, each line escaped."""
    for line in text.splitlines():
        say(line)


def warn(text: str) -> None:
    print(f"warning: {escape(text)}", file=sys.stderr)


def error_line(text: str) -> None:
    """The ``error: ...`` line of a command that fails after printing its result."""
    print(f"error: {escape(text)}", file=sys.stderr)


#: tables longer than this are written as plain text even on a terminal (rich's renderer takes
#: seconds for tens of thousands of rows)
RICH_MAX_ROWS = 300

def clean(text: Any) -> str:
    """:func:`escape` of any value (None: empty), for table cells."""
    return escape("" if text is None else str(text))


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    """A table: rich on a terminal for modest sizes; plain aligned text when stdout is not a
    terminal or the table is long (fast at any size, and stable for scripts)."""
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    if BAD_CHARACTERS.search("".join(map("".join, cells))):  # one search for the usual clean table
        cells = [[escape(v) for v in row] for row in cells]
    if not sys.stdout.isatty() or len(cells) > RICH_MAX_ROWS:
        _plain(columns, cells, title)
        return
    from rich.table import Table
    from rich.text import Text

    t = Table(*columns, title=title, show_lines=False, header_style="bold")
    for row in cells:
        t.add_row(*(Text(v) for v in row))  # data is never rich markup
    console().print(t, markup=False)


def _plain(columns: Sequence[str], cells: list[list[str]], title: str | None) -> None:
    widths = [len(c) for c in columns]
    for row in cells:
        for i, v in enumerate(row):
            if len(v) > widths[i]:
                widths[i] = len(v)
    def line(values: Sequence[str]) -> str:
        # no padding after the last non-empty cell (a cell's own spaces stay: a plain rstrip
        # took a row whose only value was " " down to nothing)
        end = len(values)
        while end and not values[end - 1]:
            end -= 1
        last = end - 1
        return "  ".join(v if i == last else v.ljust(widths[i]) for i, v in enumerate(values[:end]))

    out = [title] if title else []
    out.append(line(columns))
    out.append(line(["-" * w for w in widths]))
    out.extend(line(row) for row in cells)
    sys.stdout.write("\n".join(out) + "\n")
