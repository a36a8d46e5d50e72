"""The unchanged driver on a Windows host over WinRM (the loopback WS-Management peer and the
simulated Windows host): Windows paths, PowerShell install scripts started as argv."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tlsgate import ConnectionSpec, Endpoint, Secret, certs
from tlsgate_keystores import p12_codec
from tlsgate_testing.certs import Issued
from tlsgate_testing.winhost import PSResult, SimulatedWindowsHost
from tlsgate_testing.winrm_fixtures import WINRM_PASSWORD, WINRM_USER, winrm_credentials

pytestmark = pytest.mark.slow
PW = "changeit"
DIR = r"C:\ProgramData\App Certs"


@pytest.fixture
def windows(winrm_peer_factory: Any, winrm_tls: Any, tlsgate_home: Path) -> tuple[SimulatedWindowsHost, Any]:
    host = SimulatedWindowsHost()
    runs: list[list[str]] = []

    def powershell(h: SimulatedWindowsHost, argv: list[str], stdin: bytes | None, env: dict[str, str]) -> PSResult:
        runs.append(argv)
        return PSResult("done\r\n", "", 0)

    host.register_program("powershell.exe", powershell)
    peer = winrm_peer_factory("https", host=host)
    spec = ConnectionSpec("winrm_https", host="127.0.0.1", port=peer.port, user=WINRM_USER,
                          password=Secret(WINRM_PASSWORD), extra={"winrm_auth": "ntlm",
                                                                  "ca_bundle": str(winrm_tls.ca_bundle)})
    return host, (spec, runs)


def test_p12_over_winrm_https(registry: Any, windows: Any, leaf_a: Issued, leaf_b: Issued, kt: Any) -> None:
    host, (spec, runs) = windows
    path, script = DIR + r"\app.pfx", DIR + r"\after install.ps1"
    host.seed(path, leaf_a.pfx(PW))
    host.seed(script, "Write-Output done\r\n")
    options = registry.endpoint_types["p12"].options(path=path, store_password=Secret(PW), install_script=script,
                                                     is_legacy=True)
    ep = Endpoint(name="win", type="p12", connection=spec, options=options)
    assert registry.validate(ep) == []
    with registry.connect(ep, winrm_credentials()) as conn:
        assert [n.fingerprint for n in registry.discover_nodes(ep, conn)] == [leaf_a.fingerprint]
        result = registry.install(ep, conn, kt.bundle_of(leaf_b), [], dry_run=False, alias="web app")
    assert result.verified
    assert runs == [["powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File",
                     script, "web app"]]
    store = p12_codec.load(host.read(path), PW)
    assert {e.alias: certs.fingerprint(e.leaf) for e in store.entries} == {
        "leaf": leaf_a.fingerprint, "web app": leaf_b.fingerprint}


def test_pem_over_winrm_https(registry: Any, windows: Any, leaf_a: Issued, leaf_b: Issued, kt: Any) -> None:
    host, (spec, _) = windows
    path, key_path = DIR + r"\site.pem", DIR + r"\private\site.key"
    host.seed(path, leaf_a.cert_pem + leaf_a.chain_pem)
    host.seed(key_path, leaf_a.key_pem, private=True)
    options = registry.endpoint_types["pem"].options(path=path, key_path=key_path)
    ep = Endpoint(name="win", type="pem", connection=spec, options=options)
    with registry.connect(ep, winrm_credentials()) as conn:
        assert [n.name for n in registry.discover_nodes(ep, conn)] == ["site.pem"]
        registry.install(ep, conn, kt.bundle_of(leaf_b), [], dry_run=False, alias=None)
    assert host.read(path).startswith(leaf_b.cert_pem)
    assert host.read(key_path) == leaf_b.key_pem and host.fs.is_private(key_path)
