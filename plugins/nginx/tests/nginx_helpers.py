"""Helpers shared by the nginx plugin tests (imported by name: conftest puts this folder on
sys.path; the tests folder is not a package, so it cannot clash with another plugin's)."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path

from tlsgate import CommandResult, Connection, ConnectionSpec, Endpoint, FileStat, OperationError
from tlsgate_nginx.plugin import NginxOptions


class MemoryConnection(Connection):
    """Files in a dict; commands refused. Enough for parsing and edit planning."""

    def __init__(
        self,
        files: Mapping[str, bytes],
        commands: Mapping[tuple[str, ...], tuple[int, str]] | None = None,
        platform: str = "posix",
    ) -> None:
        self.files = dict(files)
        self.commands = dict(commands or {})
        self.platform = platform
        self.ran: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], **_: object) -> CommandResult:
        """Answers from ``commands`` (argv -> (exit status, stdout)); anything else: 127."""
        self.ran.append(tuple(argv))
        rc, out = self.commands.get(tuple(argv), (127, ""))
        return CommandResult(tuple(argv), rc, out, "" if rc == 0 else "not found")

    def read_file(self, path: str) -> bytes:
        try:
            return self.files[path]
        except KeyError:
            raise OperationError(f"{path}: no such file") from None

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        self.files[path] = data

    def stat(self, path: str) -> FileStat | None:
        if path in self.files:
            return FileStat(size=len(self.files[path]), mode=0o644, mtime=0)
        if any(p.startswith(path.rstrip("/") + "/") for p in self.files):
            return FileStat(size=0, mode=0o755, mtime=0, is_dir=True)
        return None

    def remove(self, path: str) -> None:
        self.files.pop(path, None)

    def rename(self, src: str, dst: str) -> None:
        self.files[dst] = self.files.pop(src)

    def listdir(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return sorted({p[len(prefix):].split("/")[0] for p in self.files if p.startswith(prefix)})

    def makedirs(self, path: str, *, mode: int = 0o755) -> None:
        pass

    @property
    def path(self):  # type: ignore[override]
        return posixpath


def local_endpoint(config: Path | str, **options: object) -> Endpoint:
    return Endpoint(
        name="web",
        type="nginx",
        connection=ConnectionSpec(type="local"),
        options=NginxOptions(nginx_config_path=str(config), **options),  # type: ignore[arg-type]
    )
