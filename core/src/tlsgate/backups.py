"""Backup sets and the install journal: what lets an interrupted install be found and undone.

Every install (not a dry run) gets a backup set ``$TLSGATE_HOME/backups/<ID>/`` (0700): the
originals of every file it replaces, each sealed with the master key (``NNNN.bin``), and
``manifest.json`` (0600) naming the endpoint, the process, the temporary-file tag and each
file. Before the first change the job writes an audit entry ``started`` naming the set (the
journal); the job's final entry (``ok``, ``rolled back``, ``failed``) names it too.

A set whose ``started`` entry has no final entry and whose process is gone is *unfinished*
(kill -9, power loss). The next job on that endpoint finds it: when nothing changed (every
backed-up file still holds its original) it is closed quietly; otherwise the job refuses and
says how to restore it (``tlsgate backup restore ID``) or keep the files as they are
(``tlsgate backup dismiss ID``). The temporaries the dead process left (``.tlsgate-<tag>-*``,
possibly full copies of a new keystore) are removed in both cases.

One exception: a set made by an earlier attempt of the *same job* on the same endpoint (a
``job retry``, or the queue re-running a dead worker's task) is the retry's own unfinished work.
The retry restores its originals (so the endpoint is byte-identical to before the job), closes it
(``restored``, ``retry_of`` naming the job) and goes on with the full install.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from . import crypto
from .connection import TEMP_PREFIX, Connection
from .errors import NotFoundError, OperationError
from .paths import backups_dir

#: audit results that close a journal entry
FINAL = ("ok", "rolled back", "failed", "restored", "dismissed", "interrupted", "script failed")


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:40]


def _proc_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (so a reused pid is not taken for the job)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def process_alive(host: str, pid: int, start: str | None) -> bool:
    """Whether the process that wrote a journal entry still runs (unknowable on another host:
    treated as alive, so a set is never restored under a running job)."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return start is None or _proc_start(pid) in (None, start)


class BackupSet:
    """The per-job :class:`~tlsgate.transaction.BackupSink`: originals sealed on the gateway."""

    def __init__(self, endpoint_name: str, endpoint_id: str | None = None, host: str = "",
                 job_id: int | None = None) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        self.tag = secrets.token_hex(4)
        self.id = f"{stamp}-{_safe(endpoint_name)}"
        self.dir = backups_dir() / self.id
        self.files: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {
            "id": self.id, "endpoint": endpoint_name, "endpoint_id": endpoint_id, "host": host,
            "pid": os.getpid(), "pid_start": _proc_start(os.getpid()), "gateway_host": socket.gethostname(),
            "temp_tag": self.tag, "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "job_id": job_id,
        }

    @property
    def count(self) -> int:
        return len(self.files)

    def open(self) -> None:
        """Create the set and its manifest (before the journal entry names it)."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._write_manifest()

    def save(self, host: str, path: str, data: bytes | None, mode: int | None) -> str:
        if not self.dir.is_dir():  # made by open(), unless the caller skipped it
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        blob = self.dir / f"{len(self.files) + 1:04d}.bin"
        fd = os.open(blob, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(crypto.encrypt(data if data is not None else b"").encode())
            fh.flush()
            os.fsync(fh.fileno())
        self.files.append({"file": blob.name, "host": host, "path": path, "mode": mode, "existed": data is not None})
        self._write_manifest()  # before the caller changes the file
        return f"{host}:{path} -> {blob}"

    def _write_manifest(self) -> None:
        data = json.dumps({**self.info, "files": self.files}, indent=1).encode()
        tmp = self.dir / f".manifest.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.dir / "manifest.json")


@attrs.frozen
class StoredSet:
    """A backup set as found on disk, with its journal state."""

    id: str
    manifest: dict[str, Any]
    state: str  # running, unfinished, ok, rolled back, failed, restored, dismissed, interrupted, unknown

    @property
    def endpoint(self) -> str:
        return str(self.manifest.get("endpoint", ""))

    @property
    def files(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("files", []))

    @property
    def job_id(self) -> int | None:
        """The job (fleet / queue) whose install made the set; None for a lone ``tls install``."""
        value = self.manifest.get("job_id")
        return int(value) if isinstance(value, int) else None

    def original(self, entry: dict[str, Any]) -> bytes | None:
        if not entry.get("existed"):
            return None
        token = (backups_dir() / self.id / entry["file"]).read_text()
        return crypto.decrypt_bytes(token)

    def to_json(self) -> dict[str, Any]:
        m = self.manifest
        return {"id": self.id, "endpoint": self.endpoint, "state": self.state, "started": m.get("started"),
                "pid": m.get("pid"), "gateway_host": m.get("gateway_host"),
                "files": [{"host": f.get("host"), "path": f.get("path"), "existed": f.get("existed")}
                          for f in self.files]}


def _states(journal: Sequence[dict[str, Any]]) -> dict[str, str]:
    """backup ID -> last journal result."""
    out: dict[str, str] = {}
    for entry in journal:
        ref = (entry.get("details") or {}).get("backup")
        if ref:
            out[ref] = entry["result"]
    return out


def load_sets(journal: Sequence[dict[str, Any]], *, open_only: bool = False) -> list[StoredSet]:
    """Every backup set under the home (``open_only``: only those whose journal has no final
    entry), oldest first, with its state from ``journal`` (the audit entries naming a backup)."""
    states = _states(journal)
    out = []
    root = backups_dir()
    if open_only:
        dirs = sorted(root / ref for ref, state in states.items() if state == "started" and (root / ref).is_dir())
    else:
        dirs = sorted(p for p in root.iterdir() if p.is_dir())
    for d in dirs:
        try:
            manifest = json.loads((d / "manifest.json").read_text())
        except (OSError, ValueError):
            manifest = {"id": d.name, "files": []}
        state = states.get(d.name, "unknown")
        if state == "started":
            alive = process_alive(str(manifest.get("gateway_host", "")), int(manifest.get("pid") or 0),
                                  manifest.get("pid_start"))
            state = "running" if alive else "unfinished"
        out.append(StoredSet(d.name, manifest, state))
    return out


def find_set(journal: Sequence[dict[str, Any]], ref: str) -> StoredSet:
    for s in load_sets(journal):
        if s.id == ref:
            return s
    raise NotFoundError(f"no backup set {ref!r} (see: tlsgate backup list)")


def changed_files(conn: Connection, stored: StoredSet) -> list[str]:
    """Files of the set that no longer hold their original content."""
    changed = []
    for entry in stored.files:
        path = entry["path"]
        current = conn.read_file(path) if conn.exists(path) else None
        if current != stored.original(entry):
            changed.append(path)
    return changed


def remove_temporaries(conn: Connection, stored: StoredSet) -> list[str]:
    """Remove the ``.tlsgate-<tag>-*`` temporaries the set's (dead) job left next to its files."""
    tag = stored.manifest.get("temp_tag")
    if not tag:
        return []
    prefix = f"{TEMP_PREFIX}{tag}-"
    removed = []
    for directory in sorted({conn.path.dirname(f["path"]) for f in stored.files}):
        try:
            names = conn.listdir(directory)
        except (OSError, OperationError):
            continue
        for name in names:
            if name.startswith(prefix):
                path = conn.path.join(directory, name)
                conn.remove(path)
                removed.append(path)
    return removed


def restore(conn: Connection, stored: StoredSet) -> list[str]:
    """Put every original of the set back (newest change first); return the paths restored."""
    restored = []
    for entry in reversed(stored.files):
        path = entry["path"]
        original = stored.original(entry)
        current = conn.read_file(path) if conn.exists(path) else None
        if current == original:
            continue
        if original is None:
            conn.remove(path)
        else:
            # compared just before the rename like any job's write: one left mid-restore by a
            # person is not overwritten (the set stays unfinished and says so)
            conn.write_file_if(path, original, mode=entry.get("mode") or 0o644, expect=current)
        restored.append(path)
    return restored


def set_dir(ref: str) -> Path:
    return backups_dir() / ref
