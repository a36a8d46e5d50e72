"""Fleet selectors, the job runner (canary, --max-failures, retry, restored failures) and the
job rows, in process with the core's folder endpoint type; the fingerprint validator and the
plain-table escaping as properties."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tlsgate import CertificateBundle, fleet, jobs
from tlsgate.errors import ValidationError
from tlsgate.inventory import normalize_fingerprint


@pytest.fixture
def estate(gateway, test_ca, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Six folder endpoints in two organizations; all but f5 serve OLD."""
    old = test_ca.issue("old.test")
    gateway.add_org("A")
    gateway.add_org("B")
    for i in range(6):
        d = tmp_path / f"f{i}"
        d.mkdir()
        cert = old if i != 5 else test_ca.issue("other.test")
        (d / "cert.pem").write_bytes(cert.cert_pem)
        gateway.add_endpoint("folder", name=f"f{i}", connection_type="local",
                             options={"folder": str(d), "fail_after_write": i == 2})
        gateway.delegate(f"f{i}", "A" if i < 3 else "B")
        gateway.discover(f"f{i}")
    new = test_ca.issue("new.test")
    bundle = CertificateBundle.from_pem(new.cert_pem, new.key_pem, new.chain_pem)
    cid = gateway.record_certificate_with_key(bundle, source="test")
    return gateway, old, bundle, cid, tmp_path


def names(endpoints) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.name for e in endpoints]


def test_selectors_add_up_within_and_narrow_across(estate) -> None:  # type: ignore[no-untyped-def]
    gw, old, *_ = estate
    with pytest.raises(ValidationError, match="no endpoints selected"):
        fleet.select(gw, fleet.Selection())
    assert names(fleet.select(gw, fleet.Selection(all=True))) == [f"f{i}" for i in range(6)]
    assert names(fleet.select(gw, fleet.Selection(endpoints=("f1", "f4")))) == ["f1", "f4"]
    assert names(fleet.select(gw, fleet.Selection(org="B"))) == ["f3", "f4", "f5"]
    assert names(fleet.select(gw, fleet.Selection(org="B", endpoints=("f1", "f4")))) == ["f4"]
    colons = ":".join(old.fingerprint[i:i + 2] for i in range(0, 64, 2)).upper()
    assert names(fleet.select(gw, fleet.Selection(replaces=colons))) == ["f0", "f1", "f2", "f3", "f4"]
    cid = gw.certificate(old.fingerprint).id
    assert names(fleet.select(gw, fleet.Selection(replaces=str(cid), org="B"))) == ["f3", "f4"]
    with pytest.raises(ValidationError, match="--endpoint: no endpoint named"):
        fleet.select(gw, fleet.Selection(endpoints=("nope",)))
    with pytest.raises(ValidationError, match="--replaces"):
        fleet.select(gw, fleet.Selection(replaces="abc"))
    with pytest.raises(ValidationError, match="--department: needs --org"):
        fleet.select(gw, fleet.Selection(department="x", all=True))


def test_deploy_job_restores_a_failure_and_retry_finishes(estate) -> None:  # type: ignore[no-untyped-def]
    gw, old, bundle, cid, tmp = estate
    chosen = fleet.select(gw, fleet.Selection(replaces=old.fingerprint))
    job_id = fleet.create_job(gw, "deploy", chosen, {"certificate_id": cid, "replaces": old.fingerprint})
    job = fleet.run_job(gw, job_id, parallel=3)
    states = {i.endpoint: i.state for i in job.items}
    assert states == {"f0": "changed", "f1": "changed", "f2": "failed", "f3": "changed", "f4": "changed"}
    f2 = next(i for i in job.items if i.endpoint == "f2")
    assert "injected failure" in (f2.reason or "") and f2.attempts == 1
    assert (tmp / "f2" / "cert.pem").read_bytes() == old.cert_pem  # restored
    assert job.state == "failed" and not job.ok
    # retry re-runs only f2; after the cause is fixed it finishes the job
    gw.inventory.db.execute("UPDATE endpoints SET options = replace(options, '\"fail_after_write\": true', "
                            "'\"fail_after_write\": false') WHERE name = 'f2'")
    again = fleet.retry(gw, job_id)
    assert again.state == "done" and again.ok
    f2 = next(i for i in again.items if i.endpoint == "f2")
    assert f2.state == "changed" and f2.attempts == 2 and f2.before == old.fingerprint
    assert f2.after == bundle.fingerprint
    # a second deploy of the same replacement finds nothing left to replace
    chosen = fleet.select(gw, fleet.Selection(endpoints=("f0",)))
    j2 = fleet.run_job(gw, fleet.create_job(gw, "deploy", chosen, {"certificate_id": cid, "replaces": old.fingerprint}))
    assert [i.state for i in j2.items] == ["unchanged"]


def _file_fp(folder: Path) -> str:
    from cryptography import x509
    from tlsgate.certs import fingerprint

    return fingerprint(x509.load_pem_x509_certificates((folder / "cert.pem").read_bytes())[0])


def test_items_name_their_own_certificates_and_a_job_grows(estate, test_ca) -> None:  # type: ignore[no-untyped-def]
    """One job for several certificates (what cert renew --deploy runs): each item's parameters
    name its certificate and the one it replaces; items added later run on their own; retry
    finishes what failed."""
    gw, old, bundle, cid, tmp = estate
    other_old = _file_fp(tmp / "f5")
    fresh = test_ca.issue("other.test")
    cid2 = gw.record_certificate_with_key(CertificateBundle.from_pem(fresh.cert_pem, fresh.key_pem, fresh.chain_pem),
                                          source="test")
    pick = {e.name: e for e in fleet.select(gw, fleet.Selection(all=True))}
    item = {"certificate_id": cid, "replaces": old.fingerprint}
    with pytest.raises(ValueError, match="one entry per endpoint"):
        fleet.create_job(gw, "deploy", [pick["f0"]], {"renewal": True}, item_params=[item, item])
    job_id = fleet.create_job(gw, "deploy", [pick["f0"], pick["f1"]], {"renewal": True}, item_params=[item, item])
    first = fleet.run_job(gw, job_id)
    assert [(i.endpoint, i.state, i.params["certificate_id"]) for i in first.items] == [
        ("f0", "changed", cid), ("f1", "changed", cid)]
    ids = fleet.add_items(gw, job_id, [pick["f5"], pick["f2"]],
                          [{"certificate_id": cid2, "replaces": other_old}, item])
    job = fleet.run_job(gw, job_id, item_ids=ids)
    assert [(i.endpoint, i.state, i.attempts) for i in job.items] == [
        ("f0", "changed", 1), ("f1", "changed", 1), ("f5", "changed", 1), ("f2", "failed", 1)]
    assert job.state == "failed" and [i.id for i in job.items][2:] == ids
    assert _file_fp(tmp / "f5") == fresh.fingerprint and _file_fp(tmp / "f0") == bundle.fingerprint
    f5 = job.items[2]
    assert f5.before == other_old and f5.after == fresh.fingerprint
    gw.inventory.db.execute("UPDATE endpoints SET options = replace(options, '\"fail_after_write\": true', "
                            "'\"fail_after_write\": false') WHERE name = 'f2'")
    done = fleet.retry(gw, job_id)
    assert done.state == "done" and [(i.endpoint, i.attempts) for i in done.items] == [
        ("f0", 1), ("f1", 1), ("f5", 1), ("f2", 2)]
    assert jobs.get(gw.inventory, job_id).to_json()["items"][3]["params"] == item


def test_a_run_loads_each_certificate_once(estate, test_ca, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A run unseals and parses each certificate it installs once, not once per endpoint; one
    whose key the inventory does not hold fails every item that names it."""
    from tlsgate.inventory import Inventory

    gw, old, bundle, cid, tmp = estate
    loaded: list[int] = []
    real = Inventory.load_bundle
    monkeypatch.setattr(Inventory, "load_bundle", lambda self, c: loaded.append(c) or real(self, c))
    pick = {e.name: e for e in fleet.select(gw, fleet.Selection(all=True))}
    keyless = gw.certificate(old.fingerprint).id  # discovered: the inventory has no key for it
    rows = [pick[n] for n in ("f0", "f1", "f3", "f4", "f5")]
    params = [{"certificate_id": cid}] * 4 + [{"certificate_id": keyless}]
    job = fleet.run_job(gw, fleet.create_job(gw, "deploy", rows, {}, item_params=params), parallel=1)
    assert [i.state for i in job.items] == ["changed"] * 4 + ["failed"]
    assert "does not hold the private key" in (job.items[4].reason or "")
    assert loaded == [cid, keyless]
    assert _file_fp(tmp / "f4") == bundle.fingerprint


def test_max_failures_and_canary_skip_the_rest(estate) -> None:  # type: ignore[no-untyped-def]
    gw, old, _bundle, cid, _ = estate
    chosen = [e for e in fleet.select(gw, fleet.Selection(replaces=old.fingerprint)) if e.name != "f0"]
    assert names(chosen) == ["f1", "f2", "f3", "f4"]
    chosen = [chosen[1], *chosen[:1], *chosen[2:]]  # f2 (fails) first
    params = {"certificate_id": cid, "replaces": old.fingerprint}
    job = fleet.run_job(gw, fleet.create_job(gw, "deploy", chosen, params), parallel=1, max_failures=1)
    assert [(i.endpoint, i.state) for i in job.items] == [
        ("f2", "failed"), ("f1", "skipped"), ("f3", "skipped"), ("f4", "skipped")]
    assert "--max-failures 1" in (job.items[1].reason or "")
    job = fleet.run_job(gw, fleet.create_job(gw, "deploy", chosen, params), parallel=4, canary=1)
    assert [i.state for i in job.items] == ["failed", "skipped", "skipped", "skipped"]
    assert "canary" in (job.items[1].reason or "")


def test_verify_discover_restart_jobs(estate) -> None:  # type: ignore[no-untyped-def]
    gw, *_ = estate
    everything = fleet.select(gw, fleet.Selection(all=True))
    verify = fleet.run_job(gw, fleet.create_job(gw, "verify", everything, {}))
    assert verify.ok and all(c["result"] == "ok" for i in verify.items for c in i.details["nodes"])
    discover = fleet.run_job(gw, fleet.create_job(gw, "discover", everything, {}))
    assert {i.state for i in discover.items} == {"unchanged"}
    restart = fleet.run_job(gw, fleet.create_job(gw, "restart", everything, {}))
    assert {i.state for i in restart.items} == {"unchanged"}
    assert [j.kind for j in gw.jobs()] == ["verify", "discover", "restart"]


def test_a_dead_runner_reads_interrupted(estate) -> None:  # type: ignore[no-untyped-def]
    gw, *_ = estate
    everything = fleet.select(gw, fleet.Selection(all=True))
    job_id = fleet.create_job(gw, "discover", everything, {}, holder=f"{fleet.leases.gateway_name()}/999999999/x")
    job = gw.job(job_id)
    assert job.state == "interrupted" and {i.state for i in job.items} == {"interrupted"}
    done = fleet.retry(gw, job_id)
    assert done.state == "done"


def test_load_bundle_round_trip_and_key_sealed(estate) -> None:  # type: ignore[no-untyped-def]
    gw, old, bundle, cid, _ = estate
    loaded = gw.load_bundle(cid)
    assert loaded.fingerprint == bundle.fingerprint and loaded.key_pem() == bundle.key_pem()
    raw = gw.inventory.db.execute("SELECT key FROM certificates WHERE id = ?", (cid,)).fetchone()[0]
    assert raw.startswith("enc:") and b"PRIVATE KEY" not in raw.encode()
    discovered = gw.certificate(old.fingerprint).id
    with pytest.raises(ValidationError, match="does not hold the private key"):
        gw.load_bundle(discovered)


@settings(max_examples=60)
@given(st.binary(min_size=32, max_size=32), st.booleans(), st.booleans())
def test_fingerprint_forms_normalize(raw: bytes, colons: bool, upper: bool) -> None:
    hexed = raw.hex()
    text = ":".join(hexed[i:i + 2] for i in range(0, 64, 2)) if colons else hexed
    assert normalize_fingerprint(text.upper() if upper else text) == hexed


@settings(max_examples=60)
@given(st.text(max_size=70))
def test_fingerprint_validator_rejects_everything_else(text: str) -> None:
    hexed = text.replace(":", "").replace(" ", "").lower()
    if len(hexed) == 64 and all(c in "0123456789abcdef" for c in hexed):
        assert normalize_fingerprint(text) == hexed
    else:
        with pytest.raises(ValidationError):
            normalize_fingerprint(text)


@settings(max_examples=80)
@given(st.lists(st.lists(st.text(max_size=12), min_size=3, max_size=3), max_size=6))
@example([[" ", "", ""]])  # a row of one space: the line keeps it
def test_plain_table_one_line_per_row_no_control_characters(rows: list[list[str]]) -> None:
    from tlsgate.cli import output

    buf = io.StringIO()
    old, sys.stdout = sys.stdout, buf
    try:
        output.table(["A", "B", "C"], rows)
    finally:
        sys.stdout = old
    lines = buf.getvalue().split("\n")[:-1]
    assert not any(127 <= ord(ch) < 160 for line in lines for ch in line)
    assert len(lines) == len(rows) + 2
    assert not any(ord(ch) < 32 or ord(ch) == 127 for line in lines for ch in line)
    for row, line in zip(rows, lines[2:], strict=True):
        assert line.startswith(output.clean(row[0]))


def test_job_states_are_the_documented_ones() -> None:
    assert jobs.ITEM_STATES == ("pending", "running", "changed", "unchanged", "failed", "skipped", "interrupted")
