"""Gateways and zones on a real PostgreSQL (the session's private cluster): ``tlsgate worker``
processes in two zones run a ``cert deploy --all`` each endpoint exactly once on a worker of its
own zone; a worker killed (kill -9) mid-install is replaced by the other worker of its zone; a
PostgreSQL restart mid-job is survived; 200 jobs from 4 CLI processes at once each run once; a
renewal-style job grows and each item installs its own certificate."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _setup(estate, zones: dict[str, list[str]]) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    estate.ok("org", "add", "Acme")
    paths = {}
    for zone, names in zones.items():
        for name in names:
            paths[name] = estate.add_p12(name, zone)
            estate.ok("tls", "delegate", name, "--org", "Acme")
    return paths


def _deploy_files(estate, cn: str = "new.example"):  # type: ignore[no-untyped-def]
    issued = estate.ca.issue(cn)
    crt, key, chain = issued.write(estate.tmp / "new", "new")
    return issued, ["--cert", str(crt), "--key", str(key), "--chain", str(chain)]


def _installs(estate, endpoint: str) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    """The endpoint's install outcomes (the journal's ``started`` entries, written before the
    first change of each attempt, are not outcomes)."""
    return [e for e in estate.json("log")
            if e["action"] == "tls install" and e["endpoint"] == endpoint and e["result"] != "started"]


def test_deploy_all_runs_each_endpoint_once_on_its_zone(estate) -> None:  # type: ignore[no-untyped-def]
    zones = {"dmz": ["dmz-1", "dmz-2"], "pci": ["pci-1", "pci-2"]}
    _setup(estate, zones)
    estate.start_worker("gw-dmz", "dmz")
    estate.start_worker("gw-pci", "pci")
    estate.wait_gateways("gw-dmz", "gw-pci")
    listed = {g["name"]: g for g in estate.json("gateway", "list")}
    assert listed["gw-dmz"]["zones"] == ["dmz"] and listed["gw-pci"]["zones"] == ["pci"]
    assert any(p.startswith("keystores ") for p in listed["gw-dmz"]["plugins"])

    issued, files = _deploy_files(estate)
    job = estate.json("cert", "deploy", "--all", *files, "--yes")
    assert job["state"] == "done", job
    home = {name: f"gw-{zone}" for zone, names in zones.items() for name in names}
    assert sorted(i["endpoint"] for i in job["items"]) == sorted(home)
    for item in job["items"]:
        assert item["state"] == "changed" and item["attempts"] == 1, item
        assert item["gateway"] == home[item["endpoint"]], item
        assert item["after"] == issued.fingerprint
    # the audit log: one successful install per endpoint, by the gateway of its zone
    for name, gw in home.items():
        installs = _installs(estate, name)
        assert [(e["result"], e["gateway"]) for e in installs] == [("ok", gw)]
    # the inventory's nodes show the new certificate everywhere
    for name in home:
        nodes = estate.json("tls", "nodes", name)
        assert issued.fingerprint in {n["fingerprint"] for n in nodes}
    with estate.db() as db:
        assert db.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0


def test_no_wait_returns_the_job_id_and_the_workers_finish_it(estate) -> None:  # type: ignore[no-untyped-def]
    _setup(estate, {"lab": ["lab-1", "lab-2"]})
    _issued, files = _deploy_files(estate)
    # no worker serves the zone yet: the job is queued and the CLI says so
    queued = estate.json("cert", "deploy", "--all", *files, "--yes", "--no-wait")
    assert queued["state"] == "queued"
    job_id = queued["job"]
    shown = estate.json("job", "show", str(job_id))
    assert shown["state"] == "running" and {i["state"] for i in shown["items"]} == {"pending"}
    estate.start_worker("gw-lab", "lab")
    done = estate.wait_for(lambda: (j := estate.json("job", "show", str(job_id)))["state"] != "running" and j,
                           what="the queued job to finish")
    assert done["state"] == "done" and {i["gateway"] for i in done["items"]} == {"gw-lab"}
    # following a job whose zone nobody serves fails at once, naming the zone
    estate.stop_workers()
    res = estate.tg("tls", "verify", "--all")
    assert res.returncode == 1 and "no live worker serves zone(s) lab" in res.stderr


def test_kill_9_mid_install_is_retried_by_the_other_worker_of_the_zone(estate) -> None:  # type: ignore[no-untyped-def]
    paths = _setup(estate, {"dmz": ["victim"]})
    estate.start_worker("gw-a", "dmz", concurrency=1)
    estate.start_worker("gw-b", "dmz", concurrency=1)
    estate.wait_gateways("gw-a", "gw-b")
    issued, files = _deploy_files(estate)
    estate.hold(paths["victim"])  # the install blocks at its first read of the keystore
    job_id = estate.json("cert", "deploy", "--endpoint", "victim", *files, "--no-wait")["job"]

    def running_on() -> str | None:
        item = estate.json("job", "show", str(job_id))["items"][0]
        return item["gateway"] if item["state"] == "running" else None

    first = estate.wait_for(running_on, what="the install to start")
    other = "gw-b" if first == "gw-a" else "gw-a"
    estate.kill9(first)
    # the other worker takes the task over once the dead one's heartbeat and lease have expired
    estate.wait_for(lambda: (i := estate.json("job", "show", str(job_id))["items"][0])["gateway"] == other
                    and i["attempts"] == 2, timeout=90, what="the retry on the other worker")
    estate.release(paths["victim"])
    job = estate.wait_for(lambda: (j := estate.json("job", "show", str(job_id)))["state"] != "running" and j,
                          timeout=90, what="the job to finish")
    item = job["items"][0]
    assert job["state"] == "done" and item["state"] == "changed" and item["gateway"] == other, json.dumps(job)
    assert item["attempts"] == 2
    # changed exactly once: one successful install in the audit log, by the survivor
    installs = _installs(estate, "victim")
    assert [(e["result"], e["gateway"]) for e in installs] == [("ok", other)]
    retries = [e for e in estate.json("log") if e["action"] == "worker retry"]
    assert retries and retries[0]["result"] == "retried" and retries[0]["details"]["item_id"] == item["id"]
    assert issued.fingerprint in {n["fingerprint"] for n in estate.json("tls", "nodes", "victim")}
    with estate.db() as db:
        assert db.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0


def test_kill_9_after_the_write_the_retry_restores_its_own_attempt_first(estate) -> None:  # type: ignore[no-untyped-def]
    """The worker dies in the install script, the keystore already replaced: the other worker's
    retry of the same job item finds that attempt's unfinished backup set, puts the original back,
    then installs; the endpoint ends changed once, whole, and no lease or open set is left."""
    flag, marker = estate.tmp / "slow", estate.tmp / "script-running"
    flag.touch()
    script = estate.tmp / "slow.sh"
    script.write_text(f"#!/bin/sh\nif [ -e '{flag}' ]; then touch '{marker}'; sleep 120; fi\nexit 0\n")
    script.chmod(0o755)
    estate.ok("org", "add", "Acme")
    path = estate.add_p12("victim", "dmz", "--install_script", str(script))
    estate.ok("tls", "delegate", "victim", "--org", "Acme")
    estate.start_worker("gw-a", "dmz", concurrency=1)
    estate.start_worker("gw-b", "dmz", concurrency=1)
    estate.wait_gateways("gw-a", "gw-b")
    issued, files = _deploy_files(estate)
    job_id = estate.json("cert", "deploy", "--endpoint", "victim", *files, "--no-wait")["job"]
    estate.wait_for(marker.exists, what="the install script to run")
    first = estate.json("job", "show", str(job_id))["items"][0]["gateway"]
    other = "gw-b" if first == "gw-a" else "gw-a"
    flag.unlink()
    estate.kill9(first)  # the worker and the script it runs
    job = estate.wait_for(lambda: (j := estate.json("job", "show", str(job_id)))["state"] != "running" and j,
                          timeout=120, what="the job to finish on the other worker")
    item = job["items"][0]
    assert job["state"] == "done" and item["state"] == "changed" and item["gateway"] == other, json.dumps(job)
    assert [(e["result"], e["gateway"]) for e in _installs(estate, "victim")] == [("ok", other)]
    restores = [e for e in estate.json("log") if e["action"] == "backup restore"]
    assert [(e["result"], e["gateway"], e["details"]["retry_of"]) for e in restores] == [("restored", other, job_id)]
    assert issued.fingerprint in {n["fingerprint"] for n in estate.json("tls", "nodes", "victim")}
    from cryptography.hazmat.primitives.serialization import pkcs12

    pkcs12.load_pkcs12(path.read_bytes(), b"store-pw")  # whole
    assert "unfinished" not in {s["state"] for s in estate.json("backup", "list")}
    with estate.db() as db:
        assert db.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0


def test_postgres_restart_during_a_job(estate, postgres_cluster) -> None:  # type: ignore[no-untyped-def]
    paths = _setup(estate, {"dc1": ["r-1", "r-2"]})
    estate.start_worker("gw-r", "dc1", concurrency=2)
    estate.wait_gateways("gw-r")
    issued, files = _deploy_files(estate)
    for p in paths.values():
        estate.hold(p)
    job_id = estate.json("cert", "deploy", "--all", *files, "--yes", "--no-wait")["job"]
    estate.wait_for(lambda: all(i["state"] == "running" for i in estate.json("job", "show", str(job_id))["items"]),
                    what="both installs to start")
    postgres_cluster.restart()  # every connection is cut mid-job
    for p in paths.values():
        estate.release(p)
    job = estate.wait_for(lambda: (j := estate.json("job", "show", str(job_id)))["state"] != "running" and j,
                          timeout=120, what="the job to finish after the restart")
    assert job["state"] == "done", json.dumps(job)
    assert {i["state"] for i in job["items"]} <= {"changed", "unchanged"}
    for name in paths:
        assert issued.fingerprint in {n["fingerprint"] for n in estate.json("tls", "nodes", name)}
        assert [e["result"] for e in _installs(estate, name)] == ["ok"]
    # the worker is still alive and heartbeating on the new server
    assert estate.workers["gw-r"].poll() is None
    estate.wait_for(lambda: any(g["name"] == "gw-r" and g["alive"] for g in estate.json("gateway", "list")),
                    what="the worker's heartbeat after the restart")


def _documents(text: str) -> list[dict]:  # type: ignore[type-arg]
    """The JSON documents printed one after another."""
    decoder, out, pos = json.JSONDecoder(), [], 0
    while pos < len(text.rstrip()):
        while text[pos].isspace():
            pos += 1
        doc, pos = decoder.raw_decode(text, pos)
        out.append(doc)
    return out


CLIENT = """
import sys
from tlsgate.cli import main
for i in range(int(sys.argv[2])):
    name = f"c-{(int(sys.argv[1]) * 7 + i) % 8}"
    code = main(["tls", "discover", "--endpoint", name, "--no-wait", "--json"])
    if code != 0:
        sys.exit(code)
"""


def test_200_jobs_from_4_cli_processes_each_task_runs_once(estate) -> None:  # type: ignore[no-untyped-def]
    names = [f"c-{i}" for i in range(8)]
    _setup(estate, {"a": names[:4], "b": names[4:]})
    estate.start_worker("gw-a", "a", concurrency=4)
    estate.start_worker("gw-b", "b", concurrency=4)
    estate.wait_gateways("gw-a", "gw-b")
    from tlsgate_testing.fixtures_core import env_without_secrets

    env = {**env_without_secrets(), **estate.env}
    procs = [subprocess.Popen([sys.executable, "-c", CLIENT, str(n), "50"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in range(4)]
    job_ids = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        job_ids += [doc["job"] for doc in _documents(out)]
    assert len(set(job_ids)) == 200

    def all_done() -> bool:
        with estate.db() as db:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'running'").fetchone()[0] == 0

    estate.wait_for(all_done, timeout=300, what="200 jobs to finish")
    with estate.db() as db:
        states = collections.Counter(r[0] for r in db.execute("SELECT state FROM jobs").fetchall())
        items = db.execute("SELECT state, attempts, zone, gateway FROM job_items").fetchall()
        discovers = db.execute("SELECT COUNT(*) FROM audit WHERE action = 'tls discover' AND result = 'ok'").fetchone()[0]
        leases = db.execute("SELECT COUNT(*) FROM leases").fetchone()[0]
        tasks = db.execute("SELECT COUNT(*) FROM procrastinate_jobs WHERE status <> 'succeeded'").fetchone()[0]
    assert states == {"done": 200}
    assert len(items) == 200 and all(r[0] == "unchanged" or r[0] == "changed" for r in items)
    assert all(r[1] == 1 for r in items), "a task ran more than once"
    assert all(r[3] == f"gw-{r[2]}" for r in items)
    assert discovers == 200 and leases == 0 and tasks == 0


def test_periodic_verify_runs_once_per_tick_across_workers(estate) -> None:  # type: ignore[no-untyped-def]
    _setup(estate, {"a": ["p-1"]})
    estate.env["TLSGATE_VERIFY_CRON"] = "*/2 * * * * *"  # every 2 seconds (procrastinate's 6th field)
    estate.start_worker("gw-1", "a")
    estate.start_worker("gw-2", "a")
    estate.wait_gateways("gw-1", "gw-2")

    def periodic_jobs() -> list:  # type: ignore[type-arg]
        return [j for j in estate.json("job", "list") if j["params"].get("periodic") == "nightly-verify"]

    estate.wait_for(lambda: len(periodic_jobs()) >= 3, timeout=90, what="three periodic verify jobs")
    estate.stop_workers()
    jobs = periodic_jobs()
    ticks = collections.Counter(j["params"]["tick"] for j in jobs)
    assert all(n == 1 for n in ticks.values()), ticks  # each tick: one job, whichever worker deferred it
    assert len({j["gateway"] for j in jobs}) >= 1


def test_a_renewal_style_job_grows_and_each_item_installs_its_own_certificate(estate, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """What ``cert renew --deploy`` runs on a PostgreSQL inventory: one job whose items name
    their own certificates (job_items.params), items added to it later queued and run by the
    workers of their zone."""
    from tlsgate import CertificateBundle, fleet
    from tlsgate.api import Gateway

    _setup(estate, {"lab": ["lab-1", "lab-2"]})
    estate.start_worker("gw-lab", "lab")
    estate.wait_gateways("gw-lab")
    for k, v in estate.env.items():
        monkeypatch.setenv(k, v)
    gw = Gateway()
    try:
        issued = [estate.ca.issue(f"new{i}.example") for i in (1, 2)]
        cids = [gw.record_certificate_with_key(CertificateBundle.from_pem(c.cert_pem, c.key_pem, c.chain_pem),
                                               source="test") for c in issued]
        pick = {e.name: e for e in fleet.select(gw, fleet.Selection(all=True))}
        job_id = fleet.create_job(gw, "deploy", [pick["lab-1"]], {"renewal": True},
                                  item_params=[{"certificate_id": cids[0]}])
        assert fleet.run_job(gw, job_id).state == "done"
        ids = fleet.add_items(gw, job_id, [pick["lab-2"]], [{"certificate_id": cids[1]}])
        job = fleet.run_job(gw, job_id, item_ids=ids)
    finally:
        gw.close()
    assert job.state == "done", job
    assert [(i.endpoint, i.state, i.attempts, i.gateway, i.after) for i in job.items] == [
        ("lab-1", "changed", 1, "gw-lab", issued[0].fingerprint), ("lab-2", "changed", 1, "gw-lab", issued[1].fingerprint)]
    assert len(estate.json("job", "list")) == 1


def test_a_job_waiting_for_a_zones_worker_says_so_and_offers_no_retry_until_it_ends(estate) -> None:  # type: ignore[no-untyped-def]
    """No worker serves zone pci yet: the deploy exits 1 naming the zone; while the job waits,
    ``job show`` says it runs and how to follow it, not ``job retry`` (which refuses a running
    job, exit 2); once a worker of the zone starts, the job finishes. ``tls show`` names the
    endpoint's zone, also after ``tls set --zone``."""
    _setup(estate, {"pci": ["pci-1"]})
    _issued, files = _deploy_files(estate)
    res = estate.tg("cert", "deploy", "--all", *files, "--yes")
    assert res.returncode == 1 and "no live worker serves zone(s) pci" in res.stderr
    shown = estate.ok("job", "show", "1").stdout
    assert "Job 1 (deploy) running: 1 pending." in shown
    assert "job retry" not in shown and "Follow it with: tlsgate job show 1" in shown
    refused = estate.tg("job", "retry", "1")
    assert refused.returncode == 2 and "job 1 is still running" in refused.stderr
    assert ["zone", "pci"] in [line.split() for line in estate.ok("tls", "show", "pci-1").stdout.splitlines()]
    estate.start_worker("gw-pci", "pci")
    job = estate.wait_for(lambda: (j := estate.json("job", "show", "1"))["state"] == "done" and j, what="job 1 done")
    assert [i["state"] for i in job["items"]] == ["changed"]
    assert "job retry" not in estate.ok("job", "show", "1").stdout
    estate.ok("tls", "set", "pci-1", "--zone", "pci2")
    rows = [line.split() for line in estate.ok("tls", "show", "pci-1").stdout.splitlines()]
    assert ["zone", "pci2"] in rows and ["connection.type", "local"] in rows


def _issued_pem_endpoint(estate, bind_server, pebble_factory, monkeypatch,  # type: ignore[no-untyped-def]
                         domains: tuple[str, ...], endpoint: str, zone: str) -> tuple[list[int], Path]:
    """A real Pebble + BIND account, a certificate (dns-01) for each of ``domains`` assigned to
    Acme, and a PEM store endpoint ``endpoint`` in ``zone`` serving the first one, discovered.
    Returns the certificate IDs and the store's path."""
    from tlsgate_testing.fixtures_core import free_port

    pebble = pebble_factory(http_port=free_port())
    estate.ok("dns", "add", "bind", "rfc2136", "--server", "127.0.0.1", "--port", str(bind_server.port), "--zone",
              "test", "--tsig_key_name", bind_server.key_name, "--tsig_secret", "-", stdin=bind_server.key_secret + "\n")
    estate.ok("acme", "add", "pebble", "--directory", pebble.directory, "--email", "ops@example.test",
              "--ca_bundle", str(pebble.ca_bundle), "--agree_tos")
    estate.ok("org", "add", "Acme")
    ids = [estate.json("cert", "request", "--acme", "pebble", "--challenge", "dns-01", "--dns", "bind",
                       "--domain", d, "--org", "Acme", timeout=120)["certificate_id"] for d in domains]
    for k, v in estate.env.items():
        monkeypatch.setenv(k, v)
    from tlsgate.api import Gateway

    gw = Gateway()
    try:
        bundle = gw.lifecycle.bundle(ids[0])
    finally:
        gw.close()
    store = estate.tmp / f"{domains[0].split('.')[0]}.pem"
    store.write_bytes(bundle.fullchain_pem() + bundle.key_pem())
    estate.ok("tls", "add", "pem", "--name", endpoint, "--connection_type", "local", "--path", str(store), "--zone", zone)
    estate.ok("tls", "delegate", endpoint, "--org", "Acme")
    estate.ok("tls", "discover", endpoint)
    return ids, store


def test_renewal_goes_on_when_a_zone_has_no_worker_and_the_rollout_waits_for_it(estate, bind_server, pebble_factory,  # type: ignore[no-untyped-def]
                                                                               monkeypatch) -> None:
    """``cert renew --deploy`` on a PostgreSQL estate whose zone pci has no live worker (a
    gateway down for maintenance): the run still renews every due certificate and says which
    rollout waits for which zone (exit 1: not deployed everywhere), never queues the same rollout
    twice, and once a pci worker starts the queued rollout runs; the next run finishes the rest."""
    (a, b), store = _issued_pem_endpoint(estate, bind_server, pebble_factory, monkeypatch,
                                         ("a.test", "b.test"), "pci-a", "pci")

    first = estate.tg("cert", "renew", "--days", "3650", "--deploy", "--cert", str(a), timeout=120)
    assert first.returncode == 1, (first.stdout, first.stderr)
    certs = {c["id"]: c for c in estate.json("cert", "list")}
    a2 = certs[a]["superseded_by"]
    assert f"{a} (a.test): renewed as {a2}" in first.stdout, first.stdout
    assert "  deploy to pci-a: queued: no live worker serves zone pci (start tlsgate worker --zone pci" in first.stdout
    assert first.stderr == "" and "job retry" not in first.stdout  # refused while the job waits
    assert "queued items run when a worker of their zone starts" in first.stdout

    second = estate.tg("cert", "renew", "--days", "3650", "--deploy", timeout=120)
    assert second.returncode == 1, (second.stdout, second.stderr)
    certs = {c["id"]: c for c in estate.json("cert", "list")}
    assert certs[b]["superseded_by"] is not None, second.stdout  # renewed although zone pci is down
    a3 = certs[a2]["superseded_by"]
    assert f"rollout {a} -> {a2} on pci-a: queued: already queued in job 1" in second.stdout, second.stdout
    assert len(estate.json("job", "list")) == 1  # the waiting rollout was not queued a second time

    estate.start_worker("gw-pci", "pci")
    estate.wait_for(lambda: estate.json("job", "show", "1")["state"] == "done", what="job 1 done")
    assert _served(store) == certs[a2]["fingerprint"]
    third = estate.tg("cert", "renew", "--deploy", "--json", timeout=120)
    assert third.returncode == 0, (third.stdout, third.stderr)
    assert [(r["old_certificate_id"], r["new_certificate_id"], r["ok"]) for r in json.loads(third.stdout)["rollouts"]] \
        == [(a2, a3, True)]
    assert _served(store) == certs[a3]["fingerprint"]


def _served(path: Path) -> str:
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(x509.load_pem_x509_certificates(path.read_bytes())[0].public_bytes(Encoding.DER)).hexdigest()


def test_the_periodic_renewal_on_a_one_thread_worker_finishes_a_pending_rollout(estate, bind_server,  # type: ignore[no-untyped-def]
                                                                               pebble_factory, monkeypatch) -> None:
    """The estate's periodic renewal run (procrastinate periodic task, ``TLSGATE_RENEW_CRON``)
    on the zone's only worker, ``--concurrency 1``: it queues the pending rollout for the
    workers instead of waiting inside its own task slot for a task that only that slot could
    run (which never ended), and the worker then deploys it."""
    (a,), store = _issued_pem_endpoint(estate, bind_server, pebble_factory, monkeypatch, ("tick.test",), "lab-a", "lab")
    estate.ok("cert", "renew", "--days", "3650", "--cert", str(a), timeout=120)  # renewed, not deployed: pending
    a2 = {c["id"]: c for c in estate.json("cert", "list")}[a]["superseded_by"]
    fp = {c["id"]: c["fingerprint"] for c in estate.json("cert", "list")}[a2]

    estate.env["TLSGATE_RENEW_CRON"] = "*/3 * * * * *"  # every 3 seconds (procrastinate's 6th field)
    estate.start_worker("gw-lab", "lab", concurrency=1)
    estate.wait_gateways("gw-lab")
    estate.wait_for(lambda: _served(store) == fp, timeout=60, what="the pending rollout deployed by the periodic run")
    estate.wait_for(lambda: {c["id"]: c for c in estate.json("cert", "list")}[a]["status"] == f"superseded by {a2}",
                    timeout=30, what="the rollout recorded")


# procrastinate 3.x internals reshaped as a later 3.x might: the same behaviour, other signatures.
# Loaded into the worker process through sitecustomize (before tlsgate builds its classes).
_RESHAPED = '''
import procrastinate
from procrastinate.worker import Worker

_loop_notify = procrastinate.PsycopgConnector._loop_notify
_log_extra = Worker._log_extra


async def reshaped_loop_notify(self, **kwargs):
    return await _loop_notify(self, **kwargs)


def reshaped_log_extra(self, *args, **kwargs):
    return _log_extra(self, *args, **kwargs)


procrastinate.PsycopgConnector._loop_notify = reshaped_loop_notify
Worker._log_extra = reshaped_log_extra
'''


def test_a_procrastinate_whose_internals_changed_runs_its_stock_worker(estate) -> None:  # type: ignore[no-untyped-def]
    """tlsgate's leaner worker path overrides private methods of procrastinate 3.x; a 3.x that
    reshapes them must not stop a gateway: the worker says so and runs procrastinate's stock
    connector and worker, and the job completes as before."""
    import os

    shim = estate.tmp / "reshaped"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(_RESHAPED)
    estate.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(shim), os.environ.get("PYTHONPATH")) if p)
    _setup(estate, {"old": ["old-1", "old-2"]})
    estate.start_worker("gw-stock", "old")
    estate.wait_gateways("gw-stock")
    del estate.env["PYTHONPATH"]  # the CLI itself runs unchanged
    issued, files = _deploy_files(estate)
    job = estate.json("cert", "deploy", "--all", *files, "--yes")
    assert job["state"] == "done", (job, estate.worker_log("gw-stock"))
    assert sorted((i["endpoint"], i["state"], i["after"]) for i in job["items"]) == [
        ("old-1", "changed", issued.fingerprint), ("old-2", "changed", issued.fingerprint)]
    log = estate.worker_log("gw-stock")
    assert "using procrastinate's stock PsycopgConnector" in log, log
    assert "using procrastinate's stock Worker" in log, log


def test_the_installed_procrastinate_gets_the_leaner_worker_path() -> None:
    """The check above must not fall back on the procrastinate this project pins: the queue
    overhead benchmark's numbers are the leaner path's."""
    from tlsgate import queue

    assert queue._worker_connector_class().__name__ == "WorkerConnector"
    assert queue._worker_class().__name__ == "TlsgateWorker"
