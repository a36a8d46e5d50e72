"""What a real Windows Server 2016-2022 with IIS 10 does that the first driver did not survive
(issue 15), over every remote transport (winrm_http, winrm_https, ssh_windows with the real
clients). Each test names its defect; the simulator (:mod:`iis_sim`) reproduces the host's
behaviour, traced there to the public report it comes from."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from iis_scene import Scene, build_scene, der
from iis_sim import ENUMERATE_234, FTP_STATE_ERROR, LOGON_SESSION_ERROR, IISSim
from tlsgate import CertificateBundle, Node, OperationError
from tlsgate.registry import get_registry
from tlsgate_iis import scripts
from tlsgate_iis.pfx import thumbprint
from tlsgate_testing.certs import Issued, TestCA
from tlsgate_testing.fixtures_core import free_port
from tlsgate_testing.winrm_fixtures import winrm_credentials

KINDS = ["winrm_http", "winrm_https", "ssh_windows"]


@attrs.define
class Remote:
    """An iis endpoint on the simulated host, reached over one transport."""

    kind: str
    endpoint: Any
    credentials: Any
    store: Any  # where IISSim is saved (the SimulatedWindowsHost, or the ssh_windows host)

    def load(self) -> IISSim:
        return IISSim.load(self.store)

    def save(self, sim: IISSim) -> None:
        sim.save(self.store)

    def connect(self) -> Any:
        return get_registry().connect(self.endpoint, self.credentials)

    def discover(self) -> list[Node]:
        with self.connect() as conn:
            return get_registry().discover_nodes(self.endpoint, conn)

    def install(self, bundle: CertificateBundle, nodes: list[Node] | None = None) -> Any:
        with self.connect() as conn:
            return get_registry().install(self.endpoint, conn, bundle, nodes or [], False, None)


@pytest.fixture(params=KINDS)
def remote(request: pytest.FixtureRequest) -> Iterator[Remote]:
    if request.param == "ssh_windows":
        server = request.getfixturevalue("iis_over_ssh")
        yield Remote("ssh_windows", server.endpoint(type="iis", name="iisssh"), server.credentials(), server)
        return
    make: Callable[[str], tuple[Any, Any]] = request.getfixturevalue("iis_over_winrm")
    peer, endpoint = make(request.param)
    yield Remote(request.param, endpoint, winrm_credentials(), peer.host)


def bundle_of(issued: Issued) -> CertificateBundle:
    return CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)


def snapshot(sim: IISSim) -> tuple[object, object, object]:
    return sim.bindings_view(), sim.attributes_view(), sim.store_view()


def by_locator(nodes: list[Node], locator: str) -> Node:
    return next(n for n in nodes if n.locator == locator)


# -- defect 1: binding update in place ------------------------------------------------------------
def test_1_bind_replaces_the_binding_where_update_in_place_fails(remote: Remote, iis_ca: TestCA) -> None:
    sim = remote.load()
    sim.update_in_place_fails = True  # this host's CommitChanges fails with 0x80070520 on an update in place
    remote.save(sim)
    views, attributes, _stores = snapshot(sim)
    new = bundle_of(iis_ca.issue("shop.example.com"))
    result = remote.install(new)
    after = remote.load()
    changed = {k: v for k, v in after.bindings_view().items() if views[k] != v}
    assert changed == {("Shop", "https", "*:443:shop.example.com"): thumbprint(new)}
    # the replaced binding keeps every attribute (SNI flag, host header, IP, port) and its position
    assert after.attributes_view() == attributes
    assert result.nodes == ("shop.example.com",) and not result.rolled_back


def test_1_rollback_goes_through_the_same_replace_and_is_read_back(remote: Remote, iis_ca: TestCA) -> None:
    sim = remote.load()
    sim.update_in_place_fails = True
    sim.fail("iis-bind", on_call=2, message=LOGON_SESSION_ERROR, error_id="COMException")  # Blog fails
    remote.save(sim)
    before = snapshot(sim)
    with pytest.raises(OperationError, match="0x80070520") as err:
        remote.install(bundle_of(iis_ca.issue("shop.example.com", "blog.example.com")))
    assert err.value.rolled_back, str(err.value)
    assert snapshot(remote.load())[:2] == before[:2]  # Shop has its old certificate and attributes back


def test_1_a_rollback_that_did_not_take_is_reported_loudly(remote: Remote, iis_ca: TestCA) -> None:
    sim = remote.load()
    sim.fail("iis-bind", on_call=2)  # Blog fails ...
    sim.fail("iis-bind", on_call=4, mode="ignore")  # ... and restoring Shop "succeeds" without effect
    remote.save(sim)
    with pytest.raises(OperationError, match=r"ROLLBACK INCOMPLETE, the bindings read back are not as before") as err:
        remote.install(bundle_of(iis_ca.issue("shop.example.com", "blog.example.com")))
    assert not err.value.rolled_back
    assert "site 'Shop' https binding '*:443:shop.example.com' has" in str(err.value)


# -- defect 2: error detail -------------------------------------------------------------------------
def test_2_an_error_record_is_reported_by_its_message_and_id(remote: Remote, iis_ca: TestCA) -> None:
    sim = remote.load()
    sim.fail("iis-import-chain", message="Import-Certificate : Cannot find the requested object. (Exception from "
             "HRESULT: 0x80092004)", error_id="System.Runtime.InteropServices.COMException,"
             "Microsoft.CertificateServices.Commands.ImportCertificateCommand",
             warnings=("The certificate store CA is large.",))
    remote.save(sim)
    with pytest.raises(OperationError) as err:
        remote.install(bundle_of(iis_ca.issue("shop.example.com")))
    text = str(err.value)
    assert ("importing the intermediates into LocalMachine\\CA failed: Import-Certificate : Cannot find the "
            "requested object. (Exception from HRESULT: 0x80092004) (System.Runtime.InteropServices.COMException,"
            "Microsoft.CertificateServices.Commands.ImportCertificateCommand)") in text
    assert "FullyQualifiedErrorId" not in text and "CategoryInfo" not in text


def test_2_text_a_template_writes_itself_is_kept(remote: Remote, iis_ca: TestCA) -> None:
    """``[Console]::Error`` text lands inside the open CLIXML block (after the module-loading
    progress record): it must reach the operator, not "exit status 1"."""
    sim = remote.load()
    sim.fail("iis-bind", message="The process cannot access the file because it is being used by another process.")
    remote.save(sim)
    with pytest.raises(OperationError, match=r"binding site 'Shop' https binding '\*:443:shop\.example\.com' to "
                                             r"certificate [0-9A-F]{40} failed: The process cannot access the file"):
        remote.install(bundle_of(iis_ca.issue("shop.example.com")))


# -- defect 3: discovery survives odd sites and bindings ------------------------------------------
def odd_scene(certs: Scene) -> IISSim:
    sim = build_scene(certs)
    sim.add_ftp_site("Files")  # FTP only: State throws 0x800710D8
    sim.add_site("Services", ("net.tcp", "808:*"), ("net.pipe", "*"), ("msmq.formatname", "localhost"),
                 ("https", "*:443:svc.example.com", 1))
    sim.sites[-1].bindings[-1].read_error = "The configuration object is read only, because it has been committed."
    sim.add_site("FtpsToo", ("ftp", "*:990:"), ("https", "*:443:ftps.example.com", 1))
    sim.sites[-1].state_error = FTP_STATE_ERROR
    return sim


def test_3_discovery_reports_unreadable_sites_and_bindings_as_nodes(remote: Remote, scene_certs: Scene) -> None:
    remote.save(odd_scene(scene_certs))
    nodes = remote.discover()
    svc = by_locator(nodes, "Services|https|*:443:svc.example.com")
    assert svc.state == ("unreadable: the binding could not be read: The configuration object is read only, "
                         "because it has been committed.")
    ftps = by_locator(nodes, "FtpsToo|https|*:443:ftps.example.com")
    assert ftps.state.startswith(f"unknown ({FTP_STATE_ERROR})") and "no certificate bound" in ftps.state
    # the rest of the host is discovered as before; WAS and FTP bindings are not certificate nodes
    assert by_locator(nodes, "Shop|https|*:443:shop.example.com").fingerprint == scene_certs.shop.fingerprint
    assert not [n for n in nodes if n.protocol in ("net.tcp", "net.pipe", "msmq.formatname", "ftp")]
    assert not [n for n in nodes if "Files" in n.alias]


# -- defect 4: HTTP.sys entries of other applications ---------------------------------------------
def test_4_entries_without_a_store_name_do_not_break_unbind_and_cleanup(remote: Remote, iis_ca: TestCA,
                                                                         scene_certs: Scene) -> None:
    sim = remote.load()
    winrm_thumb = sim.add_certificate(der(scene_certs.default), key=scene_certs.default.key)
    sim.add_foreign_http_sys_entries(winrm_thumb)
    sim.fail("iis-discover", on_call=2, message="read-back failed")  # forces the rollback after binding
    remote.save(sim)
    before = snapshot(sim)
    foreign = {k: v for k, v in sim.http_sys.items() if "app" in v}
    with pytest.raises(OperationError, match="read-back failed") as err:
        remote.install(bundle_of(iis_ca.issue("api.example.com")))  # Api had no certificate
    assert err.value.rolled_back, str(err.value)
    assert ENUMERATE_234 not in str(err.value)
    after = remote.load()
    assert snapshot(after) == before
    assert {k: v for k, v in after.http_sys.items() if "app" in v} == foreign  # other applications' entries untouched


# -- defect 5: IPv6, *, 0.0.0.0 ----------------------------------------------------------------------
def test_5_ipv6_and_wildcard_bindings_discover_install_and_roll_back(remote: Remote, iis_ca: TestCA,
                                                                      scene_certs: Scene) -> None:
    port6, port4 = free_port(), free_port()
    sim = IISSim()
    sim.add_site("Six", ("https", f"[::1]:{port6}:"), ("https", f"*:{port6}:"))
    sim.add_site("Zero", ("https", f"0.0.0.0:{port4}:"))
    sim.add_site("Star", ("https", "*:443:star.example.com", 1))
    sim.bind("Zero", f"0.0.0.0:{port4}:", sim.add_certificate(der(scene_certs.default), key=scene_certs.default.key))
    remote.save(sim)
    nodes = remote.discover()
    six = by_locator(nodes, f"Six|https|[::1]:{port6}:")
    assert (six.ip, six.port, six.state) == ("::1", port6, "active; IP-based; no certificate bound")
    assert by_locator(nodes, f"Zero|https|0.0.0.0:{port4}:").fingerprint == scene_certs.default.fingerprint
    assert by_locator(nodes, f"Six|https|*:{port6}:").ip == "0.0.0.0"
    bundle = bundle_of(iis_ca.issue("six.example.com"))
    result = remote.install(bundle, [six])
    assert remote.load().http_sys[f"ipport=[::1]:{port6}"]["hash"] == thumbprint(bundle)
    assert result.nodes == ("Six",)
    # a failure after binding: the IPv6 binding gets no certificate again, by its exact netsh key
    before = snapshot(remote.load())
    sim = remote.load()
    sim.fail("iis-discover", on_call=3, message="read-back failed")
    remote.save(sim)
    other = bundle_of(iis_ca.issue("six.example.com"))
    six_zero = [by_locator(remote.discover(), f"Zero|https|0.0.0.0:{port4}:")]
    with pytest.raises(OperationError, match="read-back failed") as err:
        remote.install(other, six_zero)
    assert err.value.rolled_back, str(err.value)
    assert snapshot(remote.load())[:2] == before[:2]


# -- defect 8: ConstrainedLanguage -------------------------------------------------------------------
def test_8_constrained_language_is_refused_clearly_before_any_change(remote: Remote, iis_ca: TestCA) -> None:
    sim = remote.load()
    sim.language_mode = "ConstrainedLanguage"
    remote.save(sim)
    before = snapshot(sim)
    expected = ("PowerShell on this host runs in ConstrainedLanguage mode (AppLocker or WDAC policy); the IIS "
                "driver needs FullLanguage")
    with pytest.raises(OperationError, match="reading the IIS configuration failed: " + expected.replace("(", "\\(")
                       .replace(")", "\\)")):
        remote.discover()
    with pytest.raises(OperationError, match=expected.replace("(", "\\(").replace(")", "\\)")):
        remote.install(bundle_of(iis_ca.issue("shop.example.com")))
    assert snapshot(remote.load()) == before


def test_every_template_stops_on_constrained_language_first() -> None:
    for name, text in scripts.TEMPLATES.items():
        body = text.split("\n", 1)[1]
        assert body.startswith("$lm = [string]$ExecutionContext.SessionState.LanguageMode\n"), name
