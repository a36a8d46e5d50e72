"""Span edits: change a configuration file's bytes in place, leaving every other byte as it was.

A driver parses a file, finds the offsets of the arguments it must change, and plans one
:data:`Edit` per change; :func:`apply_edits` applies them in one pass. Plugins import both from
:mod:`tlsgate.plugin`.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Replace ``data[start:end]`` with the bytes (``start == end``: insert).
Edit = tuple[int, int, bytes]


def apply_edits(data: bytes, edits: Sequence[Edit]) -> bytes:
    """``data`` with non-overlapping ``edits`` applied (ValueError when two overlap)."""
    out = []
    pos = 0
    for start, end, text in sorted(edits):
        if start < pos:
            raise ValueError("overlapping edits")
        out += [data[pos:start], text]
        pos = end
    out.append(data[pos:])
    return b"".join(out)
