"""Printing: JSON (stable shapes, secrets already redacted) or rich tables for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

_console: Console | None = None


def console() -> Console:
    global _console
    if _console is None:
        # piped output (scripts, CI logs) gets wide tables instead of rich's 80-column default
        _console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    return _console


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def say(text: str) -> None:
    console().print(text, markup=False)


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


#: tables longer than this are written as plain text even on a terminal (rich's renderer takes
#: seconds for tens of thousands of rows)
RICH_MAX_ROWS = 300

_CONTROL = {i: f"\\x{i:02x}" for i in (*range(32), *range(127, 160))}  # C0, DEL, C1
_CONTROL.update({9: "\\t", 10: "\\n", 13: "\\r"})


def clean(text: Any) -> str:
    """Text for a person: control characters (ESC, backspace, newline...) shown escaped."""
    s = "" if text is None else str(text)
    return s.translate(_CONTROL) if any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in s) else s


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    """A table: rich on a terminal for modest sizes; plain aligned text when stdout is not a
    terminal or the table is long (fast at any size, and stable for scripts)."""
    cells = [[clean(v) for v in row] for row in rows]
    if not sys.stdout.isatty() or len(cells) > RICH_MAX_ROWS:
        _plain(columns, cells, title)
        return
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
    last = len(columns) - 1

    def line(values: Sequence[str]) -> str:
        return "  ".join(v if i == last else v.ljust(widths[i]) for i, v in enumerate(values)).rstrip(" ")

    out = [title] if title else []
    out.append(line(columns))
    out.append(line(["-" * w for w in widths]))
    out.extend(line(row) for row in cells)
    sys.stdout.write("\n".join(out) + "\n")
