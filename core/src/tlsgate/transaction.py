"""The install transaction every driver uses: back up, write atomically, check, restore.

    with Transaction(connection, dry_run=dry_run) as tx:
        tx.write(key_path, bundle.key_pem(), mode=0o600)   # backs up the old file first
        tx.write(conf_path, edited_config)
        tx.run(["nginx", "-t"], what="nginx config test")   # non-zero exit -> rollback
        tx.on_rollback(lambda: conn.run(["nginx", "-s", "reload"]))
        tx.run(["nginx", "-s", "reload"], what="nginx reload")
        expect_served(...)                                     # mismatch -> rollback
    result = tx.result(nodes=..., verified=True)

Leaving the block with an exception restores every file the transaction changed (or removes the
files it created), in reverse order, runs the ``on_rollback`` actions (reload the restored
config, start the server again), and raises :class:`OperationError` with ``rolled_back=True``
and the original reason. With ``dry_run=True`` nothing is written or run: every step is recorded
as a :class:`PlanStep` for ``--dry-run``.

Paths are resolved through symbolic links first (``Connection.realpath``): the target is backed
up, written and restored, so ``sites-enabled/x.conf -> ../sites-available/x.conf`` or a keystore
path that is a link stays a link, in an install and in a rollback.

No lost updates: every replace is ``write_file_if`` against the content the transaction backed
up (or, with ``base=``, the content the driver parsed), compared just before the rename; a file
someone changed meanwhile is not overwritten (:class:`FileChanged`, so the job rolls back). A
rollback that finds a file no longer holding what the job wrote restores it and says so.

Backups live in memory for the restore and, when the core runs a job, also on the gateway in
``$TLSGATE_HOME/backups/<job>/`` encrypted with the master key (a private key is a secret at rest
too), so an operator can recover even if the gateway dies mid-install. Backups are never written
next to the originals: an ``include conf.d/*`` would load them.
"""

from __future__ import annotations

import contextvars
import shlex
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Protocol

import attrs

from .connection import Connection
from .errors import FileChanged, OperationError, TlsgateError
from .models import CommandResult, InstallResult, PlanStep


class BackupSink(Protocol):
    """Where the core keeps durable copies of what a job replaces (set per job by the core)."""

    def save(self, host: str, path: str, data: bytes | None, mode: int | None) -> str:
        """Store the original content (None: the file did not exist); return a reference."""
        ...


#: The current job's backup sink; the core sets it around each install.
current_backup_sink: contextvars.ContextVar[BackupSink | None] = contextvars.ContextVar(
    "tlsgate_backup_sink", default=None
)


@attrs.define
class _Original:
    path: str
    data: bytes | None  # None: the file did not exist before
    mode: int | None
    reference: str | None = None
    written: bytes | None = None  # what this job last wrote there (None: not written yet)
    wrote: bool = False


_UNSET: Any = object()


class Transaction:
    """Backup + atomic writes + checks + automatic restore over any :class:`Connection`."""

    def __init__(self, connection: Connection, *, dry_run: bool = False, label: str = "install") -> None:
        self.connection = connection
        self.dry_run = dry_run
        self.label = label
        self._originals: dict[str, _Original] = {}
        self._real: dict[str, str] = {}
        self._order: list[str] = []
        self._rollback_actions: list[tuple[str, Callable[[], Any]]] = []
        self.plan: list[PlanStep] = []
        self.written: list[str] = []
        self.messages: list[str] = []
        self.rolled_back = False
        self.restore_errors: list[str] = []
        self.restore_notes: list[str] = []

    # -- steps --------------------------------------------------------------------------------
    def resolve(self, path: str) -> str:
        """The file ``path`` names through symbolic links (asked once per path)."""
        if path not in self._real:
            self._real[path] = self.connection.realpath(path)
        return self._real[path]

    def snapshot(self, path: str) -> bytes | None:
        """Back up ``path`` (once) before it is changed by any means; return its old content."""
        path = self.resolve(path)
        if path in self._originals:
            return self._originals[path].data
        st = self.connection.stat(path)
        data = self.connection.read_file(path) if st is not None else None
        original = _Original(path, data, st.mode if st else None)
        sink = current_backup_sink.get()
        if sink is not None and not self.dry_run:
            original.reference = sink.save(self.connection.host, path, data, original.mode)
        self._originals[path] = original
        self._order.append(path)
        return data

    def write(
        self, path: str, data: bytes, *, mode: int | None = None, detail: str = "", base: bytes | None = _UNSET
    ) -> None:
        """Back up then atomically replace ``path`` (through symbolic links: the target is
        written). ``mode`` defaults to the old file's mode (0644 for a new file); pass 0o600 for
        private keys. ``base``: the content the new ``data`` was computed from (an edited
        config); when the file no longer holds it, nothing is written (:class:`FileChanged`)."""
        real = self.resolve(path)
        if real != path:
            detail = f"{detail + ' ' if detail else ''}(through the link {path})"
        first_touch = real not in self._originals
        old = self.snapshot(real) if not self.dry_run else None
        existed = self.connection.exists(real) if self.dry_run else old is not None
        if mode is None:
            prev = self._originals.get(real)
            mode = prev.mode if prev is not None and prev.mode is not None else 0o644
        if self.dry_run:
            self.plan.append(PlanStep("write" if not existed else "replace", real, detail or f"mode {mode:o}"))
            return
        original = self._originals[real]
        if base is not _UNSET and base != original.data and not original.wrote:
            if first_touch:
                self._order.remove(real)
            raise FileChanged(self.connection.host, real)
        expect = original.written if original.wrote else original.data
        try:
            self.connection.write_file_if(real, data, mode=mode, expect=expect)
        except BaseException:
            if first_touch:
                # write_file is atomic: when it fails, ``path`` is as it was, so there is nothing to
                # restore (and no "restore incomplete" alarm when the connection itself is gone).
                self._order.remove(real)
            raise
        original.written, original.wrote = data, True
        self.written.append(real)

    def remove(self, path: str) -> None:
        if self.dry_run:
            self.plan.append(PlanStep("remove", path))
            return
        self.snapshot(path)
        real = self.resolve(path)
        self.connection.remove(real)
        self._originals[real].written, self._originals[real].wrote = None, True

    def run(
        self,
        argv: Sequence[str],
        *,
        what: str | None = None,
        check: bool = True,
        stdin: bytes | None = None,
        timeout: float | None = 180,
        env: dict[str, str] | None = None,
    ) -> CommandResult | None:
        """Run a step's command; with ``check`` a failure aborts (and so restores). In a dry run
        the command is only added to the plan and None is returned."""
        if self.dry_run:
            self.plan.append(PlanStep("run", shlex.join(argv), what or ""))
            return None
        result = self.connection.run(argv, stdin=stdin, timeout=timeout, env=env)
        if check:
            self.connection.check(result, what)
        return result

    def step(self, action: str, target: str, detail: str = "") -> bool:
        """Record a step for the plan. Returns True when the caller should really do it."""
        if self.dry_run:
            self.plan.append(PlanStep(action, target, detail))
            return False
        return True

    def on_rollback(self, action: Callable[[], Any], what: str = "") -> None:
        """Run ``action`` after the files are restored (reload the old config, start again)."""
        self._rollback_actions.append((what, action))

    # -- outcome ------------------------------------------------------------------------------
    def rollback(self) -> None:
        """Restore every changed file in reverse order, then run the rollback actions."""
        for path in reversed(self._order):
            original = self._originals[path]
            try:
                current = self.connection.read_file(path) if self.connection.exists(path) else None
                if current == original.data:
                    continue
                if original.wrote and current != original.written and original.data is not None:
                    # another writer, or a damaged read-back: the original goes back all the
                    # same (the job's backup is the known state), and the message says so
                    self.restore_notes.append(f"{path} no longer held what this job wrote")
                if original.data is None:
                    self.connection.remove(path)
                else:
                    self.connection.write_file_if(path, original.data, mode=original.mode or 0o644,
                                                  expect=current)
            except Exception as exc:  # noqa: BLE001 - keep restoring the rest, report all
                self.restore_errors.append(f"{path}: {exc}")
        for what, action in self._rollback_actions:
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - report, keep going
                self.restore_errors.append(f"{what or 'rollback action'}: {exc}")
        self.rolled_back = True

    @property
    def backups(self) -> list[str]:
        return [o.reference or o.path for o in self._originals.values()]

    def result(self, **kwargs: Any) -> InstallResult:
        kwargs.setdefault("files_written", tuple(self.written))
        kwargs.setdefault("backups", tuple(self.backups))
        kwargs.setdefault("plan", tuple(self.plan))
        kwargs.setdefault("dry_run", self.dry_run)
        kwargs.setdefault("messages", tuple(self.messages))
        kwargs.setdefault("rolled_back", self.rolled_back)
        return InstallResult(**kwargs)

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None or self.dry_run:
            return
        self.rollback()
        reason = str(exc) if isinstance(exc, TlsgateError) else f"{type(exc).__name__}: {exc}"
        if self.restore_errors:
            raise OperationError(
                f"{self.label} failed: {reason}; RESTORE INCOMPLETE: " + "; ".join(self.restore_errors),
                rolled_back=False,
            ) from exc
        notes = f" (note: {'; '.join(self.restore_notes)})" if self.restore_notes else ""
        raise OperationError(
            f"{self.label} failed and every change was restored: {reason}{notes}", rolled_back=True
        ) from exc
