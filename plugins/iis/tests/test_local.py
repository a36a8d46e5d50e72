"""``local`` IIS endpoints: refused on a Linux gateway by the core's platform table; on a Windows
gateway the core's local connection runs the templates through its one local PowerShell runner.
Here stand-in ``powershell`` programs (the simulated host's shim on a real directory, with the
simulated IIS) play the gateway's PowerShell: the one on PATH is SysWOW64's (32-bit, what a
32-bit Python finds under WOW64), the one under ``%windir%\\Sysnative`` the native 64-bit one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from iis_scene import Scene, build_scene
from iis_sim import WOW64_ERROR, IISSim, install_iis
from tlsgate import CertificateBundle, ConnectionSpec, Endpoint, OperationError
from tlsgate_iis import plugin
from tlsgate_iis.local import powershell_connection
from tlsgate_iis.pfx import thumbprint
from tlsgate_testing.certs import TestCA
from tlsgate_testing.connections import LocalConnection, is_absolute_windows_path, local_powershell_program
from tlsgate_testing.winhost import DirectoryFS, SimulatedWindowsHost

LOCAL = Endpoint(name="iislocal", type="iis", connection=ConnectionSpec("local"))


def shim(path: Path, *, bitness: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\nimport os, sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                    f"os.environ['TLSGATE_WINHOST_BITNESS'] = '{bitness}'\n"
                    "from tlsgate_testing.winhost import shim_main\nsys.exit(shim_main())\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def windows_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scene_certs: Scene) -> tuple[Path, SimulatedWindowsHost]:
    """A "Windows gateway": SysWOW64's powershell first on PATH, the native one under
    ``<windir>\\Sysnative\\WindowsPowerShell\\v1.0``; returns (windir, host)."""
    root = tmp_path / "windows"
    host = SimulatedWindowsHost(DirectoryFS(root))
    install_iis(host, build_scene(scene_certs))
    shim(tmp_path / "syswow64" / "powershell", bitness=32)
    windir = tmp_path / "windir"
    shim(windir / "Sysnative" / "WindowsPowerShell" / "v1.0" / "powershell.exe", bitness=64)
    monkeypatch.setenv("PATH", f"{tmp_path / 'syswow64'}:{Path(sys.executable).parent}:/usr/bin:/bin")
    monkeypatch.setenv("TLSGATE_WINHOST_ROOT", str(root))
    monkeypatch.setenv("TLSGATE_WINHOST_PLUGINS", "iis_sim:register")
    return windir, host


class WindowsGateway(LocalConnection):
    """``local`` on a Windows gateway, played on Linux: PowerShell through the core's runner (the
    code under test), and the gateway's own files (``C:\\Windows\\Temp\\...``), which LocalConnection
    reaches with the OS, mapped onto the simulated host's directory where the shims see them."""

    def __init__(self, **kwargs: str) -> None:
        super().__init__(**kwargs)
        self.platform = "windows"  # what LocalConnection says on a Windows gateway

    def _real(self, path: str) -> str:
        if not is_absolute_windows_path(path):
            return path
        return str(DirectoryFS(os.environ["TLSGATE_WINHOST_ROOT"]).real(path))

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        super().write_file(self._real(path), data, mode=mode)

    def read_file(self, path: str) -> bytes:
        return super().read_file(self._real(path))

    def stat(self, path: str):  # type: ignore[no-untyped-def]
        return super().stat(self._real(path))

    def remove(self, path: str) -> None:
        super().remove(self._real(path))


def windows_local(**kwargs: str) -> LocalConnection:
    return WindowsGateway(**kwargs)


def test_local_install_through_the_gateways_powershell(windows_gateway, iis_ca: TestCA,  # type: ignore[no-untyped-def]
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    windir, host = windows_gateway
    # a 32-bit Python under WOW64 (PROCESSOR_ARCHITEW6432 set) runs the native PowerShell
    monkeypatch.setenv("PROCESSOR_ARCHITEW6432", "AMD64")
    monkeypatch.setenv("windir", str(windir))
    conn = windows_local()
    nodes = plugin.discover_nodes(LOCAL, conn)
    assert [n.name for n in nodes if n.protocol == "https"] == [
        "Default Web Site", "shop.example.com", "blog.example.com", "Blog", "api.example.com"]
    new = iis_ca.issue("api.example.com")
    bundle = CertificateBundle.from_pem(new.cert_pem, new.key_pem, new.chain_pem)
    result = plugin.install(LOCAL, conn, bundle, [], False)
    assert result.nodes == ("api.example.com",)
    assert IISSim.load(host).bindings_view()[("Api", "https", "*:443:api.example.com")] == thumbprint(bundle)
    assert "verification skipped: no started site among the chosen bindings" in result.messages
    import json

    calls = [json.loads(line) for line in (Path(os.environ["TLSGATE_WINHOST_ROOT"]) / ".calls.jsonl").open()]
    imp = next(c for c in calls if c["template"] == "iis-import-pfx")
    assert "password" not in imp["params"] and imp["secret_params"]["password"]  # on stdin, not the command line
    assert imp["secret_params"]["password"] not in imp["command_line"]
    assert [c["template"] for c in calls if c["template"].startswith("iis-")][-2:] == ["iis-bind", "iis-discover"]


def test_wow64_gateway_reaches_the_native_powershell(windows_gateway, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Defect 6: under WOW64, ``powershell`` is SysWOW64's, where WebAdministration fails with
    80040154; the runner must start ``%windir%\\Sysnative\\...\\powershell.exe`` instead."""
    windir, _host = windows_gateway
    monkeypatch.setenv("PROCESSOR_ARCHITEW6432", "AMD64")
    monkeypatch.setenv("windir", str(windir))
    assert local_powershell_program() == str(windir / "Sysnative" / "WindowsPowerShell" / "v1.0" / "powershell.exe")
    nodes = plugin.discover_nodes(LOCAL, windows_local())
    assert len([n for n in nodes if n.protocol == "https"]) == 5
    # what the 32-bit PowerShell itself says, for the record: the error a WOW64 gateway would see
    with pytest.raises(OperationError, match="80040154 Class not registered") as err:
        plugin.discover_nodes(LOCAL, windows_local(powershell="powershell"))
    assert WOW64_ERROR.split(" (Exception")[0] in str(err.value)


def test_native_gateway_runs_powershell_from_path() -> None:
    assert local_powershell_program({"windir": "C:\\Windows", "PROCESSOR_ARCHITECTURE": "AMD64"}) == "powershell"
    wow = {"windir": "C:\\Windows", "PROCESSOR_ARCHITECTURE": "x86", "PROCESSOR_ARCHITEW6432": "AMD64"}
    assert local_powershell_program(wow).replace("/", "\\") == "C:\\Windows\\Sysnative\\WindowsPowerShell\\v1.0\\powershell.exe"


def test_a_posix_local_connection_is_refused_clearly() -> None:
    with pytest.raises(OperationError, match="IIS endpoints are managed with PowerShell over local \\(on a Windows "
                                             "gateway\\), ssh_windows, winrm_http"):
        powershell_connection(LocalConnection())


def test_a_windows_local_connection_runs_templates_itself() -> None:
    conn = windows_local()
    assert powershell_connection(conn) is conn
