"""Endpoint leases across real processes: a second job waits, then fails naming the holder; a
holder killed with SIGKILL does not block the endpoint for ever (broken at once on this gateway,
expired after the TTL when it ran on another gateway)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from tlsgate import leases
from tlsgate.inventory import open_inventory

TLSGATE = str(Path(sys.executable).with_name("tlsgate"))

HOLDER = textwrap.dedent("""
    import sys, time
    from tlsgate.api import Gateway
    gw = Gateway()
    ep = gw.endpoint(sys.argv[1])
    with gw.lease(ep, job_id=int(sys.argv[2])):
        print("held", flush=True)
        time.sleep(float(sys.argv[3]))
    print("released", flush=True)
""")


@pytest.fixture
def env(tlsgate_home: Path, tmp_path: Path, test_ca) -> dict[str, str]:  # type: ignore[no-untyped-def]
    e = {**os.environ, "TLSGATE_HOME": str(tlsgate_home), "TLSGATE_LEASE_TTL": "2", "TLSGATE_LEASE_WAIT": "20"}
    e.pop("TLSGATE_GATEWAY", None)
    pem = tmp_path / "site.pem"
    issued = test_ca.issue("web.test")
    pem.write_bytes(issued.cert_pem + issued.key_pem)
    for args in (["tls", "add", "pem", "--name", "web", "--connection_type", "local", "--path", str(pem)],
                 ["org", "add", "Acme"], ["tls", "delegate", "web", "--org", "Acme"]):
        subprocess.run([TLSGATE, *args], env=e, check=True, capture_output=True, text=True)
    return e


def _start_holder(env: dict[str, str], seconds: float, job: int = 7, gateway: str | None = None) -> subprocess.Popen[str]:
    e = dict(env)
    if gateway:
        e["TLSGATE_GATEWAY"] = gateway
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, "web", str(job), str(seconds)], env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "held", proc.stderr.read() if proc.stderr else line
    return proc


def test_second_process_waits_bounded_then_fails_naming_holder(env: dict[str, str]) -> None:
    holder = _start_holder(env, 30, job=7)
    try:
        t0 = time.monotonic()
        r = subprocess.run([TLSGATE, "tls", "restart", "web"], env={**env, "TLSGATE_LEASE_WAIT": "1"},
                           capture_output=True, text=True)
        waited = time.monotonic() - t0
        assert r.returncode == 1, r.stderr
        line = r.stderr.strip()
        assert line.startswith("error: endpoint web is busy (job 7 on "), line
        assert f"pid {holder.pid} since 20" in line
        assert "\n" not in line and "Traceback" not in r.stderr
        assert waited >= 1.0
    finally:
        holder.kill()
        holder.wait()


def test_second_process_gets_the_lease_when_the_first_releases(env: dict[str, str]) -> None:
    holder = _start_holder(env, 1.5)
    r = subprocess.run([TLSGATE, "tls", "restart", "web", "--json"], env=env, capture_output=True, text=True)
    assert holder.wait(10) == 0
    assert holder.stdout is not None and holder.stdout.read().strip() == "released"
    assert r.returncode == 0, r.stderr


def test_killed_holder_on_this_gateway_is_broken_at_once(env: dict[str, str], tlsgate_home: Path) -> None:
    holder = _start_holder(env, 60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    inv = open_inventory()
    try:
        ep_id = inv.get_endpoint("web").id
        assert leases.current(inv, ep_id) is not None  # the row outlives its holder
        t0 = time.monotonic()
        with leases.hold(inv, ep_id, "web", wait=1, lease_ttl=60):
            took = time.monotonic() - t0
        assert took < 1.0  # not the TTL: a pid on this gateway that is gone holds nothing
        assert leases.current(inv, ep_id) is None
    finally:
        inv.close()


def test_killed_holder_on_another_gateway_expires_after_its_ttl(env: dict[str, str]) -> None:
    holder = _start_holder(env, 60, job=9, gateway="gw-elsewhere")
    time.sleep(1.0)  # at least one heartbeat (TTL 2 s, every 0.67 s) renewed it
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    t_kill = time.monotonic()
    r = subprocess.run([TLSGATE, "tls", "restart", "web"], env=env, capture_output=True, text=True)
    took = time.monotonic() - t_kill
    assert r.returncode == 0, r.stderr
    assert 0.5 < took < 15  # waited for the expiry (we cannot see a pid on another gateway)


def test_heartbeat_keeps_a_long_job_leased(tlsgate_home: Path, env: dict[str, str]) -> None:
    """A job longer than the TTL keeps its lease (renewed), so nobody steals it mid-install."""
    inv = open_inventory()
    try:
        ep_id = inv.get_endpoint("web").id
        with leases.hold(inv, ep_id, "web", job_id=3, lease_ttl=0.6) as lease:
            time.sleep(1.5)  # 2.5 TTLs
            other = open_inventory()
            try:
                with pytest.raises(leases.EndpointBusy, match=r"endpoint web is busy \(job 3 on "):
                    with leases.hold(other, ep_id, "web", wait=0.3, lease_ttl=0.6):
                        pass
            finally:
                other.close()
            assert not lease.lost
    finally:
        inv.close()


def test_threads_of_one_process_exclude_each_other(tlsgate_home: Path, env: dict[str, str]) -> None:
    tlsgate_home / "inventory.sqlite3"
    inside: list[int] = []
    overlaps: list[int] = []
    errors: list[BaseException] = []

    def work(i: int) -> None:
        inv = open_inventory()
        try:
            ep_id = inv.get_endpoint("web").id
            for _ in range(3):
                with leases.hold(inv, ep_id, "web", job_id=i, wait=30):
                    inside.append(i)
                    if len(inside) > 1:
                        overlaps.append(i)
                    time.sleep(0.01)
                    inside.remove(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            inv.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not overlaps


def test_holder_strings() -> None:
    h = leases.new_holder()
    gw, pid = leases.parse_holder(h)
    assert pid == os.getpid() and gw == leases.gateway_name()
    assert not leases.holder_dead(h)  # ourselves
    assert leases.parse_holder("nonsense") == ("nonsense", None)
    assert not leases.holder_dead("nonsense")
