"""What an install may do on purpose, and the two checks every web-server driver shares.

The core sets an :class:`InstallPolicy` around each install (``tls install --apply-pending``,
``--allow-name-mismatch``, and the files tlsgate itself wrote on this endpoint before, read from
the inventory's audit log); a driver reads it with :func:`install_policy` and calls:

* :func:`require_names_covered` when it has chosen its nodes: every name of a chosen node must be
  covered by the leaf's SANs (RFC 6125 wildcards, :func:`tlsgate.certs.covers`), else
  :class:`ValidationError` (exit 2) listing the uncovered names, unless the operator allowed it;
* :func:`refuse_pending` before it changes anything: files of the running configuration (as the
  server's own dump lists them) modified after the running master / JVM started (or, after a
  reload, after its current workers were spawned: :func:`loaded_since`) are changes the server
  has not loaded, and a reload or restart would apply them too. tlsgate's own earlier writes
  (path and the mtime it left) and the pending files it applied on purpose do not count.

Own writes are recorded by the core, not the driver: after an install the core stats each file
the transaction wrote and keeps ``{path: mtime}`` in the audit entry's ``details.file_mtimes``; a
file whose mtime is still the one tlsgate left is tlsgate's, a later edit by anyone else changes it.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from .errors import OperationError, ValidationError

if TYPE_CHECKING:
    from .bundle import CertificateBundle
    from .connection import Connection
    from .models import Node

#: Clock granularity between a process start (/proc: ticks since boot + btime, whole seconds)
#: and a file's mtime: a file written up to this long after the start counts as loaded.
START_SLACK = 1.0


@attrs.frozen
class InstallPolicy:
    apply_pending: bool = False
    allow_name_mismatch: bool = False
    #: files tlsgate wrote on this endpoint earlier: path -> the mtime it left
    own_writes: Mapping[str, float] = attrs.field(factory=dict)
    #: filled by :func:`refuse_pending` with ``--apply-pending``: the pending files this install
    #: applies (path -> mtime); once the install succeeds the server has loaded them, so the core
    #: records them with tlsgate's own writes
    applied: dict[str, float] = attrs.field(factory=dict)


_current: contextvars.ContextVar[InstallPolicy | None] = contextvars.ContextVar("tlsgate_install_policy",
                                                                                 default=None)


def install_policy() -> InstallPolicy:
    """The policy of the install that is running (defaults outside one)."""
    return _current.get() or InstallPolicy()


@contextlib.contextmanager
def policy(value: InstallPolicy) -> Iterator[None]:
    token = _current.set(value)
    try:
        yield
    finally:
        _current.reset(token)


def node_names(node: Node, *, aliases: bool = True) -> list[str]:
    """The host names a node answers for (wildcard server names stay; catch-alls and regexes do
    not); ``aliases``: its aliases are names too (see ``EndpointType.aliases_are_names``)."""
    out = []
    for name in (node.name, *(node.alias if aliases else ())):
        name = name.strip()
        if not name or name in ("_", "*", "_default_", "localhost") or name.startswith("~") or "$" in name:
            continue
        if name.replace(".", "").isdigit() or ":" in name:  # an address, not a name
            continue
        if any(ch.isspace() or ch in "/\\|" for ch in name):  # an F5 object path, an IIS site name
            continue
        # nginx's ".example.org" answers example.org and every name under it
        for one in (name[1:], "*" + name) if name.startswith(".") and len(name) > 1 else (name,):
            if one not in out:
                out.append(one)
    return out


def uncovered_names(bundle: CertificateBundle, names: Iterable[str]) -> list[str]:
    return [n for n in dict.fromkeys(names) if not _covers(bundle, n)]


def _covers(bundle: CertificateBundle, name: str) -> bool:
    if bundle.covers(name):
        return True
    # a wildcard server name (nginx "*.example.org") is covered by the same wildcard SAN only
    return name.startswith("*.") and name.lower() in {n.lower() for n in bundle.names}


def require_names_covered(bundle: CertificateBundle, nodes: Sequence[Node]) -> list[str]:
    """Refuse (ValidationError, exit 2) when a chosen node answers for a name the leaf does not
    cover; with ``--allow-name-mismatch`` return the uncovered names instead (for a message)."""
    names = [n for node in nodes for n in node_names(node)]
    missing = uncovered_names(bundle, names)
    if missing and not install_policy().allow_name_mismatch:
        raise ValidationError(
            f"the certificate ({', '.join(bundle.names) or bundle.subject}) does not cover "
            f"{', '.join(missing)} served by the chosen nodes; give a certificate that does, or "
            "--allow-name-mismatch on purpose",
            option="--allow_name_mismatch",
        )
    return missing


def process_start_time(connection: Connection, pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), from ``/proc/<pid>/stat`` (field 22, clock
    ticks since boot) and ``btime`` of ``/proc/stat``; None when /proc cannot tell."""
    return _start_times(connection, [pid]).get(pid)


def _start_times(connection: Connection, pids: Sequence[int]) -> dict[int, float]:
    script = 'getconf CLK_TCK; grep "^btime " /proc/stat; for p; do cat "/proc/$p/stat" 2>/dev/null; done'
    res = connection.run(["sh", "-c", script, "sh", *map(str, pids)])
    lines = res.stdout.splitlines()
    out: dict[int, float] = {}
    try:
        hz, btime = int(lines[0]), int(lines[1].split()[1])
    except (ValueError, IndexError):
        return out
    for stat in lines[2:]:
        try:
            pid = int(stat.split(" ", 1)[0])
            fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": field 3 is index 0
            out[pid] = btime + int(fields[19]) / hz  # field 22: starttime
        except (ValueError, IndexError):
            continue
    return out


def loaded_since(connection: Connection, pid: int) -> float | None:
    """Since when the server of master ``pid`` runs the configuration it has: the master's start,
    or, when a reload re-spawned its workers (nginx ``-s reload``, httpd graceful), the start of
    its oldest worker (conservative: an old worker still finishing requests makes it earlier)."""
    res = connection.run(["ps", "-o", "pid=", "--ppid", str(pid)])
    children = [int(w) for w in res.stdout.split() if w.isdigit()] if res.ok else []
    times = _start_times(connection, [pid, *children])
    master = times.get(pid)
    if master is None:
        return None
    workers = [t for c, t in times.items() if c != pid]
    return max(master, min(workers)) if workers else master


def pending_files(connection: Connection, files: Iterable[str], since: float) -> list[str]:
    """The files modified after ``since`` that tlsgate did not leave as they are."""
    return list(_pending(connection, files, since))


def _pending(connection: Connection, files: Iterable[str], since: float) -> dict[str, float]:
    own = install_policy().own_writes
    out = {}
    for path, mtime in file_mtimes(connection, list(dict.fromkeys(files))).items():
        if mtime is None or mtime <= since + START_SLACK:
            continue
        if _own(own, path, mtime) or _own(own, _realpath(connection, path), mtime):
            continue  # tlsgate left it so (a server names a file by its symlink, tlsgate writes the target)
        out[path] = mtime
    return out


def file_mtimes(connection: Connection, paths: Sequence[str]) -> dict[str, float | None]:
    """Each path's modification time (None: missing or a directory), with sub-second precision
    where the host's ``stat`` gives it (:func:`_precise_mtimes`), else :meth:`Connection.stat`'s."""
    precise = _precise_mtimes(connection, paths) if getattr(connection, "platform", "posix") == "posix" else {}
    out: dict[str, float | None] = dict(precise)
    for path in paths:
        if path not in out:
            st = connection.stat(path)
            out[path] = None if st is None or st.is_dir else st.mtime
    return {path: out[path] for path in paths}


#: Paths per ``stat`` run of :func:`_precise_mtimes` (well inside any ARG_MAX).
_STAT_BATCH = 256
_STAT_SCRIPT = 'for f; do stat -L -c "%.9Y %f" -- "$f" 2>/dev/null || echo -; done'


def _precise_mtimes(connection: Connection, paths: Sequence[str]) -> dict[str, float | None]:
    """Modification times with sub-second precision, one ``stat`` run per batch of paths (None: a
    directory). SFTP (protocol 3) carries whole seconds only, which widened the pending-change
    check's blind window after a reload to two seconds over ssh: an edit made a second after a
    reload went unnoticed. GNU stat's ``%.9Y`` gives nanoseconds. A path stat could not read
    (missing, or a directory the account cannot search: sudo may) and every path of a host
    without GNU stat (BusyBox, Windows) are left out: callers ask :meth:`Connection.stat`."""
    import stat as stat_mod

    out: dict[str, float | None] = {}
    for start in range(0, len(paths), _STAT_BATCH):
        batch = paths[start:start + _STAT_BATCH]
        try:
            res = connection.run(["sh", "-c", _STAT_SCRIPT, "sh", *batch])
        except Exception:  # noqa: BLE001 - no POSIX shell there: the plain stat path
            return out
        lines = res.stdout.splitlines() if res.ok else []
        if len(lines) != len(batch):
            return out
        found: dict[str, float | None] = {}
        for path, line in zip(batch, lines, strict=True):
            if line == "-":
                continue
            try:
                mtime, raw_mode = line.split()
                found[path] = None if stat_mod.S_ISDIR(int(raw_mode, 16)) else float(mtime)
            except ValueError:
                return out  # not GNU stat's answer
        out.update(found)
    return out


def _own(own: Mapping[str, float], path: str | None, mtime: float) -> bool:
    if path is None or path not in own:
        return False
    recorded = own[path]
    # a whole second: recorded through SFTP's one-second times (before precise times, or a host
    # without GNU stat), so it matches the precise time's second
    return abs(recorded - mtime) < 1e-3 or (float(recorded).is_integer() and recorded == int(mtime))


def _realpath(connection: Connection, path: str) -> str | None:
    res = connection.run(["readlink", "-f", "--", path])
    return res.stdout.strip() or None if res.ok else None


def refuse_pending(connection: Connection, files: Iterable[str], pid: int | None, server: str) -> list[str]:
    """Refuse (OperationError) when the running ``server`` (its master / JVM ``pid``) has not
    loaded some of ``files``, unless ``--apply-pending``; returns the pending files either way."""
    if pid is None:
        return []
    started = loaded_since(connection, pid)
    if started is None or started > time.time() + 60:
        return []
    found = _pending(connection, files, started)
    pending = list(found)
    rules = install_policy()
    if pending and rules.apply_pending:
        rules.applied.update(found)
    elif pending:
        raise OperationError(
            f"{server} (pid {pid}) has not loaded changes made since it last loaded its configuration, in: "
            f"{', '.join(pending)}; "
            "a reload would apply them too. Load or revert them first, or give --apply-pending on purpose"
        )
    return pending
