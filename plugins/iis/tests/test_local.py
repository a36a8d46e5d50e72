"""``local`` IIS endpoints: refused on a Linux gateway by the core's platform table; on a Windows
gateway the driver runs its templates with the gateway's own powershell. Here a stand-in
``powershell`` (the simulated host's shim on a real directory, with the simulated IIS) plays it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from iis_scene import Scene, build_scene
from iis_sim import IISSim, install_iis
from tlsgate import CertificateBundle, ConnectionSpec, Endpoint, OperationError
from tlsgate_iis import plugin
from tlsgate_iis.local import LocalPowerShell, powershell_connection
from tlsgate_iis.pfx import thumbprint
from tlsgate_testing.certs import TestCA
from tlsgate_testing.connections import LocalConnection
from tlsgate_testing.winhost import DirectoryFS, SimulatedWindowsHost

LOCAL = Endpoint(name="iislocal", type="iis", connection=ConnectionSpec("local"))


@pytest.fixture
def fake_powershell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scene_certs: Scene) -> tuple[str, SimulatedWindowsHost]:
    root = tmp_path / "windows"
    host = SimulatedWindowsHost(DirectoryFS(root))
    install_iis(host, build_scene(scene_certs))
    program = tmp_path / "bin" / "powershell"
    program.parent.mkdir()
    program.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                       "from tlsgate_testing.winhost import shim_main\nsys.exit(shim_main())\n")
    program.chmod(0o755)
    monkeypatch.setenv("TLSGATE_WINHOST_ROOT", str(root))
    monkeypatch.setenv("TLSGATE_WINHOST_PLUGINS", "iis_sim:register")
    return str(program), host


def test_local_install_through_the_gateways_powershell(fake_powershell, iis_ca: TestCA) -> None:  # type: ignore[no-untyped-def]
    program, host = fake_powershell
    conn = LocalPowerShell(program=program)
    nodes = plugin.discover_nodes(LOCAL, conn)
    assert [n.name for n in nodes if n.protocol == "https"] == [
        "Default Web Site", "shop.example.com", "blog.example.com", "Blog", "api.example.com"]
    new = iis_ca.issue("api.example.com")
    bundle = CertificateBundle.from_pem(new.cert_pem, new.key_pem, new.chain_pem)
    result = plugin.install(LOCAL, conn, bundle, [], False)
    assert result.nodes == ("api.example.com",)
    assert IISSim.load(host).bindings_view()[("Api", "https", "*:443:api.example.com")] == thumbprint(bundle)
    assert "verification skipped: no started site among the chosen bindings" in result.messages


def test_a_posix_local_connection_is_refused_clearly() -> None:
    with pytest.raises(OperationError, match="IIS endpoints are managed with PowerShell over local \\(on a Windows "
                                             "gateway\\), ssh_windows, winrm_http"):
        powershell_connection(LocalConnection())


def test_a_windows_local_connection_is_wrapped() -> None:
    conn = LocalConnection()
    conn.platform = "windows"
    wrapped = powershell_connection(conn)
    assert isinstance(wrapped, LocalPowerShell) and wrapped.max_command_line == 32767
