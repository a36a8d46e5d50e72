"""The ``local`` transport: the endpoint runs on the gateway machine itself."""

from __future__ import annotations

import os
import stat as stat_mod
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from ..connection import Connection, LateCheckedWrites, temp_name
from ..errors import FileChanged, OperationError
from ..models import CommandResult, ConnectionType, Credentials, Endpoint, FileStat
from ..plugin import impl

_READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


class LocalConnection(LateCheckedWrites, Connection):
    """Commands through ``subprocess`` (argv, no shell); files through the OS."""

    host = "localhost"

    def __init__(self, *, powershell: str | None = None) -> None:
        self.platform = "windows" if sys.platform == "win32" else "posix"
        #: The PowerShell program of a Windows gateway (None: ``powershell``, or Sysnative's under WOW64).
        self.powershell = powershell
        self._runner: Any = None

    def run_powershell(self, template: str, params: Mapping[str, Any] | None = None, **options: Any) -> CommandResult:
        """On a Windows gateway: the template runs in the gateway's own PowerShell, through the
        one local runner (:class:`tlsgate.transports.windows.LocalPowerShell`), exactly as over
        WinRM (``$P`` in the script, ``$S`` on stdin; ``options``: ``timeout``, ``secret_params``).
        Elsewhere: no PowerShell (the base class)."""
        if self.platform != "windows":
            return super().run_powershell(template, params, **options)
        if self._runner is None:
            from .windows import LocalPowerShell

            self._runner = LocalPowerShell(program=self.powershell, host=self.host)
        return self._runner.run_powershell(template, params, **options)

    def is_admin(self) -> bool:
        """Whether the gateway process itself runs as root / an elevated Administrator (no
        command: the answer is this process's own token)."""
        return process_is_admin()

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = 120,
        env: Mapping[str, str] | None = None,
        check: bool = False,
        privileged: bool = False,  # the gateway user's own rights: nothing to escalate
    ) -> CommandResult:
        argv = [str(a) for a in argv]
        full_env = None if env is None else {**os.environ, **env}
        try:
            proc = subprocess.run(
                argv,
                input=stdin if stdin is not None else b"",
                capture_output=True,
                timeout=timeout,
                env=full_env,
                check=False,
            )
        except FileNotFoundError:
            result = CommandResult(tuple(argv), 127, "", f"{argv[0]}: command not found")
        except PermissionError:
            result = CommandResult(tuple(argv), 126, "", f"{argv[0]}: permission denied")
        except subprocess.TimeoutExpired:
            raise OperationError(f"localhost: {argv[0]} did not finish within {timeout} s") from None
        else:
            result = CommandResult(
                tuple(argv),
                proc.returncode,
                proc.stdout.decode("utf-8", "surrogateescape"),  # paths and names byte for byte
                proc.stderr.decode("utf-8", "replace"),
            )
        return self.check(result) if check else result

    def open_socket(self, host: str, port: int, *, timeout: float = 10.0) -> Any:
        import socket

        try:
            return socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise OperationError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None

    def read_file(self, path: str) -> bytes:
        # os.open/os.read rather than open(): a buffered file object costs two fstat calls and
        # an object per file, and a discovery reads thousands of small files (vhost includes,
        # certificates)
        try:
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            raise OperationError(f"localhost: {path}: no such file") from None
        except PermissionError:
            raise OperationError(f"localhost: {path}: permission denied") from None
        except IsADirectoryError:
            raise OperationError(f"localhost: {path}: is a directory") from None
        try:
            chunks = []
            size = 1 << 16  # below malloc's mmap threshold: a small file costs no mmap
            while chunk := os.read(fd, size):
                chunks.append(chunk)
                size = 1 << 20
        except IsADirectoryError:
            raise OperationError(f"localhost: {path}: is a directory") from None
        finally:
            os.close(fd)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        check, expect = self._expected(path)
        self._write(path, data, mode, check=check, expect=expect)

    def _write(self, path: str, data: bytes, mode: int, *, check: bool, expect: bytes | None) -> None:
        directory = os.path.dirname(os.path.abspath(path))
        name = temp_name("")
        try:
            fd, tmp = tempfile.mkstemp(prefix=name, dir=directory)
        except FileNotFoundError:
            raise OperationError(f"localhost: {directory}: no such directory") from None
        except PermissionError:
            raise OperationError(f"localhost: {directory}: permission denied") from None
        except OSError as exc:  # ENOSPC (no inode left), EROFS, EDQUOT, ...
            raise _write_error(directory, "create a temporary file", exc) from None
        step = "write"
        try:
            _fchmod(fd, tmp, mode)  # final mode before any (possibly secret) byte is written
            old = self.stat(path)
            if old is not None and old.uid is not None and _is_root():
                os.fchown(fd, old.uid, old.gid if old.gid is not None else -1)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if check:
                # the last moment before the rename: a file someone changed since the job read it
                # is not overwritten (the window left is this read and the rename)
                current = self.read_file(path) if os.path.lexists(path) else None
                if current != expect:
                    raise FileChanged(self.host, path)
            step = "rename"
            os.replace(tmp, path)
            _fsync_dir(directory)
        except BaseException as exc:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            if isinstance(exc, OSError):
                # a full disk, a quota, an immutable file: one line naming the file, as a read
                # error does (not "OSError: [Errno 28] ..." without a path)
                raise _write_error(path, step, exc) from None
            raise

    def realpath(self, path: str) -> str:
        if self.platform != "posix" or not os.path.isabs(path):
            return path  # a Windows path (or a relative one) is not resolved here
        return os.path.realpath(path)

    def stat(self, path: str) -> FileStat | None:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return FileStat(
            size=st.st_size,
            mode=stat_mod.S_IMODE(st.st_mode),
            mtime=st.st_mtime,
            uid=st.st_uid,
            gid=st.st_gid,
            is_dir=stat_mod.S_ISDIR(st.st_mode),
        )

    def remove(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def makedirs(self, path: str, *, mode: int = 0o755) -> None:
        os.makedirs(path, mode=mode, exist_ok=True)

    def chown_like(self, path: str, reference: str) -> None:
        ref = self.stat(reference)
        if ref is not None and ref.uid is not None and _is_root():
            os.chown(path, ref.uid, ref.gid if ref.gid is not None else -1)


def process_is_admin() -> bool:
    """Whether this process runs as root (POSIX) or with an elevated Administrators token
    (Windows). Importable everywhere: the Windows branch loads ctypes' ``windll`` only when it runs.

    Windows: ``shell32.IsUserAnAdmin`` (Microsoft Learn, "IsUserAnAdmin function (shlobj_core.h)":
    TRUE if the user is a member of the Administrators group; it wraps CheckTokenMembership on the
    process token, so under UAC a filtered, non-elevated token answers FALSE), the same answer as
    ``WindowsPrincipal.IsInRole(Administrator)`` that the remote Windows transports ask for, without
    starting PowerShell. ctypes, not pywin32: one call of a system DLL needs no extra dependency."""
    if sys.platform == "win32":
        import ctypes

        return bool(ctypes.windll.shell32.IsUserAnAdmin())  # type: ignore[attr-defined]
    return os.geteuid() == 0


def _is_root() -> bool:
    """Whether file ownership can (and should) be copied: POSIX root only; Windows has no uid/gid
    to set (``os.stat`` reports 0 for both there, ``os.geteuid`` does not exist)."""
    return sys.platform != "win32" and os.geteuid() == 0


def _write_error(path: str, step: str, exc: OSError) -> OperationError:
    """``localhost: PATH: write failed: No space left on device`` (``permission denied (rename:
    Operation not permitted)`` for an immutable or protected file): what failed, on which file."""
    reason = exc.strerror or str(exc)
    if isinstance(exc, PermissionError):
        return OperationError(f"localhost: {path}: permission denied ({step}: {reason})")
    return OperationError(f"localhost: {path}: {step} failed: {reason}")


def _fchmod(fd: int, path: str, mode: int) -> None:
    """``os.fchmod`` where it exists (POSIX; Windows only from Python 3.13), else ``os.chmod`` of
    the temporary (on Windows only the read-only bit is set from ``mode``)."""
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    else:
        os.chmod(path, mode)


def _fsync_dir(directory: str) -> None:
    if sys.platform == "win32":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@impl
def tlsgate_connection_types() -> list[ConnectionType]:
    return [ConnectionType("local", "The endpoint runs on the gateway machine.", remote=False)]


@impl
def connect(endpoint: Endpoint, credentials: Credentials) -> Connection | None:
    if endpoint.connection.type != "local":
        return None
    return LocalConnection()
