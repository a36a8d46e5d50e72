"""File hygiene after a verified install: tlsgate's own superseded files, removed.

A driver writes each certificate's files under names it alone uses (``tlsgate-<name>-<fp12>``
plus an extension, or any name in a directory that is tlsgate's own). Once an install is
verified, :func:`remove_superseded` deletes the files of that kind in the directory that no
configuration text references any more (by full path or by file name: a relative reference
counts), never the files just written and never a file whose name tlsgate does not use.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .connection import Connection

#: the names tlsgate gives certificate files: ``tlsgate-<name>-<first 12 hex of the fingerprint>.<ext>``
OWN_NAME = re.compile(r"^tlsgate-.+-[0-9a-f]{12}\.[A-Za-z0-9.]+$")


def remove_superseded(
    connection: Connection,
    directory: str,
    configs: Iterable[bytes],
    *,
    keep: Collection[str] = (),
    own: re.Pattern[str] = OWN_NAME,
) -> list[str]:
    """Remove the files in ``directory`` whose names match ``own``, other than ``keep``, that no
    text in ``configs`` names; return the removed paths. Failures to list or remove are ignored:
    hygiene never fails an install that is verified."""
    try:
        names = connection.listdir(directory)
    except Exception:  # noqa: BLE001 - a directory we cannot list has nothing to clean
        return []
    texts = [bytes(t) for t in configs]
    keep_set = {connection.path.normpath(k) for k in keep}
    removed = []
    for name in sorted(names):
        if not own.match(name):
            continue
        path = connection.path.join(directory, name)
        if connection.path.normpath(path) in keep_set:
            continue
        if any(name.encode() in text for text in texts):  # the name is in every reference, relative or not
            continue
        try:
            connection.remove(path)
        except Exception:  # noqa: BLE001, S112 - best effort: a file left behind is only clutter
            continue
        removed.append(path)
    return removed


def package_owner(connection: Connection, path: str) -> str | None:
    """The package that ships ``path`` (``dpkg -S``, else ``rpm -qf``; the real path, symlinks
    resolved), or None. A package's conffile edited in place makes its next upgrade prompt."""
    script = (
        'p=$(readlink -f -- "$1") || p=$1; '
        'if command -v dpkg >/dev/null 2>&1; then dpkg -S -- "$p" 2>/dev/null | head -n 1 | cut -d: -f1; '
        'elif command -v rpm >/dev/null 2>&1; then rpm -qf --queryformat "%{NAME}\\n" -- "$p" 2>/dev/null; fi'
    )
    if connection.platform == "windows":
        return None
    res = connection.run(["sh", "-c", script, "sh", path])
    name = res.stdout.strip().splitlines()[0].strip() if res.ok and res.stdout.strip() else ""
    if not name or " " in name or "not owned" in name:
        return None
    return name
