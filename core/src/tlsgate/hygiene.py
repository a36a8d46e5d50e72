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

import attrs

from .errors import OperationError

if TYPE_CHECKING:
    from .connection import Connection
    from .transaction import Transaction

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


def package_owner(connection: Connection, path: str, *, resolve: bool = True) -> str | None:
    """The package that ships ``path`` (``dpkg -S``, else ``rpm -qf``; with ``resolve`` the real
    path, symlinks resolved), or None. A package's conffile edited in place makes its next upgrade
    prompt (Debian: ``dpkg-query -W -f '${Conffiles}'`` lists them; every file a package ships
    under /etc is one)."""
    script = (
        ('p=$(readlink -f -- "$1") || p=$1; ' if resolve else 'p=$1; ')
        + 'if command -v dpkg >/dev/null 2>&1; then dpkg -S -- "$p" 2>/dev/null | head -n 1 | cut -d: -f1; '
        'elif command -v rpm >/dev/null 2>&1; then rpm -qf --queryformat "%{NAME}\\n" -- "$p" 2>/dev/null; fi'
    )
    if connection.platform == "windows":
        return None
    res = connection.run(["sh", "-c", script, "sh", path])
    name = res.stdout.strip().splitlines()[0].strip() if res.ok and res.stdout.strip() else ""
    if not name or " " in name or "not owned" in name:
        return None
    return name


@attrs.frozen
class OwnCopy:
    """How a server's configuration file that a package ships is changed without editing it:
    the server reads ``packaged`` through the symbolic link ``link`` (Debian's
    ``sites-enabled/default-ssl.conf -> ../sites-available/default-ssl.conf``, made by
    ``a2ensite``, not by the package); tlsgate writes the edited text to ``copy``, a file of its
    own, and points ``link`` at it. The package's file stays as shipped, so its next upgrade
    does not stop to ask about a changed conffile."""

    link: str
    packaged: str
    owner: str
    copy: str

    def message(self) -> str:
        return (f"{self.packaged} belongs to the package {self.owner} (a conffile): left as shipped; "
                f"the edited copy is {self.copy}, which {self.link} now points at")

    def write(self, tx: Transaction, data: bytes, detail: str) -> None:
        """In ``tx``: write the edited text to the copy (the packaged file's mode), point the link
        at it (both undone on rollback), and say so in the result's messages."""
        packaged = tx.connection.stat(self.packaged)
        tx.write(self.copy, data, detail=f"{detail} (copy of {self.packaged})",
                 mode=packaged.mode & 0o7777 if packaged else 0o644)
        tx.relink(self.link, self.copy)
        if not tx.dry_run:
            tx.messages.append(self.message())


def package_file_routes(connection: Connection, files: Iterable[str], directory: str, *, fix: str) -> dict[str, OwnCopy]:
    """:func:`package_file_route` for each of ``files`` (those a driver is about to edit): the
    routes of those a package ships; raises for the first that cannot be routed."""
    routes = {}
    for file in files:
        route = package_file_route(connection, file, directory, fix=fix)
        if route is not None:
            routes[file] = route
    return routes


def package_file_route(connection: Connection, path: str, directory: str, *, fix: str) -> OwnCopy | None:
    """None when no package ships the file the server reads as ``path``; an :class:`OwnCopy`
    (in ``directory``) when it reads it through a symbolic link that no package ships; else
    OperationError: tlsgate will not edit a package's file (``fix`` says what the operator can
    do instead)."""
    owner = package_owner(connection, path)
    if owner is None:
        return None
    real = connection.realpath(path)
    if real != path and _is_link(connection, path) and package_owner(connection, path, resolve=False) is None:
        name = connection.path.basename(real)
        return OwnCopy(link=path, packaged=real, owner=owner, copy=connection.path.join(directory, name))
    raise OperationError(
        f"{real} belongs to the package {owner} (dpkg -S / rpm -qf): editing it there makes the next "
        f"upgrade of {owner} ask about a changed conffile; {fix}"
    )


def _is_link(connection: Connection, path: str) -> bool:
    return connection.run(["test", "-L", path]).ok
