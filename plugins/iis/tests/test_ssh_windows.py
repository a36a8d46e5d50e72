"""IIS over ssh_windows: a real OpenSSH sshd whose "Windows" is the simulated host (PowerShell
through the shim on exec channels, the PFX over SFTP with Win32-OpenSSH's /C:/ paths)."""

from __future__ import annotations

import pytest
from iis_scene import Scene, expected, table
from iis_sim import IISSim
from tlsgate import CertificateBundle, OperationError
from tlsgate.registry import get_registry
from tlsgate_iis.pfx import thumbprint
from tlsgate_testing.certs import TestCA


def test_discover_and_install_over_ssh_windows(iis_over_ssh, scene_certs: Scene, iis_ca: TestCA) -> None:  # type: ignore[no-untyped-def]
    server = iis_over_ssh
    endpoint = server.endpoint(type="iis", name="iisssh")
    before = IISSim.load(server).bindings_view()
    new = iis_ca.issue("blog.example.com")
    bundle = CertificateBundle.from_pem(new.cert_pem, new.key_pem, new.chain_pem)
    registry = get_registry()
    with registry.connect(endpoint, server.credentials()) as conn:
        assert table(registry.discover_nodes(endpoint, conn)) == expected(scene_certs)
        result = registry.install(endpoint, conn, bundle, [], False, None)
    after = IISSim.load(server).bindings_view()
    assert {k: v for k, v in after.items() if before[k] != v} == {
        ("Blog", "https", "*:443:blog.example.com"): thumbprint(bundle)}
    assert result.nodes == ("blog.example.com",) and not result.rolled_back
    temp = server.root / "C:" / "Windows" / "Temp"
    assert [p.name for p in temp.iterdir() if "tlsgate" in p.name] == []
    calls = server.calls()
    templates = [c["template"] for c in calls]
    assert "file-write-chunk" not in templates  # the PFX went over SFTP
    imp = next(c for c in calls if c["template"] == "iis-import-pfx")
    password = imp["secret_params"]["password"]
    assert "password" not in imp["params"]
    assert not any(password in c.get("command_line", "") for c in calls)


def test_rollback_over_ssh_windows(iis_over_ssh, iis_ca: TestCA) -> None:  # type: ignore[no-untyped-def]
    server = iis_over_ssh
    sim = IISSim.load(server)
    before = (sim.bindings_view(), sim.store_view())
    sim.fail("iis-bind", on_call=2)
    sim.save(server)
    new = iis_ca.issue("shop.example.com", "blog.example.com")
    bundle = CertificateBundle.from_pem(new.cert_pem, new.key_pem, new.chain_pem)
    endpoint = server.endpoint(type="iis", name="iisssh")
    with get_registry().connect(endpoint, server.credentials()) as conn:
        with pytest.raises(OperationError, match="simulated failure") as err:
            get_registry().install(endpoint, conn, bundle, [], False, None)
    assert err.value.rolled_back
    sim = IISSim.load(server)
    assert (sim.bindings_view(), sim.store_view()) == before
    assert not any("tlsgate" in p.name for p in (server.root / "C:" / "Windows" / "Temp").iterdir())
