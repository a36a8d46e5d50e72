"""The kit's behavioural contract on the simulated IIS host (loopback connection), all three
promises, over bindings, certificate stores and temporary files: discovery is read-only, a dry run
changes nothing, and a failed install restores everything. The IIS driver changes the host
through PowerShell (Microsoft.Web.Administration, the certificate stores), not file writes the
kit could break, so the failure is the simulated host's: the binding step's commit fails
(test_install.py fails the other steps too)."""

from __future__ import annotations

from collections.abc import Callable

from iis_sim import TEMP_DIR, IISSim
from tlsgate.plugin import CertificateBundle, ConnectionSpec, Endpoint
from tlsgate_testing.contract import Case, check_behaviour

ENDPOINT = Endpoint(name="iis1", type="iis", connection=ConnectionSpec("winrm_http", host="127.0.0.1", port=5985))

#: What ServerManager.CommitChanges() throws when applicationHost.config is held open by another
#: process (WAS, or another tool mid-write): HRESULT 0x80070020 is ERROR_SHARING_VIOLATION, Win32
#: error 32, "The process cannot access the file because it is being used by another process."
#: (Microsoft Learn, "System Error Codes (0-499)"), wrapped by PowerShell as a
#: MethodInvocationException ("Exception calling ... with "0" argument(s)", about_Methods). The
#: commit writes the whole configuration or nothing, so the failed bind changed nothing.
SHARING_VIOLATION = ('Exception calling "CommitChanges" with "0" argument(s): "The process cannot access the file '
                     'because it is being used by another process. (Exception from HRESULT: 0x80070020)"')


def test_contract_behaviour(loopback, iis_ca) -> None:  # type: ignore[no-untyped-def]
    host = loopback.winhost

    def state() -> tuple[object, ...]:
        """Everything an install may touch: bindings (certificate, sslFlags, order), HTTP.sys'
        table (other applications' entries included), the certificate stores, temporary files."""
        sim = IISSim.load(host)
        return (sim.bindings_view(), sim.attributes_view(), sim.http_sys, sim.store_view(),
                sorted(host.fs.listdir(TEMP_DIR)))

    def fail_the_binding_commit() -> Callable[[], bool]:
        # by then the PFX and the intermediate are imported: the driver must remove them again
        sim = IISSim.load(host)
        due = sim.counters.get("iis-bind", 0) + 1
        sim.fail("iis-bind", on_call=1, message=SHARING_VIOLATION, error_id="COMException")
        sim.save(host)
        return lambda: IISSim.load(host).counters.get("iis-bind", 0) >= due

    issued = iis_ca.issue("shop.example.com")
    bundle = CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)
    check_behaviour(Case(ENDPOINT, loopback, bundle, snapshot=state, inject=fail_the_binding_commit))
