"""The install transaction every driver uses: back up, write atomically, check, restore.

    with Transaction(connection, dry_run=dry_run) as tx:
        tx.write(key_path, bundle.key_pem(), mode=0o600)   # backs up the old file first
        tx.write(conf_path, edited_config)
        tx.run(["nginx", "-t"], what="nginx config test")   # non-zero exit -> rollback
        tx.on_rollback(lambda: conn.run(["nginx", "-s", "reload"]))
        tx.run(["nginx", "-s", "reload"], what="nginx reload")
        expect_served(...)                                     # mismatch -> rollback
    result = tx.result(nodes=..., verified=True)

Leaving the block with an exception undoes the steps last-in-first-out, from one journal: each
file the transaction changed is restored (a file it created is removed) and each ``tx.undo(fn)``
action runs, newest first; ``on_rollback`` actions (reload the restored config, start the server
again) run last, after every file is back. Then :class:`OperationError` is raised with
``rolled_back=True`` and the original reason (a Ctrl-C is re-raised as it is, after the undo).
With ``dry_run=True`` nothing is written or run: every step is recorded as a :class:`PlanStep`
for ``--dry-run``.

A driver whose changes are API calls rather than files (a load balancer's REST API) journals its
own undo steps and keeps a durable copy of what it replaces::

    with Transaction(conn, dry_run=dry_run, label="F5 install") as tx:
        conn.post(".../sys/crypto/cert", new_object)
        tx.undo(lambda: conn.delete(new_object_path), f"delete {new_object_path}")
        tx.save_backup(profile_path, old_profile_json)       # the job's encrypted backup copy
        conn.patch(profile_path, new_profile)
        tx.undo(lambda: conn.patch(profile_path, old_profile), f"repoint {profile_path}")

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

import contextlib
import contextvars
import shlex
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from .connection import Connection, temp_name
from .errors import FileChanged, OperationError, TlsgateError
from .models import CommandResult, InstallResult, PlanStep

if TYPE_CHECKING:
    from .bundle import CertificateBundle


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
    mtime: float | None = None  # restored with the content (pending-change checks)


_UNSET: Any = object()


class Transaction:
    """Backup + atomic writes + checks + automatic restore over any :class:`Connection`."""

    def __init__(self, connection: Connection, *, dry_run: bool = False, label: str = "install") -> None:
        self.connection = connection
        self.dry_run = dry_run
        self.label = label
        self._originals: dict[str, _Original] = {}
        self._real: dict[str, str] = {}
        #: One journal, undone last-in-first-out: ("file", path) or ("undo", what, action).
        self._journal: list[tuple[str, str, Callable[[], Any] | None]] = []
        #: ``on_rollback`` actions: they belong below every journal entry (run after all is undone).
        self._final: int = 0
        self._backup_refs: list[str] = []
        self.plan: list[PlanStep] = []
        self.written: list[str] = []
        self.messages: list[str] = []
        self.rolled_back = False
        self.restore_errors: list[str] = []
        self.restore_notes: list[str] = []

    @staticmethod
    @contextlib.contextmanager
    def backups_to(sink: BackupSink | None) -> Iterator[None]:
        """Within the block, every transaction keeps its durable backups in ``sink`` (the core
        does this around each job; an embedding application or a plugin's test can too)."""
        token = current_backup_sink.set(sink)
        try:
            yield
        finally:
            current_backup_sink.reset(token)

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
        original = _Original(path, data, st.mode if st else None, mtime=st.mtime if st else None)
        sink = current_backup_sink.get()
        if sink is not None and not self.dry_run:
            original.reference = sink.save(self.connection.host, path, data, original.mode)
        self._originals[path] = original
        self._journal.append(("file", path, None))
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
            detail = detail or f"mode {mode:o}"
            sudo = self.connection.write_needs_privilege(real)
            if sudo:
                detail += f", via {self.connection.escalation} install + mv"
            self.plan.append(PlanStep("write" if not existed else "replace", real, detail, privileged=sudo))
            return
        original = self._originals[real]
        if base is not _UNSET and base != original.data and not original.wrote:
            if first_touch:
                self._journal.remove(("file", real, None))
            raise FileChanged(self.connection.host, real)
        expect = original.written if original.wrote else original.data
        try:
            self.connection.write_file_if(real, data, mode=mode, expect=expect)
        except Exception:
            if first_touch:
                # write_file is atomic: when it fails, ``path`` is as it was, so there is nothing to
                # restore (and no "restore incomplete" alarm when the connection itself is gone).
                self._journal.remove(("file", real, None))
            raise
        except BaseException:
            # Ctrl-C (or SystemExit) may land after the rename: the entry stays, and the
            # rollback restores the file unless it still holds the original
            raise
        original.written, original.wrote = data, True
        self.written.append(real)

    def makedirs(self, path: str) -> None:
        """Create a directory (and its parents) unless it exists; only planned in a dry run. It
        stays after a rollback: an empty directory is harmless, and another install may share it."""
        if not self.connection.exists(path) and self.step("mkdir", path):
            self.connection.makedirs(path)

    def write_pem(self, bundle: CertificateBundle, *, key: str, cert: str, chain: str | None = None) -> None:
        """Write a web server's PEM files: the private key (0600), the leaf with its chain (0644)
        and, for servers that read the chain from a file of its own, the chain (check first that
        the key belongs to the leaf: :func:`tlsgate.plugin.key_matches`)."""
        self.write(key, bundle.key_pem(), mode=0o600, detail="private key, mode 600")
        self.write(cert, bundle.fullchain_pem(), mode=0o644, detail="certificate + chain")
        if chain is not None:
            self.write(chain, bundle.chain_pem(), mode=0o644, detail="chain")

    def relink(self, link: str, target: str, *, detail: str = "") -> None:
        """Point the symbolic link ``link`` at ``target`` (POSIX; a new link renamed over the old
        one, so the server never finds it missing); the old target comes back on rollback."""
        c = self.connection
        res = c.run(["readlink", "--", link])
        if not res.ok or not res.stdout.strip():
            raise OperationError(f"{link} is not a symbolic link")
        old = res.stdout.rstrip("\n")
        if not self.step("relink", link, detail or f"-> {target} (was -> {old})"):
            return

        def point(to: str) -> None:
            tmp = c.path.join(c.path.dirname(link), temp_name(".link"))
            c.check(c.run(["ln", "-s", "--", to, tmp], privileged=True), f"ln -s {to}")
            moved = c.run(["mv", "-f", "-T", "--", tmp, link], privileged=True)
            if not moved.ok:
                c.run(["rm", "-f", "--", tmp], privileged=True)
            c.check(moved, f"mv over {link}")

        point(target)
        self._real.pop(link, None)
        self.undo(lambda: (point(old), self._real.pop(link, None)), f"point {link} at {old} again")

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
        explain: Callable[[CommandResult], str] | None = None,
        privileged: bool = False,
    ) -> CommandResult | None:
        """Run a step's command; with ``check`` a failure aborts (and so restores): an
        OperationError ``"<what> failed: <explain(result)>"`` when ``explain`` is given (the
        server's own error lines), else :class:`CommandFailed` with the last line of output.
        In a dry run the command is only added to the plan and None is returned.
        ``privileged``: see :meth:`Connection.run`; the plan says when the command would run
        under sudo."""
        if self.dry_run:
            escalation = self.connection.escalation if privileged else None
            shown = shlex.join(str(a) for a in argv)  # quoted as a shell would
            target = shown if escalation is None else f"{escalation} {shown}"
            self.plan.append(PlanStep("run", target, what or "", privileged=privileged,
                                      argv=tuple(str(a) for a in argv)))
            return None
        result = self.connection.run(argv, stdin=stdin, timeout=timeout, env=env, privileged=privileged)
        if check and explain is not None and not result.ok:
            raise OperationError(f"{what or argv[0]} failed: {explain(result)}")
        if check:
            self.connection.check(result, what)
        return result

    def step(self, action: str, target: str, detail: str = "") -> bool:
        """Record a step for the plan. Returns True when the caller should really do it."""
        if self.dry_run:
            self.plan.append(PlanStep(action, target, detail))
            return False
        return True

    def undo(self, action: Callable[[], Any], what: str = "") -> None:
        """Journal how to undo the step just done (delete the object just created, repoint the
        profile just changed). On failure the journal runs newest first, files included; an
        undo that raises is reported (``RESTORE INCOMPLETE``) and the rest still runs."""
        if not self.dry_run:
            self._journal.append(("undo", what, action))

    def on_rollback(self, action: Callable[[], Any], what: str = "") -> None:
        """Run ``action`` once everything else is undone and every file restored (reload the
        old config, start the server again): an undo step of the transaction's start."""
        if not self.dry_run:
            self._journal.insert(self._final, ("undo", what, action))
            self._final += 1

    def save_backup(self, target: str, data: bytes, mode: int | None = None) -> str:
        """Keep a durable copy of something the driver replaces that is not a file written with
        :meth:`write` (a profile's old settings read from an API): to the job's encrypted backup
        store when the core runs a job. Returns the reference listed in the result's backups."""
        sink = current_backup_sink.get()
        reference = target
        if sink is not None and not self.dry_run:
            reference = sink.save(self.connection.host, target, data, mode)
        self._backup_refs.append(reference)
        return reference

    # -- outcome ------------------------------------------------------------------------------
    def rollback(self) -> None:
        """Undo the journal last-in-first-out: restore each changed file, run each undo action."""
        while self._journal:
            kind, what, action = self._journal.pop()
            if kind == "undo":
                try:
                    action()  # type: ignore[misc]
                except Exception as exc:  # noqa: BLE001 - report, keep going
                    self.restore_errors.append(f"{what or 'undo action'}: {exc}")
                continue
            original = self._originals[what]
            path = what
            try:
                current = self.connection.read_file(path) if self.connection.exists(path) else None
                if current == original.data:
                    if original.wrote and current is not None:
                        # the job wrote the same bytes again (the certificate the file already
                        # named): the content is as it was, the mtime is not
                        self._restore_mtime(path, original.mtime)
                    continue
                if original.wrote and current != original.written and original.data is not None:
                    # another writer, or a damaged read-back: the original goes back all the
                    # same (the job's backup is the known state), and the message says so
                    self.restore_notes.append(f"{path} no longer held what this job wrote")
                if original.data is None:
                    self.connection.remove(what)
                else:
                    self.connection.write_file_if(path, original.data, mode=original.mode or 0o644,
                                                  expect=current)
                    self._restore_mtime(path, original.mtime)
            except Exception as exc:  # noqa: BLE001 - keep restoring the rest, report all
                self.restore_errors.append(f"{what}: {exc}")
        self._final = 0
        self.rolled_back = True

    def _restore_mtime(self, path: str, mtime: float | None) -> None:
        """A restored file gets its old mtime back, as it was: a server's own "changed since I
        loaded it" check (and tlsgate's pending-change check) must not see a change."""
        if mtime is not None:
            self.connection.set_mtime(path, mtime)

    @property
    def backups(self) -> list[str]:
        return [o.reference or o.path for o in self._originals.values()] + self._backup_refs

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
        if not isinstance(exc, Exception):
            return  # Ctrl-C, SystemExit: undone, then re-raised as they are
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
