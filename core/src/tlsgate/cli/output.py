"""Printing: JSON (stable shapes, secrets already redacted) or rich tables for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

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


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    t = Table(*columns, title=title, show_lines=False, header_style="bold")
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    console().print(t)
