"""Starting a discovery's first local command before tlsgate itself has started.

``tlsgate tls discover NAME`` spends its first ~0.1 s importing, loading the plugins and opening
the inventory before the driver runs its first command, and a driver's first command is often
the slow one (Apache's ``apachectl -t -D DUMP_...`` takes as long as httpd's own parse: 0.3 s at
10,000 vhosts). So a driver may *offer* that command (:func:`remember`): when it was given on a
``local`` connection in a CLI run of ``tls discover NAME``, it is recorded in tlsgate's cache
directory for that inventory and NAME, and the next such run starts it (:func:`start_for_cli`)
as the CLI's very first step, its output going to private unlinked files. The driver then asks
for it (:func:`take`) instead of running it: it gets the result only when the command line, the
environment and the working directory are exactly those it would use, else the early process is
killed and the driver runs its own.

What is run early is only ever a command this user's tlsgate ran before for that endpoint; the
record is used only when it and its directory belong to this user and nobody else may write
them. Running it early moves the moment it reads its inputs to before the endpoint's lease was
taken: an :class:`Early` therefore carries its start time, and the driver must check with
:meth:`Early.changed_since_start` that nothing the command read changed since then (tlsgate's
own installs replace files, which gives them a new inode change time; ``ctime`` cannot be set
back by ``touch`` or ``cp -p``); if something did, it runs the command again.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

    from .models import CommandResult

FORMAT = 1
#: an inode change up to this long before the early start counts as after it: timestamps come
#: from the kernel's coarse clock (a tick behind) and some file systems keep whole seconds
MARGIN_SECONDS = 2.0
MAX_RECORD_BYTES = 1 << 16

_session: _Session | None = None


class _Session:
    """One CLI run of ``tls discover NAME``: its record file and the command started early."""

    def __init__(self, record: str, ident: str) -> None:
        self.record = record
        self.ident = ident
        self.early: Early | None = None
        self.taken: list[str] | None = None  # the command line of the early run a driver took


class Early:
    """A command started early: ``argv``, its start time, and (``wait``) its result."""

    def __init__(self, argv: list[str], proc: subprocess.Popen[bytes], out: int, err: int, started: float) -> None:
        self.argv = argv
        self.started = started
        self._proc = proc
        self._fds = (out, err)
        self._env = dict(os.environ)
        self._cwd = os.getcwd()
        self._ctimes: dict[str, float | None] = {}

    def finished(self) -> bool:
        """Whether the command has exited (it is not waited for)."""
        return self._proc.poll() is not None

    def matches(self, argv: Sequence[str]) -> bool:
        return list(argv) == self.argv and dict(os.environ) == self._env and os.getcwd() == self._cwd

    def wait(self, timeout: float | None = 120) -> CommandResult:
        """The command's exit status and output (as :meth:`LocalConnection.run` gives them)."""
        import subprocess

        from .errors import OperationError
        from .models import CommandResult

        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise OperationError(f"localhost: {self.argv[0]} did not finish within {timeout} s") from None
        # as LocalConnection.run decodes: stdout keeps non-UTF-8 bytes (Latin-1 paths) exactly
        out = _read_all(self._fds[0]).decode("utf-8", "surrogateescape")
        err = _read_all(self._fds[1]).decode("utf-8", "replace")
        self._close()
        return CommandResult(tuple(self.argv), code, out, err)

    def changed_since_start(self, paths: Iterable[str]) -> bool:
        """Whether any of ``paths`` (files or directories of this machine) is missing or had its
        inode changed since shortly before the command started: then its result may show a state
        from before the endpoint's lease was taken, and the command must run again. A path given
        to :meth:`note` (or asked about before) is judged by its inode time then: the caller
        holds the endpoint's lease from before the first question."""
        limit = self.started - MARGIN_SECONDS
        noted = self._ctimes
        for path in paths:
            ctime = noted[path] if path in noted else noted.setdefault(path, _ctime(path))
            if ctime is None or ctime >= limit:
                return True
        return False

    def note(self, path: str) -> bool:
        """Take ``path``'s inode time now, for :meth:`changed_since_start` (a driver notes the
        files it reads ahead, under the endpoint's lease, while the command still runs; the
        bytes it read before noting are then those the command read). Returns whether it
        changed since shortly before the start: then the result will not be taken, and the
        driver may as well run its own command at once."""
        ctime = self._ctimes[path] = _ctime(path)
        return ctime is None or ctime >= self.started - MARGIN_SECONDS

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._close()

    def _close(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = (-1, -1)


def _ctime(path: str) -> float | None:
    try:
        return os.stat(path).st_ctime
    except OSError:
        return None


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _discover_ref(args: Sequence[str]) -> str | None:
    """NAME of ``tls discover NAME [--json]`` (the single-endpoint form), else None."""
    if len(args) < 3 or args[0] != "tls" or args[1] != "discover":
        return None
    rest = [a for a in args[2:] if a != "--json"]
    if len(rest) != 1 or rest[0].startswith("-"):
        return None
    return rest[0]


def _private(path: str) -> bool:
    """Owned by this user, and no one else may write it."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022  # group and others: no write


def start_for_cli(args: Sequence[str]) -> None:
    """Called first by the CLI: for ``tls discover NAME``, start the command the last such run
    recorded for NAME in this inventory, if any (never raises: this only ever saves time)."""
    global _session
    end()
    ref = _discover_ref(args)
    if ref is None or sys.platform == "win32":
        return
    import binascii
    import json

    try:
        from .declarations import cache_dir

        ident = json.dumps([FORMAT, os.environ.get("TLSGATE_HOME", ""), os.environ.get("TLSGATE_DATABASE_URL", ""),
                            os.geteuid(), ref])
        directory = os.path.join(cache_dir(), "early")
        record = os.path.join(directory, f"discover-{binascii.crc32(ident.encode()):08x}.json")
        _session = _Session(record, ident)
        if not (_private(directory) and _private(record)):
            return
        with open(record, "rb") as fh:
            data = json.loads(fh.read(MAX_RECORD_BYTES))
        argv = data.get("argv") if isinstance(data, dict) and data.get("ident") == ident else None
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            return
        _session.early = _spawn(argv, directory)
    except (OSError, ValueError):
        return


def _spawn(argv: list[str], directory: str) -> Early | None:
    import subprocess

    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fds = []
    try:
        for what in ("out", "err"):
            path = os.path.join(directory, f".{what}-{os.getpid()}-{os.urandom(6).hex()}")
            fds.append(os.open(path, flags, 0o600))
            os.unlink(path)  # read through the descriptor only; nothing is left behind
        started = time.time()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fds[0], stderr=fds[1])
    except OSError:
        for fd in fds:
            os.close(fd)
        return None
    import atexit

    early = Early(argv, proc, fds[0], fds[1], started)
    atexit.register(early.kill)  # never left running when nobody took it
    return early


def end() -> None:
    """The CLI command is over: an early command nobody took is killed, nothing more is recorded."""
    global _session
    session, _session = _session, None
    if session is not None and session.early is not None:
        session.early.kill()


def take(argv: Sequence[str]) -> Early | None:
    """The early run of ``argv`` in this process (once), or None: none was started, or it was
    another command line or environment (that one is killed)."""
    if _session is None or _session.early is None:
        return None
    early, _session.early = _session.early, None
    if early.matches(argv):
        _session.taken = early.argv
        return early
    early.kill()
    return None


def remember(argv: Sequence[str]) -> None:
    """Offer ``argv`` (a command the driver just ran on a ``local`` connection, read-only, its
    first and slowest) to be started early by the next ``tls discover`` of this endpoint. Only
    in a CLI run of ``tls discover NAME``; elsewhere nothing happens. Failures are ignored."""
    if _session is None or _session.taken == list(argv):
        return  # not a CLI discovery, or already the recorded command
    import json

    body: dict[str, Any] = {"ident": _session.ident, "argv": [str(a) for a in argv]}
    try:
        directory = os.path.dirname(_session.record)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        tmp = f"{_session.record}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            os.write(fd, json.dumps(body).encode())
        finally:
            os.close(fd)
        os.replace(tmp, _session.record)
    except OSError:
        return
