"""Fleet jobs: one ``jobs`` row per run (kind, parameters, state, runner), one ``job_items`` row
per endpoint (state, reason, before/after fingerprints, attempts).

Item states: ``pending`` -> ``running`` -> ``changed`` | ``unchanged`` | ``failed`` (the
endpoint's transaction restored it) | ``skipped`` (not started: ``--max-failures`` reached or the
canary failed); ``interrupted``: it was pending or running when its runner died. Job states:
``running``, ``done`` (every item changed/unchanged), ``failed`` (some item failed or was
skipped), ``interrupted``.

A job's runner (this process, or a queue worker) holds ``jobs.holder`` and renews
``jobs.heartbeat``; a running job whose runner is sure to be dead (same gateway, pid gone) or
whose heartbeat is older than the lease TTL is marked interrupted when anyone reads it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from . import leases
from .errors import NotFoundError
from .inventory import actor, storable, stored_id

if TYPE_CHECKING:
    from .inventory import Inventory

ITEM_STATES = ("pending", "running", "changed", "unchanged", "failed", "skipped", "interrupted")
FINAL_OK = ("changed", "unchanged")
RETRYABLE = ("failed", "skipped", "interrupted")


@attrs.frozen
class JobItem:
    id: int
    job_id: int
    endpoint_id: str | None
    endpoint: str
    state: str
    reason: str | None
    before: str | None
    after: str | None
    attempts: int
    gateway: str | None
    started: str | None
    finished: str | None
    details: dict[str, Any]
    #: this item's parameters over the job's (a renewal job: the certificate it installs, the one it replaces)
    params: dict[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class Job:
    id: int
    kind: str
    state: str
    params: dict[str, Any]
    actor: str
    gateway: str | None
    created: str
    started: str | None
    finished: str | None
    holder: str | None
    heartbeat: str | None
    items: tuple[JobItem, ...] = ()

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(ITEM_STATES, 0)
        for item in self.items:
            out[item.state] = out.get(item.state, 0) + 1
        return out

    @property
    def ok(self) -> bool:
        return all(i.state in FINAL_OK for i in self.items)

    def to_json(self, *, items: bool = True) -> dict[str, Any]:
        d = attrs.asdict(self, recurse=False)
        d["counts"] = self.counts()
        d["items"] = [i.to_json() for i in self.items] if items else None
        if not items:
            d.pop("items")
        return d


def _item(r: Any) -> JobItem:
    return JobItem(id=int(r["id"]), job_id=int(r["job_id"]), endpoint_id=r["endpoint_id"], endpoint=r["endpoint_name"],
                   state=r["state"], reason=r["reason"], before=r["before_fp"], after=r["after_fp"],
                   attempts=int(r["attempts"]), gateway=r["gateway"], started=r["started"], finished=r["finished"],
                   details=json.loads(r["details"] or "{}"), params=json.loads(r["params"] or "{}"))


#: a job item to create: (endpoint_id, name, zone) or (endpoint_id, name, zone, item params)
ItemRow = tuple[str, str, str] | tuple[str, str, str, dict[str, Any]]


def create(inventory: Inventory, kind: str, params: dict[str, Any], endpoints: Sequence[ItemRow],
           *, holder: str | None = None) -> int:
    """A new job with one pending item per (endpoint_id, name, zone[, item params]); returns its
    ID. The caller becomes its runner when ``holder`` is given."""
    with inventory.write() as db:
        return insert(db, kind, params, endpoints, holder=holder)


def insert(db: Any, kind: str, params: dict[str, Any], endpoints: Sequence[ItemRow],
           *, holder: str | None = None) -> int:
    """:func:`create` inside the caller's write transaction ``db`` (the job queue defers the
    job's tasks in the same transaction)."""
    now = leases.stamp()
    # RETURNING (SQLite 3.35+, PostgreSQL) rather than lastrowid, which PostgreSQL lacks
    job_id = int(db.execute(
        "INSERT INTO jobs(kind, state, params, actor, gateway, created, started, holder, heartbeat) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (kind, "running", json.dumps(params), actor(), leases.gateway_name(), now, now, holder, now),
    ).fetchone()["id"])
    insert_items(db, job_id, endpoints)
    return job_id


def insert_items(db: Any, job_id: int, endpoints: Sequence[ItemRow]) -> list[int]:
    """Add pending items to a job inside the caller's write transaction; returns their IDs (in
    the order given)."""
    values = [(job_id, row[0], row[1], row[2], json.dumps(row[3]) if len(row) > 3 and row[3] else None)  # type: ignore[misc]
              for row in endpoints]
    db.executemany(
        "INSERT INTO job_items(job_id, endpoint_id, endpoint_name, zone, state, params) "
        "VALUES (?, ?, ?, ?, 'pending', ?)", values)
    if not values:
        return []
    # the newest items of this job are these (one writer at a time: the caller's transaction)
    rows = db.execute("SELECT id FROM job_items WHERE job_id = ? ORDER BY id DESC LIMIT ?", (job_id, len(values)))
    return sorted(int(r["id"]) for r in rows)


def _job_row(inventory: Inventory, job_id: int) -> Any:
    row = inventory.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone() if stored_id(job_id) else None
    if row is None:
        raise NotFoundError(f"no job with ID {job_id} (see: tlsgate job list)")
    return row


def _job(row: Any, items: Iterable[JobItem] = ()) -> Job:
    return Job(id=int(row["id"]), kind=row["kind"], state=row["state"], params=json.loads(row["params"]),
               actor=row["actor"], gateway=row["gateway"], created=row["created"], started=row["started"],
               finished=row["finished"], holder=row["holder"], heartbeat=row["heartbeat"], items=tuple(items))


def get(inventory: Inventory, job_id: int, *, refresh: bool = True) -> Job:
    """A job with its items (a dead runner's unfinished items are marked interrupted first)."""
    if not stored_id(job_id):
        raise NotFoundError(f"no job with ID {job_id} (see: tlsgate job list)")
    if refresh:
        refresh_interrupted(inventory, job_id)
    row = _job_row(inventory, job_id)
    items = [_item(r) for r in inventory.db.execute("SELECT * FROM job_items WHERE job_id = ? ORDER BY id", (job_id,))]
    return _job(row, items)


def header(inventory: Inventory, job_id: int) -> Job:
    """A job without its items (kind, parameters, state, runner)."""
    return _job(_job_row(inventory, job_id))


def item(inventory: Inventory, item_id: int) -> JobItem:
    row = inventory.db.execute("SELECT * FROM job_items WHERE id = ?", (item_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no job item with ID {item_id}")
    return _item(row)


def list_jobs(inventory: Inventory, limit: int | None = None) -> list[Job]:
    if limit:
        rows = inventory.db.execute("SELECT id FROM jobs ORDER BY id DESC LIMIT ?", (int(limit),))
    else:
        rows = inventory.db.execute("SELECT id FROM jobs ORDER BY id DESC")
    ids = [int(r["id"]) for r in rows]
    return [get(inventory, i) for i in reversed(ids)]


def unfinished_rollouts(inventory: Inventory, endpoint_id: str, old_id: int, new_id: int) -> list[int]:
    """The deploy jobs whose item on ``endpoint_id`` installs certificate ``new_id`` over
    ``old_id`` (a renewal's rollout) and did not end changed/unchanged: a later run finishing
    that rollout resumes them (their dead attempts' backup sets are its own)."""
    rows = inventory.db.execute(
        "SELECT job_items.job_id AS job_id, job_items.params AS params FROM job_items "
        "JOIN jobs ON jobs.id = job_items.job_id WHERE job_items.endpoint_id = ? AND jobs.kind = 'deploy' "
        "AND job_items.state NOT IN ('changed', 'unchanged') ORDER BY job_items.id", (endpoint_id,))
    out: list[int] = []
    for r in rows:
        params = json.loads(r["params"] or "{}")
        if params.get("old_certificate_id") == old_id and params.get("certificate_id") == new_id \
                and int(r["job_id"]) not in out:
            out.append(int(r["job_id"]))
    return out


def close_resumed(inventory: Inventory, item: JobItem, job_ids: Sequence[int]) -> None:
    """``item`` (a renewal rollout OLD -> NEW on its endpoint) ended changed/unchanged after
    resuming the dead attempts of ``job_ids``: their failed, skipped or interrupted items of the
    same rollout on that endpoint end ``unchanged`` ("finished by job N"), and such a job whose
    items are now all done is done, so ``job list`` does not show a finished rollout as
    interrupted for ever."""
    now = leases.stamp()
    for job_id in job_ids:
        refresh_interrupted(inventory, job_id)
        rows = inventory.db.execute(
            "SELECT id, params FROM job_items WHERE job_id = ? AND endpoint_id = ? AND state IN "
            "('failed', 'skipped', 'interrupted')", (job_id, item.endpoint_id)).fetchall()
        ids = [int(r["id"]) for r in rows
               if {k: json.loads(r["params"] or "{}").get(k) for k in ("old_certificate_id", "certificate_id")}
               == {k: item.params.get(k) for k in ("old_certificate_id", "certificate_id")}]
        if not ids:
            continue
        with inventory.write(exclusive=False) as db:
            db.executemany("UPDATE job_items SET state = 'unchanged', reason = ?, finished = ? WHERE id = ?",
                           [(f"finished by job {item.job_id}", now, i) for i in ids])
        job = get(inventory, job_id, refresh=False)
        if job.state != "running" and job.ok:
            finish(inventory, job_id)


def queued_rollout(inventory: Inventory, endpoint_id: str, old_id: int) -> tuple[int, int, bool] | None:
    """(job, certificate, queued) of a rollout that replaces ``old_id`` on ``endpoint_id`` and is
    still pending or running under a live runner: a queued job waiting for its zone's worker
    (``queued``), or another run's in-process job. A renewal run does not add a second one over
    it (when it installs an older successor, the next run rolls that one forward)."""
    rows = inventory.db.execute(
        "SELECT job_items.job_id AS job_id, job_items.params AS params, jobs.holder AS holder FROM job_items "
        "JOIN jobs ON jobs.id = job_items.job_id WHERE job_items.endpoint_id = ? AND jobs.kind = 'deploy' "
        "AND jobs.state = 'running' AND job_items.state IN ('pending', 'running') ORDER BY job_items.id",
        (endpoint_id,)).fetchall()
    for r in rows:
        params = json.loads(r["params"] or "{}")
        if params.get("old_certificate_id") == old_id and not refresh_interrupted(inventory, int(r["job_id"])):
            return int(r["job_id"]), int(params.get("certificate_id") or 0), not r["holder"]
    return None


def runner_dead(row: Any) -> bool:
    """True when a running job's runner is gone: on this gateway, its pid; anywhere, a heartbeat
    older than the lease TTL (the runner renews it every TTL/3)."""
    if row["state"] != "running":
        return False
    holder = row["holder"]
    if not holder:
        return False  # a queue-run job: its workers hold the item leases
    if leases.holder_dead(holder):
        return True
    beat = row["heartbeat"]
    if beat:
        limit = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=leases.ttl())
        return beat < leases.stamp(limit)
    return False


def refresh_interrupted(inventory: Inventory, job_id: int) -> bool:
    """Mark a dead runner's job and its unfinished items interrupted; True when it did."""
    row = _job_row(inventory, job_id)
    if not runner_dead(row):
        return False
    now = leases.stamp()
    with inventory.write() as db:
        db.execute("UPDATE job_items SET state = 'interrupted', reason = ?, finished = ? "
                   "WHERE job_id = ? AND state IN ('pending', 'running')",
                   ("the job's runner stopped (killed or lost) before this endpoint finished", now, job_id))
        db.execute("UPDATE jobs SET state = 'interrupted', finished = ?, holder = NULL WHERE id = ? AND state = 'running'",
                   (now, job_id))
    return True


def heartbeat(inventory: Inventory, job_id: int, holder: str) -> bool:
    with inventory.write(durable=False) as db:  # coordination only: see Inventory.write
        cur = db.execute("UPDATE jobs SET heartbeat = ? WHERE id = ? AND holder = ?", (leases.stamp(), job_id, holder))
        return cur.rowcount == 1


def take_over(inventory: Inventory, job_id: int, holder: str, item_ids: Sequence[int]) -> None:
    """Become the runner of a job again (retry): the given items go back to pending."""
    now = leases.stamp()
    with inventory.write() as db:
        db.execute("UPDATE jobs SET state = 'running', holder = ?, heartbeat = ?, finished = NULL WHERE id = ?",
                   (holder, now, job_id))
        db.executemany("UPDATE job_items SET state = 'pending', reason = NULL, finished = NULL WHERE id = ?",
                       [(i,) for i in item_ids])


def start_item(inventory: Inventory, item_id: int) -> None:
    with inventory.write(exclusive=False, durable=False) as db:
        db.execute("UPDATE job_items SET state = 'running', started = ?, finished = NULL, gateway = ?, "
                   "attempts = attempts + 1 WHERE id = ?", (leases.stamp(), leases.gateway_name(), item_id))


def finish_item(inventory: Inventory, item_id: int, state: str, *, reason: str | None = None,
                before: str | None = None, after: str | None = None, details: dict[str, Any] | None = None) -> None:
    assert state in ITEM_STATES
    with inventory.write(exclusive=False) as db:
        db.execute("UPDATE job_items SET state = ?, reason = ?, before_fp = ?, after_fp = ?, finished = ?, details = ? "
                   "WHERE id = ?",
                   (state, storable(reason), before, after, leases.stamp(), json.dumps(details or {}, default=str), item_id))


def skip_items(inventory: Inventory, item_ids: Sequence[int], reason: str) -> None:
    now = leases.stamp()
    with inventory.write(exclusive=False) as db:
        db.executemany("UPDATE job_items SET state = 'skipped', reason = ?, finished = ? WHERE id = ? AND state = 'pending'",
                       [(storable(reason), now, i) for i in item_ids])


def finish(inventory: Inventory, job_id: int) -> Job:
    """Close a job: done when every item changed/unchanged, else failed."""
    job = get(inventory, job_id, refresh=False)
    state = "done" if job.ok else "failed"
    with inventory.write() as db:
        db.execute("UPDATE jobs SET state = ?, finished = ?, holder = NULL WHERE id = ?", (state, leases.stamp(), job_id))
    return get(inventory, job_id, refresh=False)
