"""Renewal against a real Pebble and BIND: nothing due does nothing (exit 0); a forced renewal
with --deploy replaces the certificate on every node that served the old one; a rollout that did
not reach every node stays "superseded, not yet deployed everywhere" until a later
``cert renew --deploy`` finishes it; two runs at once renew a certificate once; a failed renewal
keeps the old certificate and says when it expires."""

from __future__ import annotations

import hashlib
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
    before = tg_json("cert", "list")
    res = tg("cert", "renew")
    assert f"{cert_id} (roll.test): not due (renew at " in res.stdout and "lifetime" in res.stdout
    assert tg_json("cert", "list") == before
    assert tg_json("cert", "renew", "--deploy")["ok"] is True


def test_renew_deploy_reaches_every_node_and_finishes_pending_rollouts(issued, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _pebble, old = issued
    a = _pem_endpoint(tmp_path, "store-a", old)
    b = _pem_endpoint(tmp_path, "store-b", old)
    away = b.rename(tmp_path / "store-b.away")  # store-b cannot be reached for now
    res = tg("cert", "renew", "--days", "3650", "--deploy", "--json", check=False)
    assert res.returncode == 1
    report = __import__("json").loads(res.stdout)
    item = report["certificates"][0]
    new = item["new_certificate_id"]
    assert item["action"] == "renewed" and {e["endpoint"]: e["action"] for e in item["deploy"]} == {
        "store-a": "deployed", "store-b": "failed"}
    listing = {c["id"]: c for c in tg_json("cert", "list")}
    assert listing[old]["status"] == f"superseded by {new}, not yet deployed everywhere (1 node(s) still serve it)"
    assert "superseded by" in tg("cert", "list").stdout
    assert tg_json("cert", "show", str(old))["status"].startswith(f"superseded by {new}, not yet deployed everywhere")
    expiring = {c["id"]: c for c in tg_json("cert", "expiring", "--days", "0")}  # listed whatever its end date
    assert [n["endpoint"] for n in expiring[old]["nodes"]] == ["store-b"] and new not in expiring
    assert isinstance(item["job"], int)  # the rollout is one fleet deploy job
    new_fp = listing[new]["fingerprint"]
    assert _served_fp(a) == new_fp and _served_fp(away) == listing[old]["fingerprint"]

    # a dry run says what it would do and changes nothing
    dry = tg_json("cert", "renew", "--deploy", "--dry-run")
    assert [r["endpoints"][0]["action"] for r in dry["rollouts"]] == ["would deploy"]
    assert not b.exists()

    away.rename(b)
    done = tg_json("cert", "renew", "--deploy")
    assert done["ok"] and [(r["old_certificate_id"], r["new_certificate_id"], r["ok"]) for r in done["rollouts"]] == [
        (old, new, True)]
    assert [c["action"] for c in done["certificates"]] == ["not due"]  # the new one is fresh; the old is never renewed
    assert _served_fp(b) == new_fp
    assert {c["id"]: c for c in tg_json("cert", "list")}[old]["status"] == f"superseded by {new}"
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
