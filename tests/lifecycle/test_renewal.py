"""Renewal against a real Pebble and BIND: nothing due does nothing (exit 0); a forced renewal
with --deploy replaces the certificate on every node that served the old one; a rollout that did
not reach every node stays "superseded, not yet deployed everywhere" until ``job retry`` or
a later ``cert renew --deploy`` finishes it (all of a run's rollouts are one fleet job); two runs at once renew a certificate once; a failed renewal
keeps the old certificate and says when it expires."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from tlsgate_testing.fixtures_core import free_port
from tlsgate_testing.lifecycle import tg, tg_json

from .test_acme_dns01 import add_account, add_dns

pytestmark = pytest.mark.slow


def _served_fp(path: Path) -> str:
    cert = x509.load_pem_x509_certificates(path.read_bytes())[0]
    return hashlib.sha256(cert.public_bytes(__import__("cryptography.hazmat.primitives.serialization",
                                                       fromlist=["Encoding"]).Encoding.DER)).hexdigest()


@pytest.fixture
def issued(tlsgate_home, bind_server, pebble_factory):  # type: ignore[no-untyped-def]
    pebble = pebble_factory(http_port=free_port())
    add_dns(bind_server)
    add_account(pebble)
    tg("org", "add", "Acme")
    out = tg_json("cert", "request", "--acme", "pebble", "--challenge", "dns-01", "--dns", "bind",
                  "--domain", "roll.test", "--org", "Acme")
    return pebble, out["certificate_id"]


def _pem_endpoint(tmp_path: Path, name: str, cert_id: int) -> Path:
    """A local pem endpoint holding ``cert_id``, delegated and discovered."""
    from tlsgate.api import Gateway

    target = tmp_path / f"{name}.pem"
    gw = Gateway()
    try:
        bundle = gw.lifecycle.bundle(cert_id)
        target.write_bytes(bundle.fullchain_pem() + bundle.key_pem())
        target.chmod(0o600)
    finally:
        gw.close()
    tg("tls", "add", "pem", "--name", name, "--connection_type", "local", "--path", str(target))
    tg("tls", "delegate", name, "--org", "Acme")
    tg("tls", "discover", name)
    return target


def test_nothing_due_does_nothing(issued) -> None:  # type: ignore[no-untyped-def]
    _pebble, cert_id = issued
    before = tg_json("cert", "list"), tg_json("job", "list"), tg_json("log")
    res = tg("cert", "renew")  # exit 0 (asserted by tg)
    assert f"{cert_id} (roll.test): not due (renew at " in res.stdout and "lifetime" in res.stdout
    report = tg_json("cert", "renew", "--deploy")
    assert report["ok"] is True and report["job"] is None and report["rollouts"] == []
    assert [c["action"] for c in report["certificates"]] == ["not due"]
    # nothing recorded, no job, no audit entry: the run did nothing
    assert (tg_json("cert", "list"), tg_json("job", "list"), tg_json("log")) == before


def _request(name: str, *extra: str) -> int:
    return int(tg_json("cert", "request", "--acme", "pebble", "--challenge", "dns-01", "--dns", "bind",
                       "--domain", name, "--org", "Acme", *extra)["certificate_id"])


def _tty(*args: str) -> str:
    """``tlsgate ARGS`` on a pseudo-terminal (the rich renderer), wide enough for every column."""
    import os
    import pty

    main_fd, sub_fd = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tlsgate", *args], stdout=sub_fd, stderr=sub_fd, stdin=sub_fd,
                            env={**os.environ, "COLUMNS": "400", "LINES": "50", "TERM": "xterm"}, close_fds=True)
    os.close(sub_fd)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main_fd)
    assert proc.wait(timeout=60) == 0
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))  # no SGR codes


def test_renew_deploy_is_one_job_reaching_every_node_and_finishing_pending_rollouts(issued, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import json

    _pebble, old = issued
    other = _request("roll2.test", "--domain", "www.roll2.test", "--key_type", "ec384")
    a = _pem_endpoint(tmp_path, "store-a", old)
    b = _pem_endpoint(tmp_path, "store-b", old)
    c = _pem_endpoint(tmp_path, "store-c", other)
    jobs_before = len(tg_json("job", "list"))
    away = b.rename(tmp_path / "store-b.away")  # store-b cannot be reached for now
    res = tg("cert", "renew", "--days", "3650", "--deploy", "--json", check=False)
    assert res.returncode == 1
    report = json.loads(res.stdout)
    by_id = {i["certificate_id"]: i for i in report["certificates"]}
    new, new_other = by_id[old]["new_certificate_id"], by_id[other]["new_certificate_id"]
    assert by_id[old]["action"] == by_id[other]["action"] == "renewed"
    assert {e["endpoint"]: e["action"] for e in by_id[old]["deploy"]} == {"store-a": "deployed", "store-b": "failed"}
    assert {e["endpoint"]: e["action"] for e in by_id[other]["deploy"]} == {"store-c": "deployed"}

    # the rollouts of both renewed certificates are ONE job of the inventory, one item per endpoint
    job = report["job"]
    assert isinstance(job, int) and by_id[old]["job"] == by_id[other]["job"] == job
    assert len(tg_json("job", "list")) == jobs_before + 1
    shown = tg_json("job", "show", str(job))
    assert shown["kind"] == "deploy" and shown["state"] == "failed"
    assert sorted((i["endpoint"], i["params"]["old_certificate_id"], i["params"]["certificate_id"], i["state"])
                  for i in shown["items"]) == [("store-a", old, new, "changed"), ("store-b", old, new, "failed"),
                                               ("store-c", other, new_other, "changed")]
    plain = tg("job", "show", str(job)).stdout
    assert plain.splitlines()[1].split() == ["Endpoint", "Certificate", "State", "Before", "After", "Reason"]
    assert next(line for line in plain.splitlines() if line.startswith("store-b")).split()[1:5] == [
        str(old), "->", str(new), "failed"]
    assert f"tlsgate job retry {job}" in plain
    human = tg("cert", "renew", "--deploy", "--dry-run").stdout
    assert f"rollout {old} -> {new} on store-b: would deploy" in human

    listing = {c["id"]: c for c in tg_json("cert", "list")}
    status = f"superseded by {new}, not yet deployed everywhere (1 node(s) still serve it)"
    assert listing[old]["status"] == status and listing[other]["status"] == f"superseded by {new_other}"
    assert status in tg("cert", "list").stdout
    assert tg_json("cert", "show", str(old))["status"] == status
    assert f"Status        {status}" in tg("cert", "show", str(old)).stdout
    expiring = {c["id"]: c for c in tg_json("cert", "expiring", "--days", "0")}  # listed whatever its end date
    assert [n["endpoint"] for n in expiring[old]["nodes"]] == ["store-b"] and new not in expiring
    assert expiring[old]["status"] == status
    # the same columns, and the status, in the plain table (stdout piped) and the rich one (a terminal)
    columns = ["ID", "Subject", "Not after", "Days left", "Endpoint", "Node", "Port", "Status"]
    piped = tg("cert", "expiring", "--days", "0").stdout.splitlines()
    assert re.split(r"\s{2,}", piped[0].strip()) == columns
    row = next(line for line in piped if line.startswith(f"{old} "))
    assert "store-b" in row and row.endswith(status)
    rich = _tty("cert", "expiring", "--days", "0")
    header = next(line for line in rich.splitlines() if "Subject" in line)
    assert [h.strip() for h in header.strip("┃│ \r").replace("┃", "│").split("│")] == columns
    assert status in rich
    new_fp = listing[new]["fingerprint"]
    assert _served_fp(a) == new_fp and _served_fp(away) == listing[old]["fingerprint"]
    assert _served_fp(c) == listing[new_other]["fingerprint"]
    # renewed with the same names, key type and challenge, in the same organization
    assert listing[new_other]["names"] == ["roll2.test", "www.roll2.test"] and listing[new_other]["organization"] == "Acme"
    assert listing[new_other]["renewal"] == listing[other]["renewal"] and listing[new_other]["renewal"]["key_type"] == "ec384"
    assert x509.load_pem_x509_certificates(c.read_bytes())[0].public_key().curve.name == "secp384r1"  # type: ignore[union-attr]

    # job retry finishes the job (the same one), and with it the rollout
    away.rename(b)
    retried = tg("job", "retry", str(job), "--json")
    assert json.loads(retried.stdout)["state"] == "done"
    assert _served_fp(b) == new_fp
    assert {c["id"]: c for c in tg_json("cert", "list")}[old]["status"] == f"superseded by {new}"
    done = tg_json("cert", "renew", "--deploy")
    assert done["ok"] and done["rollouts"] == [] and done["job"] is None
    assert len(tg_json("job", "list")) == jobs_before + 1


def test_a_later_renew_deploy_finishes_pending_rollouts_first_in_its_one_job(issued, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import json

    _pebble, old = issued
    a = _pem_endpoint(tmp_path, "store-a", old)
    b = _pem_endpoint(tmp_path, "store-b", old)
    away = b.rename(tmp_path / "store-b.away")
    first = json.loads(tg("cert", "renew", "--days", "3650", "--deploy", "--json", check=False).stdout)
    new = first["certificates"][0]["new_certificate_id"]
    away.rename(b)
    # renew the new certificate too: the pending rollout (old -> new on store-b) runs first, then
    # the newest certificate goes to every node serving `new` (store-a, and store-b, just rolled)
    second = tg_json("cert", "renew", "--days", "3650", "--deploy", "--cert", str(new))
    assert second["ok"] and [(r["old_certificate_id"], r["new_certificate_id"], r["ok"]) for r in second["rollouts"]] == [
        (old, new, True)]
    newest = second["certificates"][0]["new_certificate_id"]
    job = second["job"]
    assert job != first["job"] and second["rollouts"][0]["job"] == job == second["certificates"][0]["job"]
    items = tg_json("job", "show", str(job))["items"]
    assert [(i["endpoint"], i["params"]["certificate_id"], i["state"]) for i in items] == [
        ("store-b", new, "changed"), ("store-a", newest, "changed"), ("store-b", newest, "changed")]
    fp = {c["id"]: c["fingerprint"] for c in tg_json("cert", "list")}
    assert _served_fp(a) == _served_fp(b) == fp[newest]
    assert tg_json("cert", "renew", "--deploy")["rollouts"] == []


def test_two_runs_at_once_renew_once(issued) -> None:  # type: ignore[no-untyped-def]
    _pebble, old = issued
    argv = [sys.executable, "-m", "tlsgate", "cert", "renew", "--days", "3650", "--json"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    certs = tg_json("cert", "list")
    renewed = [c for c in certs if c["acme_account"]]
    assert len(renewed) == 2 and {c["id"]: c for c in certs}[old]["superseded_by"] is not None


def test_failed_renewal_keeps_the_old_certificate_and_says_when_it_expires(issued) -> None:  # type: ignore[no-untyped-def]
    pebble, old = issued
    pebble.stop()
    res = tg("cert", "renew", "--days", "3650", check=False)
    assert res.returncode == 1
    not_after = {c["id"]: c for c in tg_json("cert", "list")}[old]["not_after"]
    assert f"{old} (roll.test): failed: ACME directory for {pebble.directory}: cannot reach the ACME server" in res.stdout
    assert f"the old certificate stays in service (expires {not_after})" in res.stdout
    assert {c["id"]: c for c in tg_json("cert", "list")}[old]["superseded_by"] is None


def test_the_next_unattended_run_finishes_a_rollout_whose_run_was_killed_mid_install(issued, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The timer's ``cert renew --deploy`` is SIGKILLed mid-install (a pem store with its key in
    a file of its own: the first of the two files replaced, the second not yet): the next run,
    unattended, finishes the rollout. The dead run's changes are an earlier attempt of the same
    rollout (OLD -> NEW on that endpoint), so the next run restores its originals and installs
    from the start, as ``job retry`` would, instead of refusing every night until someone runs
    ``backup restore``."""
    import json
    import os

    from tlsgate.api import Gateway
    from tlsgate_testing.interrupt import die_at_env

    _pebble, old = issued
    cert, key = tmp_path / "store.crt", tmp_path / "store.key"
    gw = Gateway()
    try:
        bundle = gw.lifecycle.bundle(old)
        cert.write_bytes(bundle.fullchain_pem())
        key.write_bytes(bundle.key_pem())
    finally:
        gw.close()
    key.chmod(0o600)
    tg("tls", "add", "pem", "--name", "store", "--connection_type", "local", "--path", str(cert),
       "--key_path", str(key))
    tg("tls", "delegate", "store", "--org", "Acme")
    tg("tls", "discover", "store")
    originals = cert.read_bytes(), key.read_bytes()
    env = {**os.environ, **die_at_env(tmp_path / "die", "rename", 2)}  # before the second file's rename
    killed = subprocess.run([sys.executable, "-m", "tlsgate", "cert", "renew", "--days", "3650", "--deploy"],
                            env=env, capture_output=True, text=True, timeout=240)
    assert killed.returncode == -9, killed
    assert (cert.read_bytes(), key.read_bytes()) != originals  # the first file was replaced
    fps = {c["id"]: c["fingerprint"] for c in tg_json("cert", "list")}
    new = next(i for i in fps if i != old)
    assert tg_json("job", "list")[-1]["state"] == "interrupted"

    res = tg("cert", "renew", "--deploy", "--json", check=False)
    assert res.returncode == 0, (res.stdout, res.stderr)
    report = json.loads(res.stdout)
    assert report["ok"] and [(r["old_certificate_id"], r["new_certificate_id"], r["ok"]) for r in report["rollouts"]] \
        == [(old, new, True)]
    assert _served_fp(cert) == fps[new]
    gw = Gateway()
    try:
        assert key.read_bytes() == gw.lifecycle.bundle(new).key_pem()  # the new key beside the new certificate
    finally:
        gw.close()
    assert {c["id"]: c for c in tg_json("cert", "list")}[old]["status"] == f"superseded by {new}"
    assert old not in {c["id"] for c in tg_json("cert", "expiring", "--days", "0")}
    assert [s for s in tg_json("backup", "list") if s["state"] == "unfinished"] == []
    # the killed run's job says who finished it, instead of staying "interrupted" for ever
    killed_job = tg_json("job", "list")[0]
    assert killed_job["state"] == "done", killed_job
    item = tg_json("job", "show", str(killed_job["id"]))["items"][0]
    assert (item["state"], item["reason"]) == ("unchanged", f"finished by job {report['job']}")
    assert tg_json("cert", "renew", "--deploy")["rollouts"] == []  # the next run has nothing left to do


def test_two_deploying_runs_at_once_renew_once_and_both_succeed(issued, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Two timers' ``cert renew --deploy`` at once: one renews and deploys; the other finds the
    certificate renewed (or its rollout being deployed by the first run) and is no failure."""
    _pebble, old = issued
    stores = [_pem_endpoint(tmp_path, f"store-{n}", old) for n in "abc"]
    argv = [sys.executable, "-m", "tlsgate", "cert", "renew", "--days", "3650", "--deploy"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    certs = {c["id"]: c for c in tg_json("cert", "list")}
    assert len(certs) == 2 and certs[old]["status"] == f"superseded by {certs[old]['superseded_by']}"
    new_fp = certs[certs[old]["superseded_by"]]["fingerprint"]
    assert [_served_fp(s) for s in stores] == [new_fp] * 3


def test_a_ca_that_forgot_the_account_is_fixed_by_acme_add_again(issued, bind_server) -> None:  # type: ignore[no-untyped-def]
    """The CA no longer knows the account (deleted there; here: Pebble restarted, it keeps no
    state): renewals fail with its accountDoesNotExist, and the operator's fix is to run the same
    ``acme add`` again, which registers the stored key anew (it used to answer "found" without
    asking the CA, and every renewal kept failing)."""
    import os

    from tlsgate_testing.fixtures_core import wait_for_port
    from tlsgate_testing.pebble import pebble_binary

    pebble, _old = issued
    pebble.stop()
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0",
           "PEBBLE_VA_ALWAYS_VALID": "0"}
    with open(pebble.root / "pebble-again.log", "wb") as log:
        again = subprocess.Popen([str(pebble_binary()), "-config", str(pebble.root / "pebble.json"), "-dnsserver",
                                  bind_server.address], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=pebble.root)
    try:
        wait_for_port(pebble.port, timeout=30)
        failed = tg("cert", "renew", "--days", "3650", check=False)
        assert failed.returncode == 1 and "(accountDoesNotExist); the CA no longer knows this account: run the " \
            "same tlsgate acme add again; the old certificate stays in service" in failed.stdout, failed.stdout
        before = tg_json("acme", "show", "pebble")["uri"]
        res = tg("acme", "add", "pebble", "--directory", pebble.directory, "--email", "ops@example.test",
                 "--ca_bundle", str(pebble.ca_bundle), "--agree_tos")
        assert "registered" in res.stdout and "found" not in res.stdout, res.stdout
        assert tg_json("acme", "show", "pebble")["uri"] != before
        renewed = tg_json("cert", "renew", "--days", "3650")
        assert [c["action"] for c in renewed["certificates"]] == ["renewed"]
        # and once the CA knows it, the same command finds it and changes nothing
        assert tg_json("acme", "add", "pebble", "--directory", pebble.directory, "--email", "ops@example.test",
                       "--agree_tos")["found"] is True
    finally:
        again.terminate()
        again.wait(timeout=10)


def test_removing_the_account_says_what_happens_to_its_certificates(issued) -> None:  # type: ignore[no-untyped-def]
    """``acme remove`` tells the truth about the certificates issued through the account: their
    renewals fail (exit 1, never a silent expiry) until an account of that name is added again."""
    pebble, old = issued
    res = tg("acme", "remove", "pebble")
    assert "1 certificate(s) issued through it cannot renew (cert renew reports them failed) until an ACME " \
           "account named 'pebble' is added again." in res.stdout, res.stdout
    failed = tg("cert", "renew", "--days", "3650", check=False)
    assert failed.returncode == 1 and f"{old} (roll.test): failed: " in failed.stdout
    add_account(pebble)
    assert [c["action"] for c in tg_json("cert", "renew", "--days", "3650")["certificates"]] == ["renewed"]
