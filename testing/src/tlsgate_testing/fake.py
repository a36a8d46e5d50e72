"""``FakeConnection``: an in-memory :class:`tlsgate.plugin.Connection` for a driver's parsing,
planning and contract tests. Files live in a dict, modes beside them; commands are answered from
a table or a function and recorded. Use a real peer (``tlsgate_testing`` fixtures) to test that
a server accepts what the driver wrote; use this to test what the driver reads and plans.

    conn = FakeConnection({"/etc/app.conf": b"listen 443 ssl;"},
                          commands={("app", "-t"): (0, "syntax is ok")})
    nodes = my_plugin.discover_nodes(endpoint, conn)
    assert conn.writes == []            # discovery changed nothing
"""

from __future__ import annotations

import ntpath
import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import Union

from tlsgate.plugin import CommandResult, Connection, FileStat, OperationError

#: A scripted answer: (exit status, stdout), (exit status, stdout, stderr) or a CommandResult.
Answer = Union[tuple[int, str], tuple[int, str, str], CommandResult]  # noqa: UP007 - runtime alias
#: A command handler: argv -> an answer, or None for "not handled" (exit 127).
Handler = Callable[[tuple[str, ...]], Union[Answer, None]]  # noqa: UP007 - runtime alias


class FakeConnection(Connection):
    """Files in a dict; commands from ``commands`` (a table argv -> answer, or a function);
    every call recorded in ``calls`` (("read", path), ("write", path), ("run", argv), ...).

    ``modes`` gives files a mode other than 0644 (an executable script: 0o755). ``dirs`` are
    directories that exist even when empty; a directory also exists when a file is
    under it. ``admin`` answers :meth:`is_admin`; ``systemd`` answers :meth:`systemd_running` (None: ask
    the commands, as a real host is asked). An unanswered command exits 127 ("not found")."""

    def __init__(
        self,
        files: Mapping[str, bytes] | None = None,
        commands: Mapping[tuple[str, ...], Answer] | Handler | None = None,
        *,
        platform: str = "posix",
        host: str = "localhost",
        dirs: Iterable[str] = (),
        modes: Mapping[str, int] | None = None,
        admin: bool = True,
        systemd: bool | None = None,
    ) -> None:
        self.files: dict[str, bytes] = dict(files or {})
        self.modes: dict[str, int] = {**dict.fromkeys(self.files, 0o644), **(modes or {})}
        self.dirs: set[str] = {self._norm(d) for d in dirs}
        self.commands = commands if callable(commands) else dict(commands or {})
        self.platform = platform
        self.host = host
        self.admin = admin
        self.systemd = systemd
        self.calls: list[tuple[str, object]] = []
        #: the argv of every command run with ``privileged=True`` (what would go through sudo)
        self.privileged_runs: list[tuple[str, ...]] = []

    # -- what a test inspects -----------------------------------------------------------------
    @property
    def ran(self) -> list[tuple[str, ...]]:
        """Every argv run, in order."""
        return [argv for op, argv in self.calls if op == "run"]  # type: ignore[misc]

    @property
    def writes(self) -> list[str]:
        """Every path written, removed or renamed onto, in order (empty: nothing changed)."""
        return [str(arg) for op, arg in self.calls if op in ("write", "remove", "rename", "makedirs")]

    def snapshot(self) -> dict[str, tuple[bytes, int]]:
        """Content and mode of every file, to compare before/after byte for byte."""
        return {p: (d, self.modes.get(p, 0o644)) for p, d in sorted(self.files.items())}

    # -- Connection ---------------------------------------------------------------------------
    def run(self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = 120,
            env: Mapping[str, str] | None = None, check: bool = False, privileged: bool = False) -> CommandResult:
        key = tuple(argv)
        self.calls.append(("run", key))
        if privileged:
            self.privileged_runs.append(key)
        answer = self.commands(key) if callable(self.commands) else self.commands.get(key)
        if answer is None:
            result = CommandResult(key, 127, "", f"{key[0] if key else ''}: not found")
        elif isinstance(answer, CommandResult):
            result = answer
        else:
            rc, out, *err = answer
            result = CommandResult(key, rc, out, err[0] if err else ("" if rc == 0 else "failed"))
        return self.check(result) if check else result

    def read_file(self, path: str) -> bytes:
        self.calls.append(("read", path))
        try:
            return self.files[path]
        except KeyError:
            raise OperationError(f"{self.host}: {path}: no such file") from None

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        self.calls.append(("write", path))
        self.files[path] = bytes(data)
        self.modes[path] = mode

    def realpath(self, path: str) -> str:
        """The fake host has no symbolic links: every path names itself."""
        return path

    def stat(self, path: str) -> FileStat | None:
        if path in self.files:
            return FileStat(size=len(self.files[path]), mode=self.modes.get(path, 0o644), mtime=0)
        if self._is_dir(path):
            return FileStat(size=0, mode=0o755, mtime=0, is_dir=True)
        return None

    def remove(self, path: str) -> None:
        self.calls.append(("remove", path))
        self.files.pop(path, None)
        self.modes.pop(path, None)

    def rename(self, src: str, dst: str) -> None:
        self.calls.append(("rename", dst))
        if src not in self.files:
            raise OperationError(f"{self.host}: {src}: no such file")
        self.files[dst] = self.files.pop(src)
        self.modes[dst] = self.modes.pop(src, 0o644)

    def listdir(self, path: str) -> list[str]:
        self.calls.append(("listdir", path))
        if not self._is_dir(path):  # what os.listdir (the local transport) raises
            raise FileNotFoundError(f"{self.host}: {path}: no such directory")
        prefix = self._norm(path) + self.path.sep
        names = {p[len(prefix):].split(self.path.sep)[0] for p in [*self.files, *self.dirs] if p.startswith(prefix)}
        return sorted(n for n in names if n)

    def makedirs(self, path: str, *, mode: int = 0o755) -> None:
        self.calls.append(("makedirs", path))
        self.dirs.add(self._norm(path))

    def is_admin(self) -> bool:
        return self.admin

    def systemd_running(self) -> bool:
        return super().systemd_running() if self.systemd is None else self.systemd

    @property
    def path(self) -> ModuleType:
        return ntpath if self.platform == "windows" else posixpath

    # -- helpers ------------------------------------------------------------------------------
    def _norm(self, path: str) -> str:
        return path.rstrip("/\\") or path

    def _is_dir(self, path: str) -> bool:
        d = self._norm(path)
        prefix = d + self.path.sep
        return d in self.dirs or any(p.startswith(prefix) for p in [*self.files, *self.dirs])
