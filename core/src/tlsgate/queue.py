"""The distributed job queue of a PostgreSQL inventory: procrastinate in the same database.

* **Tasks.** A fleet job (``cert deploy``, ``tls verify --all`` ...) is one ``jobs`` row and one
  ``job_items`` row per endpoint; on PostgreSQL each item is one procrastinate task
  ``tlsgate.run_item(job_id, item_id)`` in the queue ``zone:<zone>`` of its endpoint, deferred
  in the SAME transaction that inserts the rows (:func:`defer_items` runs procrastinate's defer on
  the inventory's own connection). The task calls :func:`tlsgate.fleet.run_item`, the code path
  of the in-process runner, so a worker does exactly what the CLI does.
* **Workers.** ``tlsgate worker --zone Z`` (:func:`run_worker`) registers its gateway in the
  ``gateways`` table, heartbeats, and runs the tasks of its zones' queues (plus ``estate``, the
  queue of periodic work) with ``--concurrency`` threads.
* **Dead workers.** A worker killed mid-task stops heartbeating. Every worker sweeps the queues it
  serves: a task still ``doing`` on a worker whose procrastinate heartbeat is older than
  ``TLSGATE_WORKER_STALLED`` seconds is retried (another worker of the zone takes it; the
  endpoint's lease expires meanwhile and its transaction makes a rerun safe) until it has been
  tried ``TLSGATE_TASK_ATTEMPTS`` times (default 3); then its item is marked ``interrupted`` with
  the reason. Every retry is an audit entry (``worker retry``) naming the dead worker.
* **Periodic work.** ``tlsgate.nightly_verify`` (cron ``TLSGATE_VERIFY_CRON``, default
  ``0 3 * * *``) and ``tlsgate.renewal_run`` (``TLSGATE_RENEW_CRON``, default ``30 2 * * *``)
  are procrastinate periodic tasks: every worker runs the deferrer, procrastinate's unique
  periodic-defer record lets exactly one of them enqueue each tick.

procrastinate and psycopg are imported only here, and only when the inventory is a PostgreSQL one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .errors import ValidationError

if TYPE_CHECKING:
    from .api import Gateway

log = logging.getLogger("tlsgate.queue")

TASK_RUN_ITEM = "tlsgate.run_item"
TASK_NOOP = "tlsgate.noop"
ESTATE_QUEUE = "estate"
DEFAULT_ZONE = "default"
_ZONE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def validate_zone(zone: str | None, option: str = "--zone") -> str:
    """A zone name: 1-63 of letters, digits, ``_ . -`` (not first); None means ``default``."""
    if zone is None:
        return DEFAULT_ZONE
    if not _ZONE.fullmatch(zone):
        raise ValidationError("a zone is 1 to 63 letters, digits, '_', '.' or '-' (starting with a letter or digit)",
                              option=option)
    return zone


def zone_queue(zone: str) -> str:
    """The procrastinate queue of a zone."""
    return f"zone:{zone}"


def _env_float(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


def max_attempts() -> int:
    return int(_env_float("TLSGATE_TASK_ATTEMPTS", 3))


# -- schema -------------------------------------------------------------------------------------
def ensure_schema(db: Any) -> None:
    """Create procrastinate's tables in a PostgreSQL inventory that has none yet (inside the
    caller's migration transaction, under the writer lock, so two gateways cannot both do it)."""
    row = db.execute(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() "
        "AND table_name = 'procrastinate_jobs'").fetchone()
    if row[0]:
        return
    from procrastinate.schema import SchemaManager

    db.executescript(SchemaManager.get_schema())


# -- the procrastinate app ----------------------------------------------------------------------
def build_app(connector: Any) -> Any:
    """A procrastinate App on ``connector`` with tlsgate's tasks and periodic tasks."""
    import procrastinate

    app = procrastinate.App(connector=connector, periodic_defaults={"max_delay": 120})
    app.task(name=TASK_RUN_ITEM, pass_context=True)(_run_item_task)
    app.task(name=TASK_NOOP)(_noop_task)
    verify = app.task(name="tlsgate.nightly_verify", queue=ESTATE_QUEUE)(_nightly_verify_task)
    app.periodic(cron=os.environ.get("TLSGATE_VERIFY_CRON", "0 3 * * *"), periodic_id="nightly-verify")(verify)
    renew = app.task(name="tlsgate.renewal_run", queue=ESTATE_QUEUE)(_renewal_task)
    app.periodic(cron=os.environ.get("TLSGATE_RENEW_CRON", "30 2 * * *"), periodic_id="renewal")(renew)
    return app


def _transaction_connector(raw: Any) -> Any:
    """A procrastinate connector that runs its queries on ``raw`` (a psycopg connection, inside
    the caller's open transaction): deferring becomes part of that transaction."""
    from procrastinate.sync_psycopg_connector import SyncPsycopgConnector

    class _OneConnection:
        def connection(self) -> contextlib.AbstractContextManager[Any]:
            return contextlib.nullcontext(raw)

    class TransactionConnector(SyncPsycopgConnector):
        def __init__(self) -> None:
            super().__init__()
            self._pool = _OneConnection()  # type: ignore[assignment]
            self._pool_externally_set = True

    return TransactionConnector()


def defer_items(db: Any, items: Sequence[tuple[int, int, str]], task: str = TASK_RUN_ITEM) -> list[int]:
    """Defer one task per (job_id, item_id, zone) into its zone's queue, on the inventory
    connection ``db`` and inside its current transaction. Returns procrastinate's job IDs."""
    app = build_app(_transaction_connector(db.raw))
    ids: list[int] = []
    by_zone: dict[str, list[dict[str, int]]] = {}
    for job_id, item_id, zone in items:
        by_zone.setdefault(zone, []).append({"job_id": job_id, "item_id": item_id})
    for zone, kwargs in sorted(by_zone.items()):
        deferrer = app.configure_task(task, queue=zone_queue(zone))
        ids.extend(deferrer.batch_defer(*kwargs))
    return ids


# -- the task side (in a worker) ----------------------------------------------------------------
_state = threading.local()
_running = 0
_running_lock = threading.Lock()


@contextlib.contextmanager
def _counted() -> Iterator[None]:
    global _running
    with _running_lock:
        _running += 1
    try:
        yield
    finally:
        with _running_lock:
            _running -= 1


def _worker_gateway() -> Gateway:
    """This worker thread's own Gateway (its own inventory connection; the registry is shared)."""
    gw = getattr(_state, "gateway", None)
    if gw is None:
        from .api import Gateway

        gw = Gateway()
        _state.gateway = gw
    return gw


def _run_item_task(context: Any, job_id: int, item_id: int) -> None:
    from . import fleet

    with _counted():
        gw = _worker_gateway()
        try:
            fleet.run_item(gw, job_id, item_id)
        except Exception:
            # the inventory connection may be the broken part (database restarted): a fresh
            # Gateway next time; procrastinate records the failure and the sweep/retry handles it
            _forget_gateway()
            raise
        finish_if_done(gw, job_id)


def _forget_gateway() -> None:
    gw = getattr(_state, "gateway", None)
    _state.gateway = None
    if gw is not None:
        with contextlib.suppress(Exception):
            gw.close()


def finish_if_done(gateway: Gateway, job_id: int) -> bool:
    """Close a queue-run job once none of its items is pending or running (the worker that
    finishes the last item does it; doing it twice is harmless)."""
    from . import jobs

    inv = gateway.inventory
    left = inv.db.execute("SELECT COUNT(*) FROM job_items WHERE job_id = ? AND state IN ('pending', 'running')",
                          (job_id,)).fetchone()[0]
    if left:
        return False
    row = inv.db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is not None and row[0] == "running":
        jobs.finish(inv, job_id)
    return True


def _noop_task(job_id: int, item_id: int) -> None:
    """A task that does nothing (the queue-overhead benchmark)."""


def _nightly_verify_task(timestamp: int) -> None:
    """Periodic: a ``verify`` job over every endpoint, one task per endpoint in its zone."""
    gw = _worker_gateway()
    job_id = enqueue_job(gw, "verify", gw.inventory.endpoints(), {"periodic": "nightly-verify", "tick": timestamp})
    log.info("nightly verify: job %s", job_id)


def _renewal_task(timestamp: int) -> None:
    """Periodic: the lifecycle's renewal run, when the installed tlsgate has one."""
    gw = _worker_gateway()
    renew = getattr(gw, "renew_due", None)
    if renew is None:
        log.info("renewal run: this tlsgate has no ACME renewal (tick %s)", timestamp)
        return
    renew()


def enqueue_job(gateway: Gateway, kind: str, endpoints: Sequence[Any], params: dict[str, Any]) -> int:
    """Record a job with one item per endpoint AND defer one task per item into its endpoint's
    zone queue, in one transaction; returns the job ID (PostgreSQL inventories only)."""
    from . import jobs

    inv = gateway.inventory
    if inv.dialect != "postgresql":
        raise ValidationError("the job queue needs a PostgreSQL inventory (TLSGATE_DATABASE_URL)")
    zones = {r[0]: r[1] for r in inv.db.execute("SELECT id, zone FROM endpoints")}
    rows = [(s.id, s.name, zones.get(s.id) or DEFAULT_ZONE) for s in endpoints]
    with inv.write() as db:
        job_id = jobs.insert(db, kind, params, rows, holder=None)
        items = db.execute("SELECT id, zone FROM job_items WHERE job_id = ? ORDER BY id", (job_id,)).fetchall()
        defer_items(db, [(job_id, int(r[0]), r[1]) for r in items])
    return job_id


# -- gateways -----------------------------------------------------------------------------------
def register_gateway(inventory: Any, name: str, zones: Sequence[str], *, running: int = 0,
                     started: str | None = None) -> None:
    """Insert or refresh this gateway's row (the heartbeat)."""
    from . import __version__
    from .inventory import now
    from .registry import get_registry

    plugins = sorted(f"{p.name} {p.version}" for p in get_registry().plugins.values())
    stamp = now()
    with inventory.write() as db:
        db.execute(
            "INSERT INTO gateways(name, zones, host, version, plugins, started, heartbeat, running) "
            "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET zones = excluded.zones, host = excluded.host, "
            "version = excluded.version, plugins = excluded.plugins, "
            "started = COALESCE(?, gateways.started), heartbeat = excluded.heartbeat, running = excluded.running",
            (name, json.dumps(list(zones)), socket.gethostname(), __version__, json.dumps(plugins),
             started or stamp, stamp, running, started),
        )


def gateways(inventory: Any) -> list[dict[str, Any]]:
    """Every registered gateway: name, zones, host, version, plugins, started, last heartbeat,
    running tasks, and whether it heartbeat recently (``alive``)."""
    import datetime as dt

    limit = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=3 * heartbeat_interval() + 5)
    out = []
    for r in inventory.db.execute("SELECT * FROM gateways ORDER BY name").fetchall():
        beat = r["heartbeat"]
        alive = bool(beat) and dt.datetime.fromisoformat(beat) >= limit
        out.append({"name": r["name"], "zones": json.loads(r["zones"] or "[]"), "host": r["host"],
                    "version": r["version"], "plugins": json.loads(r["plugins"] or "[]"), "started": r["started"],
                    "heartbeat": beat, "running": int(r["running"] or 0), "alive": alive})
    return out


def heartbeat_interval() -> float:
    return _env_float("TLSGATE_WORKER_HEARTBEAT", 10.0)


def stalled_after() -> float:
    return _env_float("TLSGATE_WORKER_STALLED", 30.0)


# -- the worker ---------------------------------------------------------------------------------
def run_worker(url: str, zones: Sequence[str], name: str, concurrency: int = 4) -> None:
    """Run a worker until SIGINT/SIGTERM: the tasks of ``zones`` (and the estate queue)."""
    os.environ["TLSGATE_GATEWAY"] = name  # leases, job items and audit entries name this gateway
    asyncio.run(_worker_main(url, list(zones), name, concurrency))


async def _worker_main(url: str, zones: list[str], name: str, concurrency: int) -> None:
    from procrastinate import PsycopgConnector

    from .inventory import Inventory, now

    connector = PsycopgConnector(conninfo=url, kwargs={"connect_timeout": 10},
                                 min_size=1, max_size=max(4, concurrency + 2))
    app = build_app(connector)
    queues = [zone_queue(z) for z in zones] + [ESTATE_QUEUE]
    started = now()
    inventory = await asyncio.to_thread(Inventory, url=url)
    await asyncio.to_thread(register_gateway, inventory, name, zones, started=started)
    async with app.open_async():
        side = [asyncio.create_task(_heartbeat_loop(url, name, zones, started), name="tlsgate-gateway-heartbeat"),
                asyncio.create_task(_stalled_loop(app, url, set(queues)), name="tlsgate-stalled-sweep")]
        try:
            await app.run_worker_async(
                queues=queues, name=name, concurrency=concurrency, install_signal_handlers=True,
                update_heartbeat_interval=max(0.5, stalled_after() / 4), stalled_worker_timeout=stalled_after(),
                fetch_job_polling_interval=2.0, delete_jobs="successful",
            )
        finally:
            for t in side:
                t.cancel()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(inventory.close)


async def _heartbeat_loop(url: str, name: str, zones: list[str], started: str) -> None:
    from .inventory import Inventory

    inventory = None
    while True:
        await asyncio.sleep(heartbeat_interval())
        try:
            if inventory is None:
                inventory = await asyncio.to_thread(Inventory, url=url)
            await asyncio.to_thread(register_gateway, inventory, name, zones, running=_running, started=started)
        except Exception as exc:  # noqa: BLE001 - the database may be restarting: try again next beat
            log.warning("gateway heartbeat failed: %s", exc)
            if inventory is not None:
                with contextlib.suppress(Exception):
                    inventory.close()
            inventory = None


async def _stalled_loop(app: Any, url: str, queues: set[str]) -> None:
    from .inventory import Inventory

    inventory = None
    while True:
        await asyncio.sleep(max(0.5, stalled_after() / 2))
        try:
            if inventory is None:
                inventory = await asyncio.to_thread(Inventory, url=url)
            await sweep_stalled(app, inventory, queues)
        except Exception as exc:  # noqa: BLE001 - as above: the next sweep tries again
            log.warning("stalled-task sweep failed: %s", exc)
            if inventory is not None:
                with contextlib.suppress(Exception):
                    inventory.close()
            inventory = None


async def sweep_stalled(app: Any, inventory: Any, queues: set[str]) -> list[int]:
    """Retry (or, after the last attempt, give up on) the tasks of ``queues`` whose worker
    stopped heartbeating. Returns the procrastinate job IDs handled."""
    from procrastinate.jobs import Status

    handled = []
    await app.job_manager.prune_stalled_workers(stalled_after())
    for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after()):
        if job.queue not in queues:
            continue
        handled.append(job.id)
        kwargs = job.task_kwargs or {}
        details = {"task": job.task_name, "queue": job.queue, "attempts": job.attempts, **kwargs}
        if job.attempts < max_attempts():
            await app.job_manager.retry_job(job)
            await asyncio.to_thread(inventory.audit, "worker retry", "retried", details=details)
            continue
        await app.job_manager.finish_job(job, status=Status.FAILED, delete_job=False)
        if job.task_name == TASK_RUN_ITEM and "item_id" in kwargs:
            await asyncio.to_thread(_give_up, inventory, int(kwargs["job_id"]), int(kwargs["item_id"]), job.attempts)
        await asyncio.to_thread(inventory.audit, "worker retry", "gave up", details=details)
    return handled


def _give_up(inventory: Any, job_id: int, item_id: int, attempts: int) -> None:
    from . import jobs
    from .inventory import now

    with inventory.write() as db:
        db.execute("UPDATE job_items SET state = 'interrupted', reason = ?, finished = ? "
                   "WHERE id = ? AND state IN ('pending', 'running')",
                   (f"the worker running it stopped {attempts} time(s); not retried again", now(), item_id))
    left = inventory.db.execute("SELECT COUNT(*) FROM job_items WHERE job_id = ? AND state IN ('pending', 'running')",
                                (job_id,)).fetchone()[0]
    if not left:
        jobs.finish(inventory, job_id)
