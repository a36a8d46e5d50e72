"""Fleet runs: selectors -> endpoints, one job item per endpoint, the fan-out, canary and limits.

The unit of work is :func:`run_item` (one endpoint of one job: the endpoint's lease, one
connection, install / discover / restart / verify, the ``job_items`` row). It is pure in the sense
that everything it needs is in the inventory (the job's parameters, the certificate and its sealed
key), so a queue worker can run it as well as the in-process :class:`ThreadExecutor`. Anything
that runs items implements :class:`Executor` (``submit(job_id, item_id) -> Future``).

    from tlsgate.api import Gateway
    from tlsgate import fleet

    gw = Gateway()
    sel = fleet.Selection(replaces=old_fingerprint)
    job_id = fleet.create_job(gw, "deploy", sel, {"certificate_id": 12})
    job = fleet.run_job(gw, job_id, parallel=8, max_failures=3)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from . import jobs, leases
from .errors import NotFoundError, ValidationError
from .inventory import normalize_fingerprint
from .runs import check_run_options, discovery_summary

if TYPE_CHECKING:
    from .api import Gateway
    from .inventory import StoredEndpoint

KINDS = ("deploy", "discover", "restart", "verify")


# -- selectors ---------------------------------------------------------------------------------
@attrs.frozen
class Selection:
    """Which endpoints a fleet command acts on. Within one kind of selector the values add up
    (``--endpoint a --endpoint b``); different kinds narrow (``--type nginx --org Acme``: Acme's
    nginx endpoints). ``--all`` selects every endpoint; no selector at all is an error."""

    endpoints: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    org: str | None = None
    department: str | None = None
    all: bool = False
    replaces: str | None = None  # a certificate ID or SHA-256 fingerprint

    @property
    def empty(self) -> bool:
        return not (self.endpoints or self.types or self.org or self.all or self.replaces)


def resolve_certificate_ref(gateway: Gateway, ref: str, option: str = "--replaces") -> str:
    """The fingerprint named by a certificate ID or a SHA-256 fingerprint (hex, colons allowed).
    A fingerprint need not be in the certificates table (only nodes must have seen it)."""
    text = ref.strip()
    if text.isdigit():
        try:
            return gateway.inventory.certificate(int(text)).fingerprint
        except NotFoundError:
            raise ValidationError(f"no certificate with ID {text} (see: tlsgate cert list)", option=option) from None
    try:
        return normalize_fingerprint(text)
    except ValidationError as exc:
        raise ValidationError(str(exc), option=option) from None


def select(gateway: Gateway, selection: Selection, *, deploy: bool = False) -> list[StoredEndpoint]:
    """The endpoints of a selection, by name. Raises ValidationError (exit 2) for no selector
    (naming the selectors of ``cert deploy`` with ``deploy``, else those of the ``tls`` commands),
    an unknown endpoint, organization or department."""
    if selection.department and not selection.org:  # before "no selector": --department alone is one
        raise ValidationError("needs --org", option="--department")
    if selection.empty:
        given = "--endpoint, --type, --org, --replaces or --all" if deploy else \
            "ENDPOINT, --endpoint, --type, --org or --all"
        raise ValidationError(f"no endpoints selected: give {given}", option="--endpoint")
    inventory = gateway.inventory
    chosen = {s.id: s for s in inventory.endpoints()}
    # a type no plugin serves and no endpoint has is a typo, not an empty selection
    known_types = {*gateway.registry.endpoint_types, *(s.type for s in chosen.values())}
    for type_name in selection.types:
        if type_name not in known_types:
            raise ValidationError(f"no endpoint type {type_name!r} (installed: {', '.join(sorted(known_types))})",
                                  option="--type")
    if selection.endpoints:
        wanted = {}
        for ref in selection.endpoints:
            try:
                stored = inventory.get_endpoint(ref)
            except NotFoundError as exc:
                raise ValidationError(str(exc), option="--endpoint") from None
            wanted[stored.id] = stored
        chosen = {k: v for k, v in chosen.items() if k in wanted}
    if selection.types:
        chosen = {k: v for k, v in chosen.items() if v.type in selection.types}
    if selection.org:
        inventory.org_ids(selection.org, selection.department)  # NotFoundError naming the option
        chosen = {k: v for k, v in chosen.items() if v.organization == selection.org
                  and (selection.department is None or v.department == selection.department)}
    if selection.replaces:
        fp = resolve_certificate_ref(gateway, selection.replaces)
        serving = {n["endpoint_id"] for n in inventory.serving_nodes(fp)}
        chosen = {k: v for k, v in chosen.items() if k in serving}
    return sorted(chosen.values(), key=lambda s: s.name)


# -- jobs ----------------------------------------------------------------------------------------
def create_job(gateway: Gateway, kind: str, endpoints: Sequence[StoredEndpoint], params: dict[str, Any],
               *, holder: str | None = None, canary: int = 0, max_failures: int | None = None,
               item_params: Sequence[dict[str, Any]] | None = None) -> int:
    """Record a job with one pending item per endpoint (``item_params``, one per endpoint: that
    item's parameters over the job's, e.g. the certificate a renewal job installs there). On a
    PostgreSQL inventory the same transaction defers one task per item into its zone's queue
    (:mod:`tlsgate.queue`; ``canary`` and ``max_failures`` travel with the job, enforced by the
    workers)."""
    if kind not in KINDS:
        raise ValidationError(f"unknown job kind {kind!r} (one of: {', '.join(KINDS)})")
    check_run_options(1, canary, max_failures)
    rows = _item_rows(gateway, endpoints, item_params)
    if not queued(gateway):
        return jobs.create(gateway.inventory, kind, params, rows, holder=holder)
    from . import queue

    with gateway.inventory.write() as db:
        job_id = jobs.insert(db, kind, params, rows, holder=None)
        item_ids = [int(r["id"]) for r in db.execute("SELECT id FROM job_items WHERE job_id = ? ORDER BY id", (job_id,))]
        queue.submit(gateway, job_id, item_ids, canary=canary, max_failures=max_failures, db=db)
    return job_id


def _item_rows(gateway: Gateway, endpoints: Sequence[StoredEndpoint],
               item_params: Sequence[dict[str, Any]] | None) -> list[jobs.ItemRow]:
    if item_params is not None and len(item_params) != len(endpoints):
        raise ValueError("item_params needs one entry per endpoint")
    zones = {r["id"]: r["zone"] for r in gateway.inventory.db.execute("SELECT id, zone FROM endpoints")}
    extra = item_params or [{}] * len(endpoints)
    return [(s.id, s.name, zones.get(s.id) or "default", dict(p)) for s, p in zip(endpoints, extra, strict=True)]


def add_items(gateway: Gateway, job_id: int, endpoints: Sequence[StoredEndpoint],
              item_params: Sequence[dict[str, Any]] | None = None) -> list[int]:
    """More pending items for an existing job (one per endpoint, ``item_params`` as in
    :func:`create_job`); returns their IDs. Run them with ``run_job(..., item_ids=ids)``, which
    also queues them on a PostgreSQL inventory."""
    rows = _item_rows(gateway, endpoints, item_params)
    jobs.get(gateway.inventory, job_id, refresh=False)  # NotFoundError for an unknown job
    with gateway.inventory.write() as db:
        return jobs.insert_items(db, job_id, rows)


def queued(gateway: Gateway) -> bool:
    """True when jobs run on the workers of a queue (a PostgreSQL inventory), not in-process.
    ``TLSGATE_JOB_RUNNER=inprocess`` keeps a PostgreSQL inventory's jobs in this process (one
    gateway without workers)."""
    import os

    if os.environ.get("TLSGATE_JOB_RUNNER", "").strip().lower() == "inprocess":
        return False
    return getattr(gateway.inventory, "dialect", "sqlite") == "postgresql"


def _one_line(exc: BaseException) -> str:
    """The reason a job item failed: the whole message, as ``tls install`` prints it (a newline
    in it may be data, e.g. in a path; tables show it escaped, so the row stays one line)."""
    return str(exc).strip() or type(exc).__name__


class Bundles:
    """The certificates a job's items install, each loaded (its key unsealed and parsed) once
    per run instead of once per endpoint: a 60-endpoint deploy of one certificate decrypted and
    parsed the same key and chain 60 times (~1 ms each). Held by the run's executor and dropped
    with it, so the clear key lives no longer than the run that installs it."""

    def __init__(self) -> None:
        self._loaded: dict[int, Any] = {}
        self._lock = threading.Lock()

    def load(self, gateway: Gateway, cert_id: int) -> Any:
        with self._lock:
            bundle = self._loaded.get(cert_id)
        if bundle is None:
            bundle = gateway.inventory.load_bundle(cert_id)  # NotFoundError / ValidationError: not kept
            with self._lock:
                bundle = self._loaded.setdefault(cert_id, bundle)
        return bundle

    def clear(self) -> None:
        with self._lock:
            self._loaded.clear()


def run_item(gateway: Gateway, job_id: int, item_id: int, *, bundles: Bundles | None = None) -> jobs.JobItem:
    """Run one endpoint of a job and record the outcome in its ``job_items`` row. Never raises
    for the endpoint's own failures (they are the row's ``failed`` state with the reason).
    ``bundles``: the run's loaded certificates (see :class:`Bundles`), shared by its items."""
    inventory = gateway.inventory
    job = jobs.header(inventory, job_id)  # not its items: one endpoint of a 200-endpoint job reads one row
    item = jobs.item(inventory, item_id)
    jobs.start_item(inventory, item_id)
    try:
        if item.endpoint_id is None:
            raise NotFoundError(f"endpoint {item.endpoint} was removed")
        state, reason, before, after, details = _RUNNERS[job.kind](gateway, job, item, bundles or Bundles())
    except Exception as exc:  # noqa: BLE001 - every failure is this endpoint's row, never another's
        state, reason, before, after = "failed", _one_line(exc), None, None
        details = {"error_type": type(exc).__name__, "rolled_back": bool(getattr(exc, "rolled_back", False))}
        if isinstance(exc, leases.EndpointBusy):
            details["busy"] = {"holder": exc.holder, "job_id": exc.job_id, "since": exc.since}
    jobs.finish_item(inventory, item_id, state, reason=reason, before=before, after=after, details=details)
    return jobs.item(inventory, item_id)


Outcome = tuple[str, str | None, str | None, str | None, dict[str, Any]]


def _deploy(gateway: Gateway, job: jobs.Job, item: jobs.JobItem, bundles: Bundles) -> Outcome:
    params = {**job.params, **item.params}  # a renewal job names each item's certificate
    bundle = bundles.load(gateway, int(params["certificate_id"]))
    replaces = params.get("replaces")
    outcome = gateway.install(item.endpoint_id or item.endpoint, bundle, replaces=replaces,
                              alias=params.get("alias"), job_id=job.id,
                              resumes=tuple(int(j) for j in params.get("resumes") or ()),
                              apply_pending=bool(params.get("apply_pending")),
                              allow_name_mismatch=bool(params.get("allow_name_mismatch")))
    if outcome.skipped:
        served_new = any(n.fingerprint == bundle.fingerprint for n in outcome.nodes_after)
        return "unchanged", outcome.skipped + ("; the new certificate is served" if served_new else ""), \
            replaces, bundle.fingerprint if served_new else None, {}
    r = outcome.result
    details: dict[str, Any] = {"nodes": list(r.nodes), "certificate_id": outcome.certificate_id,
                               "verified": r.verified, "messages": list(r.messages)}
    # verify what the re-discovery (one connection, handshakes for web servers) shows
    new = [n for n in outcome.nodes_after if n.fingerprint == bundle.fingerprint]
    old = [n for n in outcome.nodes_after if replaces and n.fingerprint == replaces]
    if not new or old:
        why = "no node serves the new certificate" if not new else \
            "still serving the old certificate: " + ", ".join(f"{n.name}:{n.port or ''}" for n in old)
        return "failed", f"installed, but the re-discovery disagrees: {why}", outcome.before, bundle.fingerprint, details
    if params.get("resumes"):  # the dead attempts this item took over are finished too
        jobs.close_resumed(gateway.inventory, item, [int(j) for j in params["resumes"]])
    return "changed", None, outcome.before, bundle.fingerprint, details


def _discover(gateway: Gateway, job: jobs.Job, item: jobs.JobItem, bundles: Bundles) -> Outcome:
    eid = item.endpoint_id or item.endpoint
    before = gateway.inventory.node_keys(gateway.inventory.get_endpoint(eid).id)
    nodes = gateway.discover(eid, job_id=job.id)
    summary = discovery_summary(nodes, before)
    state = "changed" if summary["changed"] or len(before) != len(nodes) else "unchanged"
    return state, None, None, None, summary


def _restart(gateway: Gateway, job: jobs.Job, item: jobs.JobItem, bundles: Bundles) -> Outcome:
    result = gateway.restart(item.endpoint_id or item.endpoint, job_id=job.id)
    return ("changed" if result.restarted else "unchanged"), result.message or None, None, None, \
        {"restarted": result.restarted}


def _verify(gateway: Gateway, job: jobs.Job, item: jobs.JobItem, bundles: Bundles) -> Outcome:
    checks = gateway.verify(item.endpoint_id or item.endpoint)
    bad = [c for c in checks if c["result"] not in ("ok", "not probed")]
    details = {"nodes": checks}
    if not checks and item.endpoint_id and not gateway.inventory.ever_discovered(item.endpoint_id) \
            and not gateway.inventory.nodes(item.endpoint_id):
        # nothing was compared: not a pass (an endpoint whose discovery always failed, or never ran)
        return "failed", (f"nothing to verify: no discovery of {item.endpoint!r} succeeded yet "
                          f"(run: tlsgate tls discover {item.endpoint})"), None, None, details
    if bad:
        kinds = sorted({c["result"] for c in bad})
        return "failed", f"{len(bad)} node(s) " + "/".join(kinds), None, None, details
    return "unchanged", None, None, None, details


_RUNNERS: dict[str, Callable[[Gateway, jobs.Job, jobs.JobItem, Bundles], Outcome]] = {
    "deploy": _deploy, "discover": _discover, "restart": _restart, "verify": _verify,
}


# -- executors -----------------------------------------------------------------------------------
class Executor(Protocol):
    """Runs job items somewhere: this process's threads, or a queue's workers."""

    def submit(self, job_id: int, item_id: int) -> Future[jobs.JobItem]: ...

    def close(self) -> None: ...


class ThreadExecutor:
    """In-process: a pool of ``parallel`` threads, each with its own Gateway (its own inventory
    connection; the registry is shared), calling :func:`run_item`."""

    def __init__(self, gateway: Gateway, parallel: int) -> None:
        self._base = gateway
        self._pool = ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="tlsgate-job")
        self._local = threading.local()
        self._opened: list[Gateway] = []
        self._lock = threading.Lock()
        self._bundles = Bundles()

    def _gateway(self) -> Gateway:
        gw = getattr(self._local, "gw", None)
        if gw is None:
            from .api import Gateway

            gw = Gateway(inventory=self._base.inventory.reopen(), registry=self._base.registry)
            self._local.gw = gw
            with self._lock:
                self._opened.append(gw)
        return gw

    def _run(self, job_id: int, item_id: int) -> jobs.JobItem:
        return run_item(self._gateway(), job_id, item_id, bundles=self._bundles)

    def submit(self, job_id: int, item_id: int) -> Future[jobs.JobItem]:
        return self._pool.submit(self._run, job_id, item_id)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._bundles.clear()
        for gw in self._opened:
            gw.close()


@attrs.define
class Progress:
    """Callbacks a front end passes to follow a run (all optional)."""

    started: Callable[[jobs.JobItem], None] | None = None
    finished: Callable[[jobs.JobItem], None] | None = None


def run_job(
    gateway: Gateway,
    job_id: int,
    *,
    parallel: int = 8,
    canary: int = 0,
    max_failures: int | None = None,
    item_ids: Sequence[int] | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> jobs.Job:
    """Run a job's pending items (or ``item_ids``): the first ``canary`` must all succeed before
    the rest start; after ``max_failures`` failures no new item starts (the rest end skipped).
    This process is the job's runner meanwhile (holder and heartbeat in the ``jobs`` row)."""
    check_run_options(parallel, canary, max_failures)
    if executor is None and queued(gateway):
        # PostgreSQL: the workers of each zone run the items; this process follows them
        from . import queue

        if item_ids is not None:
            queue.submit(gateway, job_id, item_ids, canary=canary, max_failures=max_failures)
        return queue.follow(gateway, job_id, progress)
    inventory = gateway.inventory
    holder = leases.new_holder()
    job = jobs.get(inventory, job_id, refresh=False)
    ids = list(item_ids) if item_ids is not None else [i.id for i in job.items if i.state == "pending"]
    jobs.take_over(inventory, job_id, holder, ids)
    beat = leases.Heartbeat(inventory.reopen, lambda inv: jobs.heartbeat(inv, job_id, holder), leases.ttl() / 3,
                            name=f"tlsgate-job-{job_id}").start()
    names = {i.id: i for i in job.items}
    own = executor is None
    executor = executor or ThreadExecutor(gateway, parallel)
    progress = progress or Progress()
    failures = 0
    try:
        queue = list(ids)
        if canary:
            first, queue = queue[:canary], queue[canary:]
            failures += _drain(executor, job_id, first, parallel, None, names, progress)
            if failures:
                jobs.skip_items(inventory, queue, f"not started: {failures} of the {len(first)} canary endpoint(s) failed")
                queue = []
        if queue:
            left = None if max_failures is None else max_failures - failures
            if left is not None and left <= 0:
                jobs.skip_items(inventory, queue, f"not started: --max-failures {max_failures} reached")
            else:
                failures += _drain(executor, job_id, queue, parallel, left, names, progress)
                # without a limit every item was started (one query each was spent finding none)
                rest = [] if left is None else [i for i in queue if jobs.item(inventory, i).state == "pending"]
                if rest:
                    jobs.skip_items(inventory, rest, f"not started: --max-failures {max_failures} reached")
    finally:
        beat.stop()
        if own:
            executor.close()
    return jobs.finish(inventory, job_id)


def _drain(executor: Executor, job_id: int, queue: list[int], parallel: int, max_failures: int | None,
           names: dict[int, jobs.JobItem], progress: Progress) -> int:
    """Run ``queue`` with at most ``parallel`` at once; stop starting new ones after
    ``max_failures`` failures. Returns the failures."""
    failures = 0
    pending = list(queue)
    running: dict[Future[jobs.JobItem], int] = {}
    while pending or running:
        while pending and len(running) < parallel and (max_failures is None or failures < max_failures):
            item_id = pending.pop(0)
            if progress.started and item_id in names:
                progress.started(names[item_id])
            running[executor.submit(job_id, item_id)] = item_id
        if not running:
            break
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for fut in done:
            running.pop(fut)
            result = fut.result()
            if result.state not in jobs.FINAL_OK:
                failures += 1
            if progress.finished:
                progress.finished(result)
    return failures


def retry(gateway: Gateway, job_id: int, **kwargs: Any) -> jobs.Job:
    """Re-run the items of a job that failed, were skipped or were interrupted."""
    job = jobs.get(gateway.inventory, job_id)
    if job.state == "running":
        raise ValidationError(f"job {job_id} is still running (on {job.gateway}); wait for it or for its runner to stop")
    ids = [i.id for i in job.items if i.state in jobs.RETRYABLE]
    if not ids:
        return job
    return run_job(gateway, job_id, item_ids=ids, **kwargs)
