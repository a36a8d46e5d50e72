"""Benchmark: the PostgreSQL job queue (issue 13). One command:

    .venv/bin/python benchmarks/job_queue.py                       # both parts
    .venv/bin/python benchmarks/job_queue.py --only overhead --tasks 500
    .venv/bin/python benchmarks/job_queue.py --only deploy --endpoints 200

A private PostgreSQL cluster (initdb + pg_ctl, 127.0.0.1, a free port) is started here.

1. ``overhead``: 500 no-op tasks (``tlsgate.noop``, one per endpoint item) deferred in one
   transaction into a zone's queue and run by 4 ``tlsgate worker`` processes (concurrency 1),
   against the same 500 calls in this process on 4 threads. Per-task overhead = (queue wall -
   in-process wall) x 4 workers / 500 tasks: the time a worker spends per task on the queue
   (fetch with SKIP LOCKED, status updates, deletion) (target <= 5 ms). Workers are started and
   registered before the clock starts. Then the floor under any worker: the same tasks taken by
   one bare asyncio client (procrastinate's fetch and finish calls, the thread hop; no pool, no
   procrastinate worker), CPU per task of the client and of PostgreSQL.
2. ``deploy``: one certificate to 200 p12 endpoints over a real loopback sshd as a
   ``cert deploy`` job: 2 ``tlsgate worker`` processes x ``--concurrency 8`` on a PostgreSQL
   inventory, against ``fleet.run_job(parallel=16)`` in one process on a SQLite inventory (the
   single-gateway default). Reports both walls and the ratio queue / in-process.

Needs root for part 2 (the sshd fixture's test account).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

PW = "changeit"


def _cluster(base: Path) -> Any:
    from tlsgate_testing.postgres import PostgresCluster

    cluster = PostgresCluster(base)
    cluster.init()
    cluster.start()
    cluster.make_template()
    return cluster


def _env(url: str, home: Path, key: str) -> dict[str, str]:
    return {**os.environ, "TLSGATE_DATABASE_URL": url, "TLSGATE_HOME": str(home), "TLSGATE_MASTER_KEY": key,
            "TLSGATE_WORKER_HEARTBEAT": "1", "TLSGATE_JOB_RUNNER": "queue", "TLSGATE_LOG_LEVEL": "WARNING"}


def _workers(env: dict[str, str], base: Path, zone: str, count: int, concurrency: int) -> list[subprocess.Popen]:  # type: ignore[type-arg]
    procs = []
    for i in range(count):
        log = open(base / f"worker-{i}.log", "wb")
        procs.append(subprocess.Popen([sys.executable, "-m", "tlsgate", "worker", "--zone", zone, "--gateway",
                                       f"bench-{i}", "--concurrency", str(concurrency)], env=env, stdout=log,
                                      stderr=subprocess.STDOUT))
    return procs


def _wait_registered(url: str, count: int) -> None:
    from tlsgate.inventory import Inventory
    from tlsgate.queue import gateways

    inv = Inventory(url=url)
    try:
        end = time.monotonic() + 120
        while sum(1 for g in gateways(inv) if g["alive"]) < count:
            if time.monotonic() > end:
                raise TimeoutError("workers did not register")
            time.sleep(0.2)
        time.sleep(1.5)  # their procrastinate workers are listening too
    finally:
        inv.close()


def _tree_cpu(*roots: int) -> float:
    """CPU seconds (user + system) used so far by each root process and its whole tree: every
    live descendant, and the children each has waited for (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]) / tick)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [r for r in roots if r in stats]
    while todo:
        pid = todo.pop()
        total += stats[pid][1]
        todo += children.get(pid, [])
    return total


def _cpu(procs: list[subprocess.Popen]) -> float:  # type: ignore[type-arg]
    return _tree_cpu(*(p.pid for p in procs))


def _postmaster(cluster: Any) -> int:
    return int((cluster.data / "postmaster.pid").read_text().split()[0])


def _stop(procs: list[subprocess.Popen]) -> None:  # type: ignore[type-arg]
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(60)


def bench_overhead(tasks: int, workers: int = 4) -> dict[str, float]:
    from cryptography.fernet import Fernet
    from tlsgate import queue
    from tlsgate.inventory import Inventory

    base = Path(tempfile.mkdtemp(prefix="tlsgate-bench-queue-"))
    cluster = _cluster(base)
    try:
        url = cluster.new_database()
        (base / "home").mkdir(mode=0o700)
        env = _env(url, base / "home", Fernet.generate_key().decode())
        procs = _workers(env, base, "bench", workers, 1)
        try:
            _wait_registered(url, workers)
            inv = Inventory(url=url)
            cpu0, pg0 = _cpu(procs), _tree_cpu(_postmaster(cluster))
            t = time.perf_counter()
            with inv.write() as db:
                queue.defer_items(db, [(0, i, "bench") for i in range(tasks)], task=queue.TASK_NOOP)
            while inv.db.execute("SELECT COUNT(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')").fetchone()[0]:
                time.sleep(0.01)
            queued = time.perf_counter() - t
            worker_cpu, pg_cpu = _cpu(procs) - cpu0, _tree_cpu(_postmaster(cluster)) - pg0
            inv.close()
        finally:
            _stop(procs)
        floor = _bare_client(url, tasks, cluster)
        t, c = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda i: queue._noop_task(0, i), range(tasks)))
        local, local_cpu = time.perf_counter() - t, time.process_time() - c
    finally:
        cluster.stop("immediate")
    return {"tasks": tasks, "workers": workers, "queue_s": queued, "inprocess_s": local,
            "overhead_ms_per_task": (queued - local) * workers / tasks * 1000,
            "throughput_ms_per_task": (queued - local) / tasks * 1000,
            "worker_cpu_ms_per_task": worker_cpu / tasks * 1000, "postgres_cpu_ms_per_task": pg_cpu / tasks * 1000,
            "inprocess_cpu_ms_per_task": local_cpu / tasks * 1000, **floor}


def _bare_client(url: str, tasks: int, cluster: Any) -> dict[str, float]:
    """The floor under a worker: the same tasks deferred, then taken by one bare asyncio client
    (uvloop, one psycopg connection, no pool, no procrastinate worker) that does per task what a
    worker cannot do without: procrastinate's fetch and finish calls (its SQL functions, the
    statements its worker sends) and the hop of a sync task to a thread and back. CPU per task
    of the client and of PostgreSQL."""
    import asyncio

    import psycopg
    from psycopg.rows import dict_row
    from tlsgate import queue
    from tlsgate.inventory import Inventory

    inv = Inventory(url=url)
    try:
        with inv.write() as db:
            queue.defer_items(db, [(0, i, "bench") for i in range(tasks)], task=queue.TASK_NOOP)
    finally:
        inv.close()
    fetch = ("SELECT id, status, task_name, priority, lock, queueing_lock, args, scheduled_at, queue_name, attempts, "
             "abort_requested FROM procrastinate_fetch_job_v2(%(queues)s::varchar[], %(worker_id)s)")

    async def run() -> float:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            worker = (await (await conn.execute("SELECT procrastinate_register_worker_v1()")).fetchone())[0]
            loop = asyncio.get_running_loop()
            c = time.process_time()
            for i in range(tasks):
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(fetch, {"queues": [queue.zone_queue("bench"), queue.ESTATE_QUEUE], "worker_id": worker})
                row = await cur.fetchone()
                assert row is not None and row["id"] is not None
                await loop.run_in_executor(None, queue._noop_task, 0, i)
                await conn.execute("SELECT procrastinate_finish_job_v1(%(job_id)s, %(status)s, %(delete_job)s)",
                                   {"job_id": row["id"], "status": "succeeded", "delete_job": True})
            return time.process_time() - c

    pg = _tree_cpu(_postmaster(cluster))
    with asyncio.Runner(loop_factory=queue._loop_factory()) as runner:
        client = runner.run(run())
    return {"floor_client_cpu_ms_per_task": client / tasks * 1000,
            "floor_postgres_cpu_ms_per_task": (_tree_cpu(_postmaster(cluster)) - pg) / tasks * 1000}


def bench_deploy(n: int, legacy: bool = True) -> dict[str, float]:
    from cryptography.fernet import Fernet
    from tlsgate import CertificateBundle, fleet
    from tlsgate.api import Gateway
    from tlsgate.inventory import Inventory
    from tlsgate_testing.certs import TestCA
    from tlsgate_testing.sshd import start_sshd, stop_sshd

    ca = TestCA()
    base = Path(tempfile.mkdtemp(prefix="tlsgate-bench-qdeploy-"))
    server = start_sshd(base / "sshd")
    cluster = _cluster(Path(tempfile.mkdtemp(prefix="tlsgate-bench-pg-")))
    key = Fernet.generate_key().decode()
    out: dict[str, float] = {"endpoints": n}
    saved = {k: os.environ.get(k) for k in ("TLSGATE_HOME", "HOME", "TLSGATE_MASTER_KEY", "TLSGATE_DATABASE_URL",
                                            "TLSGATE_JOB_RUNNER")}
    try:
        home = base / "home"
        home.mkdir(mode=0o700)
        os.environ.update({"TLSGATE_HOME": str(home), "HOME": str(base), "TLSGATE_MASTER_KEY": key})
        os.environ.pop("TLSGATE_DATABASE_URL", None)
        old = ca.issue("bench.test")

        def populate(gw: Gateway, tag: str) -> list[Any]:
            gw.add_org("Bench")
            for i in range(n):
                p = base / f"{tag}{i:03d}.p12"
                p.write_bytes(old.pfx(PW))
                gw.add_endpoint("p12", name=f"{tag}-{i:03d}", connection_type="ssh", host=server.host,
                                port=server.port, user="root", ssh_key_path=str(server.root_key.path),
                                options={"path": str(p), "store_password": PW, "is_legacy": legacy}, zone="bench")
                gw.delegate(f"{tag}-{i:03d}", "Bench")
                if i == 0:
                    gw.trust_host_key(f"{tag}-000", gw.host_key(f"{tag}-000")[2])
            return fleet.select(gw, fleet.Selection(all=True))

        def bundle() -> CertificateBundle:
            issued = ca.issue("bench.test")
            return CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)

        # in-process, SQLite, --parallel 16
        gw = Gateway()
        endpoints = populate(gw, "l")
        cid = gw.record_certificate_with_key(bundle(), source="bench")
        job_id = fleet.create_job(gw, "deploy", endpoints, {"certificate_id": cid})
        t, c, s0 = time.perf_counter(), time.process_time(), _tree_cpu(server.pid)
        job = fleet.run_job(gw, job_id, parallel=16)
        out["inprocess_s"] = time.perf_counter() - t
        out["inprocess_cpu_s"] = time.process_time() - c
        time.sleep(0.5)  # the last sessions are reaped
        out["inprocess_sshd_cpu_s"] = _tree_cpu(server.pid) - s0
        assert job.ok, [(i.endpoint, i.reason) for i in job.items if i.state != "changed"][:3]
        gw.close()

        # the queue: PostgreSQL, 2 workers x 8
        url = cluster.new_database()
        os.environ["TLSGATE_DATABASE_URL"] = url
        os.environ["TLSGATE_JOB_RUNNER"] = "queue"
        gw = Gateway(inventory=Inventory(url=url))
        endpoints = populate(gw, "q")
        procs = _workers(_env(url, home, key), base, "bench", 2, 8)
        try:
            _wait_registered(url, 2)
            cid = gw.record_certificate_with_key(bundle(), source="bench")
            pg = _postmaster(cluster)
            t, c, w0, p0, s0 = time.perf_counter(), time.process_time(), _cpu(procs), _tree_cpu(pg), _tree_cpu(server.pid)
            job_id = fleet.create_job(gw, "deploy", endpoints, {"certificate_id": cid})
            job = fleet.run_job(gw, job_id)
            out["queue_s"] = time.perf_counter() - t
            out["queue_follower_cpu_s"] = time.process_time() - c
            time.sleep(0.5)
            out["queue_workers_cpu_s"], out["queue_postgres_cpu_s"] = _cpu(procs) - w0, _tree_cpu(pg) - p0
            out["queue_sshd_cpu_s"] = _tree_cpu(server.pid) - s0
            assert job.ok, [(i.endpoint, i.reason) for i in job.items if i.state != "changed"][:3]
        finally:
            _stop(procs)
            gw.close()
        out["ratio_queue_over_inprocess"] = out["queue_s"] / out["inprocess_s"]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        stop_sshd(server)
        cluster.stop("immediate")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=("overhead", "deploy"))
    ap.add_argument("--tasks", type=int, default=500)
    ap.add_argument("--endpoints", type=int, default=200)
    ap.add_argument("--p12_profile", choices=("legacy", "modern"), default="legacy",
                    help="legacy (2,048 PBE rounds: the orchestration shows) or modern (600,000 PBKDF2 rounds per "
                         "key derivation: ~1.5 s CPU per endpoint, which then dominates)")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if args.only in (None, "overhead"):
        r = bench_overhead(args.tasks)
        print(f"overhead: {r['tasks']} no-op tasks, {r['workers']} workers: queue {r['queue_s']:.2f} s, "
              f"in-process {r['inprocess_s']:.4f} s -> {r['overhead_ms_per_task']:.2f} ms per task of a worker's time "
              f"(target <= 5), {r['throughput_ms_per_task']:.2f} ms per task of the run's wall; CPU per task: "
              f"workers {r['worker_cpu_ms_per_task']:.2f} ms + PostgreSQL {r['postgres_cpu_ms_per_task']:.2f} ms "
              f"(in-process {r['inprocess_cpu_ms_per_task']:.3f} ms)")
        print(f"  floor: one bare asyncio client doing procrastinate's fetch + finish and the thread hop per task: "
              f"CPU per task {r['floor_client_cpu_ms_per_task']:.2f} ms + PostgreSQL "
              f"{r['floor_postgres_cpu_ms_per_task']:.2f} ms")
    if args.only in (None, "deploy"):
        r = bench_deploy(args.endpoints, legacy=args.p12_profile == "legacy")
        print(f"deploy: {r['endpoints']} p12 endpoints ({args.p12_profile}) over ssh: queue (2 workers x 8) "
              f"{r['queue_s']:.1f} s wall, in-process --parallel 16 {r['inprocess_s']:.1f} s wall -> ratio "
              f"{r['ratio_queue_over_inprocess']:.2f}")
        print(f"  CPU: queue: workers {r['queue_workers_cpu_s']:.1f} s + PostgreSQL {r['queue_postgres_cpu_s']:.1f} s "
              f"+ follower {r['queue_follower_cpu_s']:.1f} s + sshd {r['queue_sshd_cpu_s']:.1f} s; in-process: "
              f"{r['inprocess_cpu_s']:.1f} s + sshd {r['inprocess_sshd_cpu_s']:.1f} s")


if __name__ == "__main__":
    main()
