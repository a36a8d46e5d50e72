"""Install as a transaction on the simulated IIS: only the chosen bindings change, every failure
restores bindings and stores exactly, dry runs change nothing, verification is a real handshake
with a listener that serves what the simulated HTTP.sys has bound."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest
from httpsys import SimHttpSys
from iis_scene import Scene, build_scene, der
from iis_sim import TEMP_DIR, WRONG_PFX_PASSWORD, IISSim, install_iis, thumbprint_of
from tlsgate import CertificateBundle, ConnectionSpec, Endpoint, Node, OperationError, ValidationError
from tlsgate.registry import get_registry
from tlsgate_iis import plugin, scripts
from tlsgate_iis.pfx import legacy_pfx, thumbprint
from tlsgate_testing.certs import Issued, TestCA
from tlsgate_testing.winhost import LoopbackWindowsConnection, SimulatedWindowsHost
from tlsgate_testing.winrm_fixtures import winrm_credentials

ENDPOINT = Endpoint(name="iis1", type="iis", connection=ConnectionSpec("winrm_http", host="127.0.0.1", port=5985))


def bundle_of(issued: Issued) -> CertificateBundle:
    return CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)


def temp_files(host: SimulatedWindowsHost) -> list[str]:
    return [n for n in host.fs.listdir(TEMP_DIR) if n.startswith(("tlsgate-", ".tlsgate-"))]


def snapshot(host: SimulatedWindowsHost) -> tuple[object, object]:
    sim = IISSim.load(host)
    return sim.bindings_view(), sim.store_view()


def install(conn, bundle, nodes=(), dry_run=False):  # type: ignore[no-untyped-def]
    return plugin.install(ENDPOINT, conn, bundle, list(nodes), dry_run)


# -- the happy path -------------------------------------------------------------------------------
def test_install_changes_only_the_covered_binding_over_winrm_https(iis_over_winrm, iis_ca: TestCA) -> None:  # type: ignore[no-untyped-def]
    peer, endpoint = iis_over_winrm("winrm_https")
    host = peer.host
    views_before, stores_before = snapshot(host)
    new = iis_ca.issue("shop.example.com")
    bundle = bundle_of(new)
    registry = get_registry()
    with registry.connect(endpoint, winrm_credentials()) as conn:
        result = registry.install(endpoint, conn, bundle, [], False, None)
        nodes = registry.discover_nodes(endpoint, conn)
    thumb = thumbprint(bundle)
    views, stores = snapshot(host)
    changed = {k: v for k, v in views.items() if views_before[k] != v}
    assert changed == {("Shop", "https", "*:443:shop.example.com"): thumb}
    assert stores["My"] == stores_before["My"] | {thumb}
    assert stores["CA"] == stores_before["CA"] | {thumbprint_of(der_of(iis_ca.intermediate))}
    assert result.nodes == ("shop.example.com",) and not result.rolled_back and not result.dry_run
    assert temp_files(host) == []
    # nothing listens on 127.0.0.1:443 here: the handshake is skipped, and said so
    assert result.verified is False
    assert any("verification skipped for 127.0.0.1:443 (SNI shop.example.com): the port does not answer" in m
               for m in result.messages)
    shop = next(n for n in nodes if n.locator == "Shop|https|*:443:shop.example.com")
    assert shop.fingerprint == new.fingerprint
    # the PFX went up as a private (ACL-restricted) temporary file, then was imported with the password in $P
    begins = [c.params for c in host.calls if c.template == "file-write-begin"]
    assert begins and all(p["private"] and p["tmp"].startswith(TEMP_DIR + "\\") for p in begins)
    imp = next(c for c in host.calls if c.template == "iis-import-pfx")
    assert imp.params["thumbprint"] == thumb and "password" not in imp.params
    password = imp.secret_params["password"]  # on stdin ($S), never on the command line
    assert len(password) >= 32
    assert all(password not in m for m in result.messages)
    assert not any(password in line or b64(password) in line for line in host.command_lines)
    order = [t for t in host.templates_run() if t.startswith("iis-")]
    assert order[:4] == ["iis-discover", "iis-import-chain", "iis-import-pfx", "iis-bind"]


def b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()[:16]


def der_of(cert) -> bytes:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("conn_type", ["winrm_http", "winrm_https_insecure"])
def test_install_to_a_chosen_node(iis_over_winrm, iis_ca: TestCA, conn_type: str) -> None:  # type: ignore[no-untyped-def]
    peer, endpoint = iis_over_winrm(conn_type)
    views_before, _ = snapshot(peer.host)
    bundle = bundle_of(iis_ca.issue("blog.example.com"))
    registry = get_registry()
    with registry.connect(endpoint, winrm_credentials()) as conn:
        nodes = registry.discover_nodes(endpoint, conn)
        chosen = [n for n in nodes if n.locator == "Blog|https|127.0.0.5:8443:"]
        result = registry.install(endpoint, conn, bundle, chosen, False, None)
    views, _ = snapshot(peer.host)
    assert {k: v for k, v in views.items() if views_before[k] != v} == {
        ("Blog", "https", "127.0.0.5:8443:"): thumbprint(bundle)}
    assert result.nodes == ("Blog",)
    assert any("verification skipped for 127.0.0.5:8443" in m for m in result.messages)


def test_reinstalling_the_bound_certificate_is_harmless(loopback, scene_certs: Scene) -> None:  # type: ignore[no-untyped-def]
    before = snapshot(loopback.winhost)
    result = install(loopback, bundle_of(scene_certs.shop))
    assert result.nodes == ("shop.example.com",) and snapshot(loopback.winhost)[0] == before[0]


# -- dry run --------------------------------------------------------------------------------------
def test_dry_run_changes_nothing_and_shows_the_plan(loopback, iis_ca: TestCA) -> None:  # type: ignore[no-untyped-def]
    host = loopback.winhost
    before = snapshot(host)
    bundle = bundle_of(iis_ca.issue("shop.example.com", "blog.example.com"))
    result = install(loopback, bundle, dry_run=True)
    assert result.dry_run and not result.verified
    assert snapshot(host) == before and temp_files(host) == []
    run = set(host.templates_run())
    assert run <= {"iis-discover", "file-stat", "file-realpath"}, run  # read-only: resolving links is no change
    actions = [(s.action, s.target) for s in result.plan]
    assert [a for a, _ in actions] == ["write", "write", "run", "run", "remove", "remove", "api", "api", "verify"]
    assert actions[6][1] == "bind site 'Shop' https binding '*:443:shop.example.com'"
    assert actions[7][1] == "bind site 'Blog' https binding '*:443:blog.example.com'"
    assert thumbprint(bundle) in result.plan[6].detail


# -- failures restore everything ------------------------------------------------------------------
def test_failure_on_the_second_binding_restores_bindings_and_stores(loopback, iis_ca: TestCA) -> None:  # type: ignore[no-untyped-def]
    host = loopback.winhost
    before = snapshot(host)
    sim = IISSim.load(host)
    sim.fail("iis-bind", on_call=2, message="The process cannot access the file because it is being used by another process. (Exception from HRESULT: 0x80070020)")
    sim.save(host)
    bundle = bundle_of(iis_ca.issue("shop.example.com", "blog.example.com"))
    with pytest.raises(OperationError) as err:
        install(loopback, bundle)
    assert err.value.rolled_back
    assert "0x80070020" in str(err.value) and "every change was restored" in str(err.value)
    assert snapshot(host) == before
    assert temp_files(host) == []
    run = [t for t in host.templates_run() if t.startswith("iis-")]
    # Shop, Blog (failed), then Blog and Shop back to their old certificates (a failed bind may be half done)
    assert run.count("iis-bind") == 4
    # the new leaf, the new intermediate, then the bindings read back after the rollback
    assert run[-3:] == ["iis-remove-certs", "iis-remove-certs", "iis-discover"]


def test_failure_restores_a_binding_that_had_no_certificate(loopback, iis_ca: TestCA) -> None:  # type: ignore[no-untyped-def]
    host = loopback.winhost
    before = snapshot(host)
    sim = IISSim.load(host)
    sim.fail("iis-bind", on_call=2)
    sim.save(host)
    bundle = bundle_of(iis_ca.issue("api.example.com", "shop.example.com"))
    with pytest.raises(OperationError, match="simulated failure"):
        install(loopback, bundle)  # Shop binds, then Api (no certificate before) fails
    assert snapshot(host) == before


def test_unbound_binding_gets_unbound_again_after_a_later_failure(loopback, iis_ca: TestCA) -> None:  # type: ignore[no-untyped-def]
    host = loopback.winhost
    before = snapshot(host)
    sim = IISSim.load(host)
    sim.fail("iis-discover", on_call=2, message="read-back failed")  # the read-back after binding
    sim.save(host)
    bundle = bundle_of(iis_ca.issue("api.example.com"))
    with pytest.raises(OperationError, match="read-back failed") as err:
        install(loopback, bundle)
    assert err.value.rolled_back
    assert snapshot(host) == before
    assert "iis-unbind" in host.templates_run()


def test_import_failure_removes_uploaded_files_and_new_intermediates(loopback, iis_ca: TestCA) -> None:  # type: ignore[no-untyped-def]
    host = loopback.winhost
    before = snapshot(host)
    sim = IISSim.load(host)
    sim.fail("iis-import-pfx", message=WRONG_PFX_PASSWORD)
    sim.save(host)
    with pytest.raises(OperationError, match=r"importing the PFX into LocalMachine\\My failed: The PFX file you") as err:
        install(loopback, bundle_of(iis_ca.issue("shop.example.com")))
    assert err.value.rolled_back
    assert snapshot(host) == before and temp_files(host) == []
    assert "iis-bind" not in host.templates_run()


def test_rollback_keeps_a_certificate_that_was_already_in_the_store(loopback, iis_ca: TestCA) -> None:  # type: ignore[no-untyped-def]
    host = loopback.winhost
    both = bundle_of(iis_ca.issue("shop.example.com", "blog.example.com"))
    nodes = plugin.discover_nodes(ENDPOINT, loopback)
    install(loopback, both, [n for n in nodes if n.locator == "Shop|https|*:443:shop.example.com"])
    before = snapshot(host)
    sim = IISSim.load(host)
    sim.fail("iis-bind")
    sim.save(host)
    with pytest.raises(OperationError):
        install(loopback, both, [n for n in nodes if n.locator == "Blog|https|*:443:blog.example.com"])
    assert snapshot(host) == before
    assert thumbprint(both) in IISSim.load(host).stores["My"]


def test_thumbprint_mismatch_rolls_back(loopback, iis_ca: TestCA, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    host = loopback.winhost
    before = snapshot(host)
    other = bundle_of(iis_ca.issue("shop.example.com"))
    from tlsgate_iis import install as install_module

    real = install_module.legacy_pfx
    monkeypatch.setattr(install_module, "legacy_pfx", lambda bundle, pw: real(other, pw))  # a host that imports something else
    with pytest.raises(OperationError, match="the imported certificate has thumbprint") as err:
        install(loopback, bundle_of(iis_ca.issue("shop.example.com")))
    assert err.value.rolled_back and snapshot(host) == before


# -- verification by handshake ----------------------------------------------------------------------
@pytest.fixture
def live(scene_certs: Scene) -> Iterator[tuple[LoopbackWindowsConnection, SimHttpSys]]:
    """Two sites bound on a port where a listener serves what the simulated HTTP.sys has bound."""
    host = SimulatedWindowsHost()
    install_iis(host, IISSim())
    server = SimHttpSys(host)
    port = server.port
    sim = IISSim.load(host)
    sim.add_site("Shop", ("https", f"*:{port}:shop.example.com", 1))
    sim.add_site("Default Web Site", ("https", f"*:{port}:"))
    sim.bind("Shop", f"*:{port}:shop.example.com", sim.add_certificate(der(scene_certs.shop), key=scene_certs.shop.key))
    sim.bind("Default Web Site", f"*:{port}:", sim.add_certificate(der(scene_certs.default), key=scene_certs.default.key))
    sim.save(host)
    server.start()
    yield LoopbackWindowsConnection(host, name="127.0.0.1"), server
    server.stop()


def test_install_is_verified_by_a_real_handshake(live, iis_ca: TestCA) -> None:  # type: ignore[no-untyped-def]
    conn, server = live
    new = iis_ca.issue("shop.example.com")
    result = install(conn, bundle_of(new))
    assert result.verified is True
    assert any(m.startswith("verified by TLS handshake: 127.0.0.1:") for m in result.messages)
    assert ("shop.example.com", thumbprint(bundle_of(new))) in server.handshakes


def test_a_host_that_keeps_serving_the_old_certificate_is_rolled_back(live, iis_ca: TestCA,  # type: ignore[no-untyped-def]
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from tlsgate_iis import install as install_module

    monkeypatch.setattr(install_module, "VERIFY_DEADLINE", 1.0)
    conn, server = live
    server.freeze()
    before = snapshot(conn.winhost)
    with pytest.raises(OperationError, match="verification by TLS handshake failed") as err:
        install(conn, bundle_of(iis_ca.issue("shop.example.com")))
    assert err.value.rolled_back and snapshot(conn.winhost) == before


# -- refusals before any change -------------------------------------------------------------------
def test_shared_ip_port_is_refused(scene_certs: Scene, iis_ca: TestCA) -> None:
    host = SimulatedWindowsHost()
    sim = build_scene(scene_certs)
    sim.add_site("Intranet", ("https", "*:443:intranet.example.org"))  # non-SNI on *:443, like Default Web Site
    install_iis(host, sim)
    before = snapshot(host)
    with pytest.raises(ValidationError, match=r"--node: .*shares the HTTP.sys certificate of 0.0.0.0:443 with "
                                              r"'\*:443:' of site 'Default Web Site'"):
        install(LoopbackWindowsConnection(host), bundle_of(iis_ca.issue("intranet.example.org")))
    assert snapshot(host) == before and [t for t in host.templates_run()] == ["iis-discover"]
    # choosing both is an informed decision
    nodes = plugin.discover_nodes(ENDPOINT, LoopbackWindowsConnection(host))
    both = [n for n in nodes if n.protocol == "https" and n.port == 443 and "IP-based" in n.state]
    result = install(LoopbackWindowsConnection(host), bundle_of(iis_ca.issue("intranet.example.org")), both)
    assert set(result.nodes) == {"Default Web Site", "intranet.example.org"}


def test_not_an_administrator_is_refused(loopback, iis_ca: TestCA) -> None:  # type: ignore[no-untyped-def]
    sim = IISSim.load(loopback.winhost)
    sim.admin = False
    sim.save(loopback.winhost)
    with pytest.raises(OperationError, match="not a member of the local Administrators group"):
        install(loopback, bundle_of(iis_ca.issue("shop.example.com")))
    assert loopback.winhost.templates_run() == ["iis-discover"]


def test_nothing_covered_or_http_only_is_refused(loopback, iis_ca: TestCA) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match=r"--node: the certificate \(names: other.example.net\) covers no "
                                              r"https binding's host header.*Shop\|https\|\*:443:shop.example.com"):
        install(loopback, bundle_of(iis_ca.issue("other.example.net")))
    http = [Node(name="Default Web Site", protocol="http", locator="Default Web Site|http|*:80:")]
    with pytest.raises(ValidationError, match="--node: the chosen nodes are http bindings"):
        install(loopback, bundle_of(iis_ca.issue("other.example.net")), http)
    gone = [Node(name="x", locator="Gone|https|*:443:")]
    with pytest.raises(ValidationError, match="no longer on the host"):
        install(loopback, bundle_of(iis_ca.issue("other.example.net")), gone)


def test_site_name_selects_its_https_bindings_only(loopback, iis_ca: TestCA) -> None:  # type: ignore[no-untyped-def]
    nodes = [n for n in plugin.discover_nodes(ENDPOINT, loopback) if "Shop" in n.alias]
    assert {n.protocol for n in nodes} == {"http", "https"}
    result = install(loopback, bundle_of(iis_ca.issue("shop.example.com")), nodes)
    assert result.nodes == ("shop.example.com",)


# -- what the simulated host does with the templates on its own -----------------------------------
def test_wrong_pfx_password_and_unknown_thumbprint_fail_like_windows(loopback, scene_certs: Scene) -> None:  # type: ignore[no-untyped-def]
    host = loopback.winhost
    bundle = bundle_of(scene_certs.shop)
    host.seed(TEMP_DIR + "\\x.pfx", legacy_pfx(bundle, "right"))
    res = loopback.run_powershell(scripts.IMPORT_PFX, {"path": TEMP_DIR + "\\x.pfx", "thumbprint": thumbprint(bundle)},
                                  secret_params={"password": "wrong"})
    assert res.exit_code == 1 and res.stderr.strip() == WRONG_PFX_PASSWORD
    res = loopback.run_powershell(scripts.BIND, {"site": "Shop", "binding": "*:443:shop.example.com",
                                                "thumbprint": "AB" * 20, "store": "My"})
    assert res.exit_code == scripts.EXIT_NO_SUCH_CERTIFICATE
    assert res.stderr.strip() == f"Cannot find path 'Cert:\\LocalMachine\\My\\{'AB' * 20}' because it does not exist."


# -- the PFX profile ------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_pfx_is_legacy_3des_with_sha1_mac(scene_certs: Scene, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.pfx"
    path.write_bytes(legacy_pfx(bundle_of(scene_certs.shop), "pw"))
    out = subprocess.run(["openssl", "pkcs12", "-info", "-noout", "-in", str(path), "-passin", "pass:pw"],
                         capture_output=True, text=True, check=True)
    text = out.stdout + out.stderr
    assert "MAC: sha1" in text
    assert "pbeWithSHA1And3-KeyTripleDES-CBC" in text and "AES" not in text


# -- restart --------------------------------------------------------------------------------------
def test_restart_restarts_w3svc(loopback) -> None:  # type: ignore[no-untyped-def]
    result = plugin.restart(ENDPOINT, loopback)
    assert result.restarted and result.message.startswith("restarted W3SVC (World Wide Web Publishing Service)")
    assert "3 of 4 site(s) started" in result.message
    assert IISSim.load(loopback.winhost).restarts == 1


def test_choosing_a_binding_the_certificate_does_not_cover_warns(loopback, iis_ca: TestCA) -> None:  # type: ignore[no-untyped-def]
    nodes = [n for n in plugin.discover_nodes(ENDPOINT, loopback) if n.locator == "Blog|https|*:443:blog.example.com"]
    result = install(loopback, bundle_of(iis_ca.issue("shop.example.com")), nodes)
    assert ("warning: the certificate does not cover 'blog.example.com' (site 'Blog' https binding "
            "'*:443:blog.example.com')") in result.messages


def test_restart_failure_is_reported(loopback) -> None:  # type: ignore[no-untyped-def]
    sim = IISSim.load(loopback.winhost)
    sim.fail("iis-restart", message="Service 'World Wide Web Publishing Service (W3SVC)' cannot be started due to "
                                    "the following error: Cannot start service W3SVC on computer '.'.")
    sim.save(loopback.winhost)
    with pytest.raises(OperationError, match=r"restarting IIS \(W3SVC\) failed: Service 'World Wide Web Publishing"):
        plugin.restart(ENDPOINT, loopback)


def test_server_2016_rtm_imports_the_legacy_pfx_but_not_a_modern_one(loopback, scene_certs: Scene,  # type: ignore[no-untyped-def]
                                                                      iis_ca: TestCA) -> None:
    host = loopback.winhost
    sim = IISSim.load(host)
    sim.build = 14393  # Windows Server 2016 RTM (1607)
    sim.save(host)
    result = install(loopback, bundle_of(iis_ca.issue("shop.example.com")))
    assert result.nodes == ("shop.example.com",)
    host.seed(TEMP_DIR + "\\modern.pfx", scene_certs.shop.pfx("pw"))  # AES-256 + SHA-256 MAC
    res = loopback.run_powershell(scripts.IMPORT_PFX, {"path": TEMP_DIR + "\\modern.pfx", "thumbprint": "00" * 20},
                                  secret_params={"password": "pw"})
    assert res.exit_code == 1 and res.stderr.strip() == WRONG_PFX_PASSWORD


def test_a_unicode_host_header_is_chosen_by_the_certificate_of_its_a_label(scene_certs: Scene, iis_ca: TestCA) -> None:
    """IIS 7+ and HTTP.sys take a binding's host header in Unicode (blogs.iis.net/thomad, "Hosting
    Übersites: IIS7 Support for International Domain Names (IDN)"); a certificate holds the name
    as its A-label (RFC 5280 section 7.2). Without --node the install picks the binding whose host
    header the certificate covers, comparing A-labels."""
    host = SimulatedWindowsHost()
    sim = build_scene(scene_certs)
    sim.add_site("Bücher", ("https", "*:443:bücher.example", 1))
    sim.bind("Bücher", "*:443:bücher.example", sim.add_certificate(der(scene_certs.shop), key=scene_certs.shop.key))
    install_iis(host, sim)
    new = iis_ca.issue("xn--bcher-kva.example")
    result = install(LoopbackWindowsConnection(host), bundle_of(new))
    assert result.nodes == ("bücher.example",)
    after = IISSim.load(host).bindings_view()
    assert after[("Bücher", "https", "*:443:bücher.example")] == thumbprint(bundle_of(new))
