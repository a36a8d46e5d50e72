"""Printing: JSON (stable shapes, secrets already redacted) or rich tables for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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


#: a JSON list longer than this is written one element per line (still one JSON document)
STREAM_ITEMS = 100


def emit_json(data: Any) -> None:
    if isinstance(data, list) and len(data) > STREAM_ITEMS:
        # json's indent= runs its pure-Python encoder (10,000 endpoints took ~1 s); the C encoder
        # writes each element on a line of its own, as it goes
        write = sys.stdout.write
        write("[\n")
        last = len(data) - 1
        for i, item in enumerate(data):
            write(json.dumps(item, default=str, ensure_ascii=False) + (",\n" if i < last else "\n"))
        write("]\n")
        return
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


#: control characters other than newline and tab, shown escaped in plain (piped) output
_CONTROL_ESCAPES = {i: f"\\x{i:02x}" for i in (*range(9), *range(11, 32), *range(127, 160))}


def say(text: str) -> None:
    if _console is None and not sys.stdout.isatty():
        # piped: the text without importing rich; control characters (ESC, CR, ...) escaped
        sys.stdout.write(text.translate(_CONTROL_ESCAPES) + "\n")
        return
    console().print(text, markup=False)


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    from rich.table import Table

    t = Table(*columns, title=title, show_lines=False, header_style="bold")
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    console().print(t)
