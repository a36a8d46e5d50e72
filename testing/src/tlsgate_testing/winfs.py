"""The file systems of the simulated Windows host (:mod:`tlsgate_testing.winhost`): NTFS-like
semantics (absolute drive paths, ``/`` and ``\\`` both separators, case-insensitive and
case-preserving names, parent directories must exist), in memory or on a real directory."""

from __future__ import annotations

import json
import ntpath
import os
import time
from collections.abc import Iterable
from pathlib import Path

import attrs
from tlsgate.transports import windows as win


class PSError(Exception):
    """Raised by a handler: ``message`` goes to stderr, ``exit_code`` is the script's exit code.

    Without ``error_id`` the message is what a template writes itself with
    ``[Console]::Error.WriteLine`` (raw text on the process' stderr). With ``error_id`` it is a
    PowerShell *error record* (a cmdlet or .NET exception the template did not catch), which
    powershell.exe serializes as CLIXML the way real PowerShell does: the message wrapped at the
    console width, ``At line:N char:M``, the offending line, ``+ CategoryInfo``, ``+
    FullyQualifiedErrorId``. ``warnings`` are warning records written before the failure."""

    def __init__(self, message: str, exit_code: int = 1, *, error_id: str | None = None,
                 category: str = "NotSpecified: (:) [], RuntimeException", line: str = "",
                 warnings: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.error_id = error_id
        self.category = category
        self.line = line
        self.warnings = warnings



# -- NTFS links ----------------------------------------------------------------------------------
# Modelled on Microsoft's documentation: about_FileSystem_Provider (Get-Item's LinkType is
# HardLink, SymbolicLink or Junction on NTFS; Target is the stored target) and "Hard links and
# junctions" / CreateSymbolicLinkW (a symbolic link's target may be relative to the link's
# directory; a junction names an absolute local directory). Opening a path follows every link on
# the way (reads and writes reach the target); deleting or renaming *onto* a link acts on the
# link itself (DeleteFile, MoveFileEx and ReplaceFile replace the link, not its target).
LINK_KINDS = ("SymbolicLink", "Junction")
MAX_LINK_HOPS = 32


def check_link(target: str, kind: str) -> None:
    if kind not in LINK_KINDS:
        raise ValueError(f"link kind {kind!r}: one of {LINK_KINDS}")
    if kind == "Junction" and not win.is_absolute_windows_path(target):
        raise PSError(f"A junction needs an absolute target: '{target}'", 1)


def join_link_target(link_path: str, target: str) -> str:
    """The absolute path a link's stored ``target`` names (relative: to the link's directory)."""
    if target.startswith("\\\\?\\"):
        target = target[4:]
    if not win.is_absolute_windows_path(target):
        target = ntpath.join(ntpath.dirname(link_path), target)
    return full_path(target)


def full_path(path: str) -> str:
    """``[IO.Path]::GetFullPath`` of an absolute path: separators and ``.``/``..`` normalised."""
    drive, parts = split_windows_path(path)
    return drive + "\\" + "\\".join(parts)


# -- Windows paths -------------------------------------------------------------------------------
def split_windows_path(path: str) -> tuple[str, list[str]]:
    """(``C:``, [components]) of an absolute Windows path; ``/`` and ``\\`` both separate,
    ``.``/``..`` resolve, repeated separators collapse. PSError for a relative path."""
    if not win.is_absolute_windows_path(path):
        raise PSError(f"Cannot find path '{path}' because it is not an absolute path.", 1)
    drive, rest = ntpath.splitdrive(path.replace("/", "\\"))
    parts: list[str] = []
    for part in rest.split("\\"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        if part != part.rstrip(" .") or any(ch in part for ch in '<>:"|?*') or any(ord(c) < 32 for c in part):
            raise PSError(f"The filename, directory name, or volume label syntax is incorrect: '{path}'", 1)
        parts.append(part)
    return drive.upper(), parts


class WinFS:
    """The file system interface the built-in templates use (case-insensitive, like NTFS)."""

    def read(self, path: str) -> bytes: raise NotImplementedError
    def write(self, path: str, data: bytes, *, append: bool = False) -> None: raise NotImplementedError
    def kind(self, path: str) -> str | None: raise NotImplementedError  # "file", "dir" or None
    def size(self, path: str) -> int: raise NotImplementedError
    def mtime(self, path: str) -> float: raise NotImplementedError
    def listdir(self, path: str) -> list[str]: raise NotImplementedError
    def mkdir(self, path: str) -> None: raise NotImplementedError
    def remove(self, path: str) -> None: raise NotImplementedError
    def rename(self, src: str, dst: str) -> None: raise NotImplementedError
    def is_private(self, path: str) -> bool: raise NotImplementedError
    def set_private(self, path: str, private: bool) -> None: raise NotImplementedError
    #: ``path`` becomes an NTFS link to ``target`` (as stored: absolute, or relative to the link's
    #: directory); ``kind`` is the LinkType Get-Item reports: ``SymbolicLink`` (file or
    #: directory) or ``Junction`` (directories, absolute target). See :func:`check_link`.
    def symlink(self, path: str, target: str, kind: str = "SymbolicLink") -> None: raise NotImplementedError
    #: (LinkType, Target) of the item ``path`` names itself (its parents followed), or None:
    #: what ``Get-Item -LiteralPath path`` shows as ``.LinkType`` / ``.Target``.
    def link(self, path: str) -> tuple[str, str] | None: raise NotImplementedError

    def makedirs(self, path: str) -> None:
        drive, parts = split_windows_path(path)
        for i in range(1, len(parts) + 1):
            sub = drive + "\\" + "\\".join(parts[:i])
            k = self.kind(sub)
            if k == "file":
                raise PSError(f"An item with the specified name {sub} already exists.", 1)
            if k is None:
                self.mkdir(sub)

    def _parent_dir(self, path: str) -> None:
        drive, parts = split_windows_path(path)
        parent = drive + "\\" + "\\".join(parts[:-1])
        if parts[:-1] and self.kind(parent) != "dir":
            raise PSError(f"Could not find a part of the path '{path}'.", 1)


@attrs.define
class _Entry:
    name: str  # as first created (case preserved)
    data: bytearray | None  # None: a directory (or a link)
    private: bool = False
    mtime: float = attrs.field(factory=time.time)
    link: tuple[str, str] | None = None  # (LinkType, stored target)


class MemoryFS(WinFS):
    """In-memory NTFS-like tree: case-insensitive, case-preserving; drive ``C:`` exists."""

    def __init__(self, drives: Iterable[str] = ("C:",)) -> None:
        self.entries: dict[tuple[str, ...], _Entry] = {}
        for d in drives:
            self.entries[(d.upper(),)] = _Entry(d.upper(), None)

    def _key(self, path: str, *, follow: bool = True) -> tuple[str, ...]:
        """The entry key ``path`` reaches: links among its parents are always followed, a link
        as the last component only with ``follow`` (open) and not for delete/rename."""
        drive, parts = split_windows_path(path)
        hops, i = 0, 0
        while i < len(parts):
            key = (drive, *(p.casefold() for p in parts[: i + 1]))
            e = self.entries.get(key)
            if e is not None and e.link is not None and (follow or i < len(parts) - 1):
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise PSError(f"The name of the file cannot be resolved by the system: '{path}'", 1)
                here = drive + "\\" + "\\".join(parts[: i + 1])
                drive, target = split_windows_path(join_link_target(here, e.link[1]))
                parts, i = target + parts[i + 1:], 0
                continue
            i += 1
        return (drive, *(p.casefold() for p in parts))

    def _get(self, path: str, *, follow: bool = True) -> _Entry | None:
        return self.entries.get(self._key(path, follow=follow))

    def symlink(self, path: str, target: str, kind: str = "SymbolicLink") -> None:
        check_link(target, kind)
        self._parent_dir(path)
        if self._get(path, follow=False) is not None:
            raise PSError(f"An item with the specified name {path} already exists.", 1)
        self.entries[self._key(path, follow=False)] = _Entry(split_windows_path(path)[1][-1], None,
                                                             link=(kind, target))

    def link(self, path: str) -> tuple[str, str] | None:
        e = self._get(path, follow=False)
        return e.link if e is not None else None

    def kind(self, path: str) -> str | None:
        e = self._get(path)
        return None if e is None or e.link is not None else ("dir" if e.data is None else "file")

    def _file(self, path: str) -> _Entry:
        e = self._get(path)
        if e is None:
            raise PSError(f"Could not find file '{path}'.", 2)
        if e.data is None:
            raise PSError(f"Access to the path '{path}' is denied.", 1)
        return e

    def read(self, path: str) -> bytes:
        return bytes(self._file(path).data or b"")

    def write(self, path: str, data: bytes, *, append: bool = False) -> None:
        e = self._get(path)
        if e is None:
            self._parent_dir(path)
            e = self.entries[self._key(path)] = _Entry(split_windows_path(path)[1][-1], bytearray())
        elif e.data is None:
            raise PSError(f"Access to the path '{path}' is denied.", 1)
        if append:
            e.data += data  # type: ignore[operator]
        else:
            e.data = bytearray(data)
        e.mtime = time.time()

    def size(self, path: str) -> int:
        return len(self._file(path).data or b"")

    def mtime(self, path: str) -> float:
        e = self._get(path)
        return e.mtime if e else 0.0

    def listdir(self, path: str) -> list[str]:
        key = self._key(path)
        if self.kind(path) != "dir":
            raise PSError(f"Cannot find path '{path}' because it does not exist.", 2)
        return [e.name for k, e in self.entries.items() if len(k) == len(key) + 1 and k[: len(key)] == key]

    def mkdir(self, path: str) -> None:
        self._parent_dir(path)
        self.entries[self._key(path)] = _Entry(split_windows_path(path)[1][-1], None)

    def remove(self, path: str) -> None:
        self._file(path)
        del self.entries[self._key(path, follow=False)]  # a link: the link goes, not its target

    def rename(self, src: str, dst: str) -> None:
        self._file(src)
        e = self._get(src, follow=False)
        assert e is not None
        if self.kind(dst) == "dir":
            raise PSError(f"Cannot create a file when that file already exists: '{dst}'", 1)
        self._parent_dir(dst)
        del self.entries[self._key(src, follow=False)]
        old = self._get(dst, follow=False)
        e.name = old.name if old else split_windows_path(dst)[1][-1]
        self.entries[self._key(dst, follow=False)] = e  # onto a link: replaces the link itself

    def is_private(self, path: str) -> bool:
        e = self._get(path)
        return bool(e and e.private)

    def set_private(self, path: str, private: bool) -> None:
        self._file(path).private = private


class DirectoryFS(WinFS):
    """A real directory standing in for the drives: ``C:\\x\\y`` is ``<root>/C:/x/y``.

    Existing components are matched case-insensitively (NTFS); new ones keep their case. ACL
    restriction is recorded in ``<root>/.acl.json`` (there are no ACLs to set on Linux).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        (self.root / "C:").mkdir(parents=True, exist_ok=True)

    def real(self, path: str) -> Path:
        drive, parts = split_windows_path(path)
        cur = self.root / drive
        for part in parts:
            cand = cur / part
            if not cand.exists() and cur.is_dir():
                for name in os.listdir(cur):
                    if name.casefold() == part.casefold():
                        cand = cur / name
                        break
            cur = cand
        return cur

    def kind(self, path: str) -> str | None:
        p = self.real(path)
        return "dir" if p.is_dir() else "file" if p.exists() else None

    def read(self, path: str) -> bytes:
        if self.kind(path) != "file":
            raise PSError(f"Could not find file '{path}'.", 2)
        return self.real(path).read_bytes()

    def write(self, path: str, data: bytes, *, append: bool = False) -> None:
        self._parent_dir(path)
        if self.kind(path) == "dir":
            raise PSError(f"Access to the path '{path}' is denied.", 1)
        with open(self.real(path), "ab" if append else "wb") as fh:
            fh.write(data)

    def size(self, path: str) -> int:
        return self.real(path).stat().st_size

    def mtime(self, path: str) -> float:
        return self.real(path).stat().st_mtime

    def listdir(self, path: str) -> list[str]:
        if self.kind(path) != "dir":
            raise PSError(f"Cannot find path '{path}' because it does not exist.", 2)
        return sorted(os.listdir(self.real(path)))

    def mkdir(self, path: str) -> None:
        self._parent_dir(path)
        self.real(path).mkdir()

    def remove(self, path: str) -> None:
        if self.kind(path) != "file":
            raise PSError(f"Could not find file '{path}'.", 2)
        self.real(path).unlink()
        self.set_private(path, False)

    def rename(self, src: str, dst: str) -> None:
        if self.kind(src) != "file":
            raise PSError(f"Could not find file '{src}'.", 2)
        self._parent_dir(dst)
        os.replace(self.real(src), self.real(dst))

    def symlink(self, path: str, target: str, kind: str = "SymbolicLink") -> None:
        """A real POSIX symbolic link (so SFTP and every open follow it, as Win32-OpenSSH's do);
        its LinkType and stored target are recorded in ``<root>/.links.json``."""
        check_link(target, kind)
        self._parent_dir(path)
        if win.is_absolute_windows_path(target):
            posix: str | Path = self.real(target)
        else:
            posix = target.replace("\\", "/")
        os.symlink(posix, self.real(path))
        links = self._links()
        links[str(self.real(path))] = [kind, target]
        (self.root / ".links.json").write_text(json.dumps(links))

    def _links(self) -> dict[str, list[str]]:
        f = self.root / ".links.json"
        return json.loads(f.read_text()) if f.exists() else {}

    def link(self, path: str) -> tuple[str, str] | None:
        p = self.real(path)
        if not p.is_symlink():
            return None
        known = self._links().get(str(p))
        if known:
            return known[0], known[1]
        raw = os.readlink(p)  # made by a test without symlink(): map the POSIX target back
        root = str(self.root)
        if raw.startswith(root + "/"):
            drive_name, _, rest = raw[len(root) + 1:].partition("/")
            return "SymbolicLink", drive_name + "\\" + rest.replace("/", "\\")
        return "SymbolicLink", raw.replace("/", "\\")

    def _acl(self) -> dict[str, bool]:
        f = self.root / ".acl.json"
        return json.loads(f.read_text()) if f.exists() else {}

    def is_private(self, path: str) -> bool:
        return bool(self._acl().get(str(self.real(path))))

    def set_private(self, path: str, private: bool) -> None:
        acl = self._acl()
        acl[str(self.real(path))] = private
        (self.root / ".acl.json").write_text(json.dumps(acl))
