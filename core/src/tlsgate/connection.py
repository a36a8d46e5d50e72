"""The one interface every driver uses to reach a host, and every transport implements.

A driver never knows whether it talks to the local machine, an SSH server or a Windows host over
WinRM: it calls ``run`` with an argv (the transport quotes it for the remote shell), reads and
writes files, and asks ``platform``. ``write_file`` is atomic (temporary name in the same
directory, mode set before any byte is written, fsync, rename). Windows transports also offer
``run_powershell(template, params)``: a fixed script whose parameters arrive as one
base64-encoded JSON document, never interpolated into the script text.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import ntpath
import posixpath
import secrets
from collections.abc import Iterator, Mapping, Sequence
from types import ModuleType, TracebackType
from typing import Any

from .errors import CommandFailed, FileChanged, OperationError
from .models import CommandResult, FileStat

#: The running job's tag: every temporary a transport creates is named
#: ``.tlsgate-<tag>-<random>``, so the temporaries a dead job left can be found and removed
#: without touching those of a job still running (the core sets it per job).
current_temp_tag: contextvars.ContextVar[str] = contextvars.ContextVar("tlsgate_temp_tag", default="")

TEMP_PREFIX = ".tlsgate-"


def temp_name(suffix: str = ".tmp") -> str:
    """A fresh temporary file name (no directory) carrying the current job's tag."""
    tag = current_temp_tag.get()
    return f"{TEMP_PREFIX}{tag + '-' if tag else ''}{secrets.token_hex(6)}{suffix}"


class LateCheckedWrites:
    """Mixin for transports whose ``write_file`` can compare the target with what is expected
    just before its rename: ``write_file_if`` goes through ``write_file`` (so a subclass that
    wraps ``write_file`` still sees every write), which asks :meth:`_expected` for the check."""

    _expect: tuple[str, bytes | None] | None = None

    def write_file_if(self, path: str, data: bytes, *, mode: int = 0o644, expect: bytes | None) -> None:
        self._expect = (path, expect)
        try:
            self.write_file(path, data, mode=mode)  # type: ignore[attr-defined]
        finally:
            self._expect = None

    def _expected(self, path: str) -> tuple[bool, bytes | None]:
        """(compare?, expected content) for a write of ``path`` now."""
        pending = self._expect
        if pending is None or pending[0] != path:
            return False, None
        return True, pending[1]


class Connection(abc.ABC):
    """An open connection to one endpoint's host. Use it as a context manager."""

    #: "posix" or "windows": the remote platform, which decides quoting and path rules.
    platform: str = "posix"
    #: Host name for messages and probes ("localhost" for local connections).
    host: str = "localhost"
    #: True when the transport skips TLS verification (``*_insecure``).
    insecure: bool = False
    #: How commands marked ``privileged`` run: None (as the login account, which already has the
    #: rights: root over ssh, the gateway user locally) or "sudo" (the ssh transport's ``--sudo``).
    escalation: str | None = None

    # -- commands -----------------------------------------------------------------------------
    @abc.abstractmethod
    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = 120,
        env: Mapping[str, str] | None = None,
        check: bool = False,
        privileged: bool = False,
    ) -> CommandResult:
        """Run ``argv`` (program and arguments, each passed as data, never parsed by a shell).

        With ``check=True`` a non-zero exit raises :class:`CommandFailed` with stderr.
        Secrets go through ``stdin`` or ``env``, never through argv. Drivers pass
        ``privileged=True`` for a command that needs root on a server (a config test, a reload,
        a service start/stop): with :attr:`escalation` "sudo" it runs as ``sudo -n -- argv``;
        otherwise exactly as an unprivileged command. File writes need no mark: a transport
        with escalation falls back to it by itself where the account may not write.
        """

    def run_powershell(
        self,
        template: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = 120,
        secret_params: Mapping[str, Any] | None = None,
    ) -> CommandResult:
        """Run a fixed PowerShell template (first line ``# tlsgate:<name>``); ``params`` reach it
        as ``$P`` (decoded JSON, carried in the script), ``secret_params`` (passwords, key bytes)
        as ``$S`` through standard input, never on the remote command line. See
        :mod:`tlsgate.transports.windows`."""
        raise OperationError(f"{self.host}: PowerShell is only available on Windows hosts")

    # -- files --------------------------------------------------------------------------------
    @abc.abstractmethod
    def read_file(self, path: str) -> bytes: ...

    @abc.abstractmethod
    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        """Atomically replace (or create) ``path`` with ``data`` and permission ``mode``."""

    def write_file_if(self, path: str, data: bytes, *, mode: int = 0o644, expect: bytes | None) -> None:
        """Like :meth:`write_file`, but refuse (:class:`FileChanged`, nothing written) when
        ``path`` no longer holds ``expect`` (None: must not exist). Transports that can compare
        just before their rename override this; this default compares just before the write."""
        current = self.read_file(path) if self.exists(path) else None
        if current != expect:
            raise FileChanged(self.host, path)
        self.write_file(path, data, mode=mode)

    @contextlib.contextmanager
    def cached_reads(self) -> Iterator[None]:
        """Within the block the transport may answer a ``read_file`` or ``stat`` of a file it
        already read or stat'ed in the block from memory, until the next change made through
        this connection (any write, rename, remove, mkdir, chown or mtime change), after which
        the next read goes to the host again; after a command or tunnel nothing is kept for the
        rest of the block (what it started may change files later, and waits poll them), and
        kernel views (/proc, /sys, /dev) never are. So a read after a write is always a read of
        the host's file, and a write's late "unchanged?" check always compares the host's file. A change made on the host by someone else is not seen by a repeated
        read within the block; the core opens the block for one install (its discovery, the
        driver's load and backup, the read-back, the re-discovery), where such a change is
        still caught by the write's late check. This default caches nothing."""
        yield

    def realpath(self, path: str) -> str:
        """The file ``path`` finally names, through every symbolic link (``path`` itself when
        it is not a link, or the platform has none). Writes go there, so a link stays a link."""
        if self.platform != "posix":
            return path  # Windows: no link resolution here (NTFS links in configs are rare)
        res = self.run(["readlink", "-f", "--", path])
        out = res.stdout.rstrip("\n") if res.ok else ""
        return out if out.startswith("/") and "\n" not in out else path

    def open_socket(self, host: str, port: int, *, timeout: float = 10.0) -> Any:
        """A TCP stream to ``host:port`` as seen from the endpoint's host (a service that only
        answers there, such as Tomcat's Manager on its loopback connector): locally a socket, over
        ssh a ``direct-tcpip`` channel (sshd's port forwarding). It has ``sendall``, ``recv``,
        ``makefile`` and ``close``. OperationError when the transport cannot."""
        raise OperationError(f"{self.host}: this connection cannot open a TCP stream on the endpoint's host")

    def sudo_allows(self, argv: Sequence[str]) -> bool | None:
        """Whether :attr:`escalation` would let ``argv`` run (``sudo -n -l``); None without one."""
        return None

    def write_needs_privilege(self, path: str) -> bool:
        """Whether :meth:`write_file` of ``path`` would go through :attr:`escalation` (shown by
        ``--dry-run`` plans and ``tls test``)."""
        return False

    @abc.abstractmethod
    def stat(self, path: str) -> FileStat | None:
        """File facts, or None when ``path`` does not exist."""

    @abc.abstractmethod
    def remove(self, path: str) -> None:
        """Remove a file; a missing file is not an error."""

    @abc.abstractmethod
    def rename(self, src: str, dst: str) -> None:
        """Rename, replacing ``dst`` atomically if it exists."""

    @abc.abstractmethod
    def listdir(self, path: str) -> list[str]:
        """Names (not paths) in a directory."""

    @abc.abstractmethod
    def makedirs(self, path: str, *, mode: int = 0o755) -> None: ...

    def chown_like(self, path: str, reference: str) -> None:  # noqa: B027 - optional
        """Give ``path`` the owner and group of ``reference`` where the platform has them."""

    def set_mtime(self, path: str, mtime: float) -> None:
        """Give ``path`` its modification time back (a restored file), best effort: ``touch -m``
        on POSIX hosts, nothing elsewhere. Transports that can do better override it."""
        if self.platform == "posix":
            self.run(["touch", "-m", "-d", f"@{mtime:.6f}", "--", path])

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return self.read_file(path).decode(encoding, errors="surrogateescape")

    def glob(self, pattern: str) -> list[str]:
        """Paths matching a shell glob (``*``, ``?``, ``[...]``), sorted, as nginx/Apache include."""
        import fnmatch
        import re

        p = self.path
        if not any(ch in pattern for ch in "*?["):
            return [pattern] if self.exists(pattern) else []
        head, tail = p.split(pattern)
        dirs = self.glob(head) if any(ch in head for ch in "*?[") else [head]
        # fnmatchcase's own test, compiled once (per name it looked its pattern up again: a
        # third of the walk of an Include matching 10,000 files)
        match = re.compile(fnmatch.translate(tail)).match
        out: list[str] = []
        for d in dirs:
            try:
                names = self.listdir(d)
            except OSError:
                continue
            except OperationError:
                # a transport that reports a missing directory as an OperationError (SFTP): a
                # glob under a directory that does not exist matches nothing, as it does locally
                # (IncludeOptional dir/*.conf, include dir/*); other failures stay errors
                if self.exists(d):
                    raise
                continue
            out += [p.join(d, n) for n in names if match(n) and not n.startswith(".")]
        return sorted(out)

    @property
    def path(self) -> ModuleType:
        """``posixpath`` or ``ntpath``, for joining and splitting remote paths."""
        return ntpath if self.platform == "windows" else posixpath

    def which(self, program: str) -> str | None:
        """The full path of ``program`` on the remote PATH, or None."""
        if self.platform == "windows":
            res = self.run_powershell(
                "$c = Get-Command -ErrorAction SilentlyContinue $P.name; if ($c) { $c.Source }",
                {"name": program},
            )
        else:
            res = self.run(["sh", "-c", 'command -v -- "$1"', "sh", program])
        out = res.stdout.strip()
        return out.splitlines()[0] if res.ok and out else None

    def is_admin(self) -> bool:
        """Whether commands run as root / a member of Administrators."""
        if self.platform == "windows":
            res = self.run_powershell(
                "([Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent())"
                ".IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)"
            )
            return res.stdout.strip().lower() == "true"
        res = self.run(["id", "-u"])
        return res.ok and res.stdout.strip() == "0"

    def systemd_running(self) -> bool:
        """Whether systemd is PID 1 and answering on this host."""
        if self.platform == "windows":
            return False
        res = self.run(["sh", "-c", "test -d /run/systemd/system && command -v systemctl >/dev/null"])
        return res.ok

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:  # noqa: B027 - optional
        """Release the connection."""

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def check(self, result: CommandResult, what: str | None = None) -> CommandResult:
        """Raise CommandFailed unless ``result`` exited 0."""
        if not result.ok:
            detail = (result.stderr or result.stdout).strip().splitlines()
            tail = detail[-1] if detail else f"exit status {result.exit_code}"
            if "FullyQualifiedErrorId" in result.stderr:  # a PowerShell error record: its message and id
                from .transports.windows import error_detail

                tail = error_detail(result.stderr, result.exit_code)
            raise CommandFailed(
                f"{self.host}: {what or result.argv[0]} failed: {tail}",
                exit_code=result.exit_code,
                stdout=result.stdout,
                stderr=result.stderr,
            )
        return result
