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
import contextvars
import functools
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .errors import ValidationError
from .inventory import gateway_name  # noqa: F401  - the worker command names its gateway like every process

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
    from procrastinate import RetryStrategy

    # an exception out of a task (not an endpoint's own failure: run_item records those) is the
    # database or the worker: retried a bounded number of times, a little later
    app.task(name=TASK_RUN_ITEM, pass_context=True,
             retry=RetryStrategy(max_attempts=max_attempts(), wait=1))(_in_thread(_run_item_task))
    app.task(name=TASK_NOOP)(_in_thread(_noop_task))
    verify = app.task(name="tlsgate.nightly_verify", queue=ESTATE_QUEUE)(_in_thread(_nightly_verify_task))
    app.periodic(cron=os.environ.get("TLSGATE_VERIFY_CRON", "0 3 * * *"), periodic_id="nightly-verify")(verify)
    renew = app.task(name="tlsgate.renewal_run", queue=ESTATE_QUEUE)(_in_thread(_renewal_task))
    app.periodic(cron=os.environ.get("TLSGATE_RENEW_CRON", "30 2 * * *"), periodic_id="renewal")(renew)
    return app


def _in_thread(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``fn`` (a sync task) as an async task that runs it in the event loop's default executor
    (the worker's ``--concurrency`` + 4 threads), in a copy of the caller's context.

    procrastinate runs a sync task through asgiref's ``sync_to_async``, which builds a
    ``SyncToAsync`` object, a thread handler and a shielded future for every call: ~15% of a
    worker's CPU per no-op task. This is the same hop, once. Like a sync task in procrastinate,
    the thread cannot be interrupted: a cancellation (procrastinate's abort of an async job)
    waits for the function to end and returns what it returned, as the sync task would have."""

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        future = loop.run_in_executor(None, call)
        while True:
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                if future.done():
                    return future.result()
                continue  # the thread is still running the task: it ends first

    return run


def _transaction_connector(raw: Any) -> Any:
    """A procrastinate connector that runs its queries on ``raw`` (a psycopg connection, inside
    the caller's open transaction): deferring becomes part of that transaction."""
    from procrastinate.sync_psycopg_connector import SyncPsycopgConnector

    class _OneConnection:
        def connection(self) -> contextlib.AbstractContextManager[Any]:
            return contextlib.nullcontext(raw)

    # procrastinate's public ``open(pool=)``: an existing pool, which ``close`` leaves alone; all
    # the sync connector asks of it is ``connection()``
    connector = SyncPsycopgConnector()
    connector.open(_OneConnection())  # type: ignore[arg-type]
    return connector


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
    if len(ids) >= ANALYZE_BATCH:
        _analyze_jobs(db)
    return ids


#: A batch of at least this many tasks refreshes the planner's statistics of the queue table.
ANALYZE_BATCH = 50


def _analyze_jobs(db: Any) -> None:
    """``ANALYZE procrastinate_jobs`` inside the deferring transaction (it counts that
    transaction's own rows; the statistics become visible with the tasks, at commit).

    Why: a worker's fetch (``procrastinate_fetch_job_v2``) wants the head of the ``todo`` queue
    by ``priority DESC, id``. Planned on statistics that say the table is (nearly) empty -- a
    queue table is, most of the time: never analyzed, or autovacuum sampled it between bursts --
    PostgreSQL reads every ``todo`` row with a bitmap scan and sorts them for each fetch, so a
    burst of N tasks costs O(N^2) (500 tasks: ~0.5 ms of PostgreSQL CPU per task on top of
    ~0.5 ms; 3,000: 3.7 ms). With statistics that show the burst, the plan is an ordered scan of
    the partial ``todo`` priority index that stops at the first row it can lock; the workers'
    cached plans are invalidated by the new statistics. Small batches leave it to autovacuum.
    ANALYZE needs to own the table (tlsgate created it, see :func:`ensure_schema`); without
    that PostgreSQL skips it with a warning and nothing else changes."""
    db.execute("ANALYZE procrastinate_jobs")


# -- the task side (in a worker) ----------------------------------------------------------------
_state = threading.local()
_running = 0
_running_lock = threading.Lock()
# procrastinate job IDs running in this process: never "stalled" for this worker's own sweep,
# however late a busy event loop sends its heartbeat
_mine: set[int | None] = set()
_mine_lock = threading.Lock()


@contextlib.contextmanager
def _finally(fn: Any) -> Iterator[None]:
    try:
        yield
    finally:
        with _mine_lock:
            fn()


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
    from . import fleet, jobs

    log.info("job %s item %s: start (attempt %s)", job_id, item_id, getattr(context.job, "attempts", 0) + 1)
    task_id = getattr(context.job, "id", None)
    with _mine_lock:
        _mine.add(task_id)
    with _counted(), _finally(lambda: _mine.discard(task_id)):
        gw = _worker_gateway()
        try:
            why = _gate(gw, job_id, item_id)
            if why:
                jobs.skip_items(gw.inventory, [item_id], why)
            else:
                fleet.run_item(gw, job_id, item_id)
            _after_item(gw, job_id, item_id)
            log.info("job %s item %s: done", job_id, item_id)
        except Exception:
            log.exception("job %s item %s: the task failed", job_id, item_id)
            # the inventory connection may be the broken part (database restarted): a fresh
            # Gateway next time; procrastinate retries the task (RetryStrategy on the task)
            _forget_gateway()
            raise


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
    from . import fleet

    gw = _worker_gateway()
    job_id = fleet.create_job(gw, "verify", gw.inventory.endpoints(), {"periodic": "nightly-verify", "tick": timestamp})
    log.info("nightly verify: job %s", job_id)


def _renewal_task(timestamp: int) -> None:
    """Periodic: the lifecycle's renewal run (``tlsgate cert renew --deploy``), once per estate."""
    gw = _worker_gateway()
    # queued for the zones' workers, not waited for in this task's slot (see Lifecycle.renew)
    report = gw.lifecycle.renew(deploy=True, wait=False)
    log.info("renewal run (tick %s): %s", timestamp, "ok" if report.ok else "failures, see tlsgate log")


def submit(gateway: Gateway, job_id: int, item_ids: Sequence[int], *, canary: int = 0,
           max_failures: int | None = None, db: Any = None) -> None:
    """Queue a job's items (PostgreSQL): the run options go into the job's parameters (the
    workers enforce them), the items go back to ``pending``, and one task per item is deferred
    into its zone's queue; with ``canary`` only the first ``canary`` items are deferred now, the
    rest by the worker that finishes the last canary (or skipped when a canary failed). Runs in
    ``db``'s open transaction when given (the one that inserted the job), else in its own."""
    inv = gateway.inventory
    if inv.dialect != "postgresql":
        raise ValidationError("the job queue needs a PostgreSQL inventory (TLSGATE_DATABASE_URL)")
    with contextlib.ExitStack() as stack:
        if db is None:
            db = stack.enter_context(inv.write())
        row = db.execute("SELECT params FROM jobs WHERE id = ?", (job_id,)).fetchone()
        params = json.loads(row[0]) if row else {}
        params["queue"] = {"canary": sorted(item_ids)[:canary] if canary else [], "max_failures": max_failures}
        db.execute("UPDATE jobs SET params = ?, state = 'running', holder = NULL, finished = NULL WHERE id = ?",
                   (json.dumps(params), job_id))
        db.executemany("UPDATE job_items SET state = 'pending', reason = NULL, finished = NULL, task_id = NULL "
                       "WHERE id = ?", [(i,) for i in item_ids])
        first = sorted(item_ids)[:canary] if canary else sorted(item_ids)
        _defer_pending(db, job_id, first)
        if not item_ids:  # nothing to run: the job is done now (no worker will close it)
            db.execute("UPDATE jobs SET state = 'done', finished = ? WHERE id = ?", (_now(), job_id))


def _defer_pending(db: Any, job_id: int, item_ids: Sequence[int]) -> None:
    if not item_ids:
        return
    marks = ",".join("?" for _ in item_ids)
    rows = db.execute(f"SELECT id, zone FROM job_items WHERE job_id = ? AND id IN ({marks}) ORDER BY id",  # noqa: S608
                      (job_id, *item_ids)).fetchall()
    task_ids = defer_items(db, [(job_id, int(r[0]), r[1]) for r in rows])
    db.executemany("UPDATE job_items SET task_id = ? WHERE id = ?",
                   [(t, int(r[0])) for t, r in zip(task_ids, rows, strict=True)])


def _gate(gateway: Gateway, job_id: int, item_id: int) -> str | None:
    """Why this item must not start (``--max-failures`` reached), or None."""
    inv = gateway.inventory
    params = json.loads(inv.db.execute("SELECT params FROM jobs WHERE id = ?", (job_id,)).fetchone()[0])
    limit = (params.get("queue") or {}).get("max_failures")
    if limit:
        failed = inv.db.execute("SELECT COUNT(*) FROM job_items WHERE job_id = ? AND state IN ('failed', 'interrupted')",
                                (job_id,)).fetchone()[0]
        if failed >= limit:
            return f"not started: --max-failures {limit} reached"
    return None


def _after_item(gateway: Gateway, job_id: int, item_id: int) -> None:
    """After an item: release the rest of a canary job, or close the job when nothing is left."""
    from . import jobs

    inv = gateway.inventory
    params = json.loads(inv.db.execute("SELECT params FROM jobs WHERE id = ?", (job_id,)).fetchone()[0])
    if item_id not in ((params.get("queue") or {}).get("canary") or []):
        finish_if_done(gateway, job_id)  # no write lock for the items of a job without a canary
        return
    with inv.write() as db:
        params = json.loads(db.execute("SELECT params FROM jobs WHERE id = ?", (job_id,)).fetchone()[0])
        canary = (params.get("queue") or {}).get("canary") or []
        if item_id in canary:
            marks = ",".join("?" for _ in canary)
            states = [r[0] for r in db.execute(f"SELECT state FROM job_items WHERE id IN ({marks})", tuple(canary))]  # noqa: S608
            if all(s not in ("pending", "running") for s in states):
                rest = [int(r[0]) for r in db.execute(
                    "SELECT id FROM job_items WHERE job_id = ? AND state = 'pending' AND task_id IS NULL", (job_id,))]
                bad = sum(1 for s in states if s not in jobs.FINAL_OK)
                if bad:
                    db.executemany("UPDATE job_items SET state = 'skipped', reason = ?, finished = ? WHERE id = ?",
                                   [(f"not started: {bad} of the {len(canary)} canary endpoint(s) failed",
                                     _now(), i) for i in rest])
                else:
                    _defer_pending(db, job_id, rest)
    finish_if_done(gateway, job_id)


def _now() -> str:
    from .inventory import now

    return now()


def follow(gateway: Gateway, job_id: int, progress: Any = None, *, poll: float = 0.2,
           partial: bool = False) -> Any:
    """Wait for a queued job to end, calling ``progress.started`` / ``progress.finished`` as the
    workers report; returns the finished Job. Raises OperationError at once when no live worker
    serves a zone that has items to run (the tasks stay queued for when one starts); with
    ``partial`` (a renewal run, which must go on), waits only for the items of served zones and
    returns the job with the others still pending."""
    import time

    from . import jobs
    from .errors import OperationError

    inv = gateway.inventory
    job = jobs.get(inv, job_id, refresh=False)
    waiting = {i.id for i in job.items if i.state in ("pending", "running")}
    zones = {r[0] for r in inv.db.execute(
        "SELECT DISTINCT zone FROM job_items WHERE job_id = ? AND state IN ('pending', 'running')", (job_id,))}
    served = {z for g in gateways(inv) if g["alive"] for z in g["zones"]}
    missing = sorted(zones - served)
    if missing and partial:
        unserved = {int(r[0]) for r in inv.db.execute(
            "SELECT id, zone FROM job_items WHERE job_id = ? AND state IN ('pending', 'running')", (job_id,))
            if r[1] in missing}
        waiting -= unserved
        if not waiting:
            return jobs.get(inv, job_id, refresh=False)
    elif missing:
        raise OperationError(f"job {job_id} is queued, but no live worker serves zone(s) {', '.join(missing)}: start "
                             f"tlsgate worker --zone {missing[0]} (the tasks wait for it); then: tlsgate job show {job_id}")
    seen_running: set[int] = set()
    while True:
        job = jobs.get(inv, job_id, refresh=False)
        for item in job.items:
            if item.id not in waiting:
                continue
            if item.state == "running" and item.id not in seen_running:
                seen_running.add(item.id)
                if progress is not None and progress.started:
                    progress.started(item)
            elif item.state not in ("pending", "running"):
                waiting.discard(item.id)
                if progress is not None and progress.finished:
                    progress.finished(item)
        if not waiting and (job.state != "running" or partial):
            return job
        time.sleep(poll)


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
        alive = bool(beat) and bool(r["started"]) and dt.datetime.fromisoformat(beat) >= limit
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
    level = os.environ.get("TLSGATE_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s {name} %(name)s %(levelname)s %(message)s")
    logging.getLogger("tlsgate").setLevel(level)
    logging.getLogger("procrastinate").setLevel(os.environ.get("TLSGATE_QUEUE_LOG_LEVEL", "WARNING").upper())
    log.info("worker %s: zones %s, concurrency %s", name, ", ".join(zones), concurrency)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_worker_main(url, list(zones), name, concurrency))


def _loop_factory() -> Any:
    """uvloop's event loop when it is installed (the ``postgresql`` extra installs it on Linux and
    macOS), else asyncio's. A sync task reaches its thread and back through the loop: with
    asyncio's selector loop that hop (the executor's wake-up, then ``call_soon_threadsafe``'s
    self-pipe) is ~140 us of CPU per task, with uvloop ~45 us, and every fetch/finish query's
    readiness wait is cheaper too (queue-overhead benchmark: worker CPU per task 1.15 -> 0.96 ms).
    ``TLSGATE_WORKER_LOOP=asyncio`` keeps asyncio's loop."""
    if os.environ.get("TLSGATE_WORKER_LOOP", "").lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


async def _worker_main(url: str, zones: list[str], name: str, concurrency: int) -> None:
    from .inventory import Inventory, now

    # the pool's connections autocommit (see _pool_factory): procrastinate sends one statement
    # (one of its SQL functions) per checkout, so a transaction would add a BEGIN and a COMMIT
    connector = _worker_connector_class()(conninfo=url, kwargs={"connect_timeout": 10},
                                          min_size=1, max_size=max(4, concurrency + 2), pool_factory=_pool_factory)
    app = build_app(connector)
    queues = [zone_queue(z) for z in zones] + [ESTATE_QUEUE]
    # procrastinate runs a sync task (all of tlsgate's) in the loop's default executor, whose
    # size is min(32, CPUs + 4): on a 2-CPU host only 6 of 8 --concurrency slots could run at
    # once. One thread per slot, and a few for the heartbeat, the sweep and their inventories.
    from concurrent.futures import ThreadPoolExecutor

    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=concurrency + 4, thread_name_prefix="tlsgate-task"))
    started = now()
    inventory = await asyncio.to_thread(Inventory, url=url)
    await asyncio.to_thread(register_gateway, inventory, name, zones, started=started)
    async with app.open_async():
        side = [asyncio.create_task(_heartbeat_loop(url, name, zones, started), name="tlsgate-gateway-heartbeat"),
                asyncio.create_task(_stalled_loop(app, url, set(queues)), name="tlsgate-stalled-sweep")]
        try:
            await _supervise(app, queues, name, concurrency)
        finally:
            for t in side:
                t.cancel()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(_unregister, inventory, name)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(inventory.close)
            log.info("worker %s stopped", name)


def _overrides_fit(cls: type, wanted: dict[str, tuple[str, ...]]) -> bool:
    """Whether ``cls`` (procrastinate's) still has each method of ``wanted`` with those leading
    parameters (after ``self``): the leaner paths below override private methods of
    procrastinate 3.x, which a later 3.x may rename or reshape. When one no longer fits, the
    worker runs procrastinate's stock class instead (slower per task, the same behaviour) and
    says so once in the worker's log, rather than failing on the first task."""
    import inspect

    for name, params in wanted.items():
        method = getattr(cls, name, None)
        if not callable(method):
            return False
        try:
            names = list(inspect.signature(method).parameters)[1:]
        except (TypeError, ValueError):
            return False
        if names[:len(params)] != list(params):
            return False
    return True


def _stock(kind: str, cls: type) -> type:
    import procrastinate

    log.warning("procrastinate %s: its %s internals differ from what tlsgate's leaner worker path "
                "expects; using procrastinate's stock %s", getattr(procrastinate, "__version__", "?"),
                kind, cls.__name__)
    return cls


#: procrastinate 3.x's private methods that :func:`_worker_connector_class` and
#: :func:`_worker_class` override or call, with their leading parameters.
CONNECTOR_INTERNALS = {"_wrap_json": ("arguments",), "_loop_notify": ("on_notification", "connection", "timeout"),
                       "execute_query_async": ("query",), "execute_query_one_async": ("query",)}
WORKER_INTERNALS = {"_log_extra": ("action", "context", "job_result")}


@functools.cache
def _worker_connector_class() -> type:
    """procrastinate's ``PsycopgConnector`` with a leaner path for the two queries of every task
    (fetch, finish) and for the LISTEN loop; the SQL, the pool and the error mapping are its own.

    * ``execute_query_one_async`` / ``execute_query_async``: the pooled connection is borrowed and
      returned with ``getconn`` / ``putconn`` (what the pool's ``connection()`` context does,
      without two nested async context managers per query: ``async with conn`` only commits or
      rolls back, and the pool's connections autocommit, see :func:`_pool_factory`).
    * ``_loop_notify``: the notifications are read with psycopg's own ``notifies(timeout=)``;
      procrastinate wraps each one in ``asyncio.wait_for`` (a task and a timer per notification,
      and every worker of a zone receives every ``job_inserted`` of it). As before, the
      connection is checked (``SELECT 1``) when no notification came for ``LISTEN_TIMEOUT``
      seconds, and a broken one ends the loop (procrastinate then reconnects)."""
    import psycopg
    from procrastinate import PsycopgConnector

    try:
        from procrastinate import connector, exceptions
        from procrastinate.psycopg_connector import wrap_exceptions
        from psycopg.rows import dict_row

        fits = (_overrides_fit(PsycopgConnector, CONNECTOR_INTERNALS)
                and isinstance(getattr(PsycopgConnector, "pool", None), property)
                and hasattr(connector, "LISTEN_TIMEOUT") and hasattr(exceptions, "NoResult"))
    except ImportError:
        fits = False
    if not fits:
        return _stock("connector", PsycopgConnector)

    class WorkerConnector(PsycopgConnector):  # type: ignore[misc]
        @wrap_exceptions()
        async def execute_query_async(self, query: Any, **arguments: Any) -> None:
            if getattr(self, "_json_loads", True) or getattr(self, "_json_dumps", True):
                return await super().execute_query_async(query, **arguments)
            pool = self.pool
            conn = await pool.getconn()
            try:
                await conn.execute(query, self._wrap_json(arguments))
            finally:
                await pool.putconn(conn)
            return None

        @wrap_exceptions()
        async def execute_query_one_async(self, query: Any, **arguments: Any) -> dict[str, Any]:
            if getattr(self, "_json_loads", True) or getattr(self, "_json_dumps", True):
                return await super().execute_query_one_async(query, **arguments)
            pool = self.pool
            conn = await pool.getconn()
            try:
                cursor = conn.cursor(row_factory=dict_row)
                await cursor.execute(query, self._wrap_json(arguments))
                result = await cursor.fetchone()
                await cursor.close()
            finally:
                await pool.putconn(conn)
            if result is None:
                raise exceptions.NoResult
            return result  # type: ignore[no-any-return]

        @wrap_exceptions()
        async def _loop_notify(self, on_notification: Any, connection: Any,
                               timeout: float = connector.LISTEN_TIMEOUT) -> None:
            loop = asyncio.get_running_loop()
            woken: set[str] = set()
            while True:
                try:
                    async for notification in connection.notifies(timeout=timeout):
                        channel, payload = notification.channel, notification.payload
                        if '"job_inserted"' in payload:
                            # one wake-up per channel per batch read: the notifications of one
                            # read are handled without the loop running in between, and all a
                            # job_inserted does is set the worker's new-job event
                            if channel in woken:
                                continue
                            woken.add(channel)
                            loop.call_soon(woken.discard, channel)
                        await on_notification(channel=channel, payload=payload)
                    await connection.execute("SELECT 1")
                except psycopg.OperationalError:
                    break  # the connection is dead: listen_notify connects again

    return WorkerConnector


@functools.cache
def _worker_class() -> type:
    """procrastinate's ``Worker``, whose structured-log ``extra`` (a dict per log call, with the
    job's ``asdict``: four per task) is built only when procrastinate's logger shows INFO: the
    records themselves are unchanged, tlsgate's log format prints no extras, and at the default
    ``TLSGATE_QUEUE_LOG_LEVEL=WARNING`` the INFO/DEBUG records that carried them are dropped."""
    from procrastinate.worker import Worker

    if not _overrides_fit(Worker, WORKER_INTERNALS):
        return _stock("worker", Worker)

    class TlsgateWorker(Worker):  # type: ignore[misc]
        def _log_extra(self, action: str, context: Any, job_result: Any, **kwargs: Any) -> dict[str, Any]:
            if not self.logger.isEnabledFor(logging.INFO):
                return {"action": action}
            return super()._log_extra(action, context, job_result, **kwargs)  # type: ignore[no-any-return]

    return TlsgateWorker


#: A pooled connection idle longer than this is checked (an empty query) before it is lent.
POOL_CHECK_IDLE = 2.0


def _pool_factory(**args: Any) -> Any:
    """procrastinate's pool, its connections in autocommit, whose ``check`` (an empty query: one
    more round trip before each of
    the two or three queries of every task) runs only for a connection idle longer than
    :data:`POOL_CHECK_IDLE`: a busy worker's connections were just used, and one that went bad
    under a busy worker (PostgreSQL restarted) fails its query, which stops procrastinate's worker
    and :func:`_supervise` starts it again on fresh connections."""
    import weakref

    import psycopg_pool

    last_used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    async def check(conn: Any) -> None:
        now = time.monotonic()
        if now - last_used.get(conn, -POOL_CHECK_IDLE - 1) > POOL_CHECK_IDLE:
            await psycopg_pool.AsyncConnectionPool.check_connection(conn)
        last_used[conn] = now

    async def configure(conn: Any) -> None:
        await conn.set_autocommit(True)

    args["check"] = check
    args["configure"] = configure
    return psycopg_pool.AsyncConnectionPool(**args)


async def _supervise(app: Any, queues: list[str], name: str, concurrency: int) -> None:
    """Run procrastinate's worker until SIGINT/SIGTERM (a graceful stop: running tasks finish).
    procrastinate stops its worker when a side task (the LISTEN connection, the heartbeat) loses
    the database; a gateway must outlive a database restart, so a worker that stopped on its own
    is started again once the database answers."""
    import signal

    Worker = _worker_class()

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    current: list[Any] = []

    def stop() -> None:
        stopping.set()
        if current:
            current[0].stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        while not stopping.is_set():
            worker = Worker(app, queues=queues, name=name, concurrency=concurrency, install_signal_handlers=False,
                            update_heartbeat_interval=max(0.5, stalled_after() / 4),
                            stalled_worker_timeout=stalled_after(), fetch_job_polling_interval=2.0,
                            delete_jobs="successful")
            current[:] = [worker]
            try:
                await worker.run()
            except Exception as exc:  # noqa: BLE001 - the database went away: start again below
                log.warning("worker %s: the queue stopped (%s); starting again", name, exc)
            if not stopping.is_set():
                log.warning("worker %s: the queue stopped (database lost?); starting again", name)
                await _wait_for_database(app, stopping)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _wait_for_database(app: Any, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        try:
            if await app.job_manager.check_connection_async():
                return
        except Exception as exc:  # noqa: BLE001 - not yet: try again
            log.debug("database not back yet: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=1.0)


def _unregister(inventory: Any, name: str) -> None:
    """A worker that stops cleanly says so (``started`` empty): nobody waits for it."""
    with inventory.write() as db:
        db.execute("UPDATE gateways SET started = NULL, running = 0 WHERE name = ?", (name,))


async def _heartbeat_loop(url: str, name: str, zones: list[str], started: str) -> None:
    from .inventory import Inventory

    inventory = None
    while True:
        await asyncio.sleep(heartbeat_interval())
        try:
            if inventory is None:
                inventory = await asyncio.to_thread(Inventory, url=url)
            await asyncio.to_thread(register_gateway, inventory, name, zones, running=_running, started=started)
            log.debug("gateway heartbeat")
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
    for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after()):
        with _mine_lock:
            own = job.id in _mine
        if job.queue not in queues or own:
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
