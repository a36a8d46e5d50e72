"""The kit's behavioural contract on the simulated IIS host (loopback connection): discovery is
read-only and a dry run changes nothing (bindings, certificate stores, temporary files). The
kit's failure injection wraps the connection, and the IIS driver picks its PowerShell runner by
the connection's class (a wrapper is taken for a local Windows gateway), so restore on failure is
covered by test_install.py's own failures instead."""

from __future__ import annotations

from iis_sim import TEMP_DIR, IISSim
from tlsgate.plugin import CertificateBundle, ConnectionSpec, Endpoint
from tlsgate_testing.contract import Case, check_discovery_is_read_only, check_dry_run_changes_nothing

ENDPOINT = Endpoint(name="iis1", type="iis", connection=ConnectionSpec("winrm_http", host="127.0.0.1", port=5985))


def test_discovery_and_dry_run(loopback, iis_ca) -> None:  # type: ignore[no-untyped-def]
    host = loopback.winhost

    def state() -> tuple[object, object, list[str]]:
        sim = IISSim.load(host)
        return sim.bindings_view(), sim.store_view(), sorted(host.fs.listdir(TEMP_DIR))

    issued = iis_ca.issue("shop.example.com")
    bundle = CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)
    case = Case(ENDPOINT, loopback, bundle, snapshot=state)
    assert check_discovery_is_read_only(case)
    check_dry_run_changes_nothing(case)
