"""Against a real Tomcat 10.1 (Debian tomcat10 + openjdk-17) started by the tests from a private
CATALINA_BASE on 127.0.0.1 free ports: discovery, install, restore, dry run, restart."""

from __future__ import annotations

import os
import pwd
import stat
import time
from pathlib import Path

import pytest
from tlsgate import CertificateBundle, Node, OperationError
from tlsgate_testing.certs import TestCA
from tlsgate_testing.connections import LocalConnection
from tlsgate_tomcat import keystore, plugin
from tlsgate_tomcat.keystore import JKS_MAGIC
from tomcat_peer import TomcatServer

pytestmark = pytest.mark.slow


def bundle_of(issued) -> CertificateBundle:  # type: ignore[no-untyped-def]
    return CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)


def conf_snapshot(base: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(base)): (p.read_bytes(), p.stat().st_mode) for p in (base / "conf").rglob("*")
            if p.is_file()}


def served_all(t: TomcatServer) -> dict[tuple[int, str | None], str | None]:
    return {key: t.served(*key) for key in t.expected()}


def locator(t: TomcatServer, port: int, host: str) -> str:
    return f"Catalina/127.0.0.1:{port}/{host}"


def test_discovery_is_exact(tomcat10: TomcatServer, make_endpoint) -> None:
    t = tomcat10
    nodes = plugin.discover_nodes(make_endpoint(t.base), LocalConnection())
    assert [(n.name, n.ip, n.port, n.fingerprint, n.subject, n.state, n.locator) for n in nodes] == [
        ("_default_", "127.0.0.1", t.jks_port, t.certs["jks"].fingerprint, "CN=a.test", "active",
         locator(t, t.jks_port, "_default_")),
        ("_default_", "127.0.0.1", t.p12_port, t.certs["p12"].fingerprint, "CN=default.test", "active",
         locator(t, t.p12_port, "_default_")),
        ("b.test", "127.0.0.1", t.p12_port, t.certs["b"].fingerprint, "CN=b.test", "active",
         locator(t, t.p12_port, "b.test")),
        ("pem.test", "127.0.0.1", t.p12_port, t.certs["pem"].fingerprint, "CN=pem.test", "active",
         locator(t, t.p12_port, "pem.test")),
    ]
    assert {n.vendor for n in nodes} == {"Apache Tomcat"}
    assert {n.protocol for n in nodes} == {"https"}


def test_install_to_one_sni_host_changes_that_host_only(tomcat10: TomcatServer, make_endpoint, test_ca: TestCA) -> None:
    t = tomcat10
    before_xml = t.server_xml.read_bytes()
    before_served = served_all(t)
    new = test_ca.issue("b.test")
    pid_before = t.pids()
    result = plugin.install(make_endpoint(t.base), LocalConnection(), bundle_of(new), [], False, None)
    assert result.verified and not result.rolled_back and result.nodes == ("b.test",)
    assert t.served(t.p12_port, "b.test") == new.fingerprint
    after = served_all(t)
    assert {k: v for k, v in after.items() if k != (t.p12_port, "b.test")} == {
        k: v for k, v in before_served.items() if k != (t.p12_port, "b.test")}
    assert t.pids() != pid_before  # restarted
    # every byte of server.xml but the one attribute value
    rel = f"conf/tlsgate/127.0.0.1_{t.p12_port}_b.test-{new.fingerprint[:12]}.p12"
    assert t.server_xml.read_bytes() == before_xml.replace(
        b'certificateKeystoreFile="conf/b.p12"', f'certificateKeystoreFile="{rel}"'.encode())
    ks = t.base / rel
    st = ks.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640  # 0600 + group read, as server.xml (root:tomcat 0640)
    assert (st.st_uid, st.st_gid) == (t.server_xml.stat().st_uid, t.server_xml.stat().st_gid)
    assert keystore.find_entry(keystore.read_entries(ks.read_bytes(), "b'secret\""), "Tomcat") is not None
    if t.user:  # started again as the user it ran as, not as root
        uid = pwd.getpwnam(t.user).pw_uid
        assert all(os.stat(f"/proc/{pid}").st_uid == uid for pid in t.pids())
    nodes = plugin.discover_nodes(make_endpoint(t.base), LocalConnection())
    assert [(n.name, n.fingerprint, n.state) for n in nodes if n.name == "b.test"] == [
        ("b.test", new.fingerprint, "active")]


def test_install_into_jks_connector_keeps_jks(tomcat10: TomcatServer, make_endpoint, test_ca: TestCA) -> None:
    t = tomcat10
    new = test_ca.issue("a.test", key_type="rsa")  # an RSA key into a Certificate declared type="EC"
    node = Node(name="_default_", ip="127.0.0.1", port=t.jks_port, locator=locator(t, t.jks_port, "_default_"))
    result = plugin.install(make_endpoint(t.base), LocalConnection(), bundle_of(new), [node], False, None)
    assert result.verified
    path = t.base / f"conf/tlsgate/127.0.0.1_{t.jks_port}__default_-{new.fingerprint[:12]}.jks"
    assert any(m == f"{locator(t, t.jks_port, '_default_')} now serves from {path}" for m in result.messages)
    assert path.read_bytes().startswith(JKS_MAGIC)
    assert t.served(t.jks_port) == new.fingerprint
    assert t.served(t.p12_port) == t.certs["p12"].fingerprint
    assert b'type="RSA" />' in t.server_xml.read_bytes()


def test_install_pem_host_writes_pem_files(tomcat10: TomcatServer, make_endpoint, test_ca: TestCA) -> None:
    t = tomcat10
    new = test_ca.issue("pem.test")
    result = plugin.install(make_endpoint(t.base), LocalConnection(), bundle_of(new), [], False, None)
    assert result.nodes == ("pem.test",)
    assert t.served(t.p12_port, "pem.test") == new.fingerprint
    assert t.served(t.p12_port, "b.test") == t.certs["b"].fingerprint
    key = t.base / f"conf/tlsgate/127.0.0.1_{t.p12_port}_pem.test-{new.fingerprint[:12]}.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o640


class ChmodKeystoreConnection(LocalConnection):
    """A host where the new keystore ends up unreadable for Tomcat (mode 000): root, which
    validates it, can still read it; the non-root Tomcat cannot."""

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        super().write_file(path, data, mode=mode)
        if "/conf/tlsgate/" in path and path.endswith(".p12"):
            os.chmod(path, 0)


def test_unreadable_new_keystore_is_restored_and_old_cert_served(
    tomcat10: TomcatServer, make_endpoint, test_ca: TestCA
) -> None:
    t = tomcat10
    if os.geteuid() == 0 and not t.user:
        pytest.skip("needs Tomcat running as a non-root user")
    before = conf_snapshot(t.base)
    with pytest.raises(OperationError) as err:
        plugin.install(make_endpoint(t.base), ChmodKeystoreConnection(), bundle_of(test_ca.issue("b.test")), [], False, None)
    assert err.value.rolled_back
    assert "do not listen" in str(err.value) or "verification" in str(err.value)
    assert conf_snapshot(t.base) == before  # the new keystore removed, server.xml restored
    assert served_all(t) == t.expected()  # Tomcat restarted again with the old configuration


def test_validation_before_restart_catches_a_keystore_that_does_not_open(
    tomcat10: TomcatServer, make_endpoint, test_ca: TestCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = tomcat10
    from tlsgate_tomcat import install as install_mod

    real = keystore.write_keystore
    monkeypatch.setattr(install_mod.keystore, "write_keystore",
                        lambda kind, bundle, alias, password: real(kind, bundle, alias, password + "x"))
    pids = t.pids()
    before = conf_snapshot(t.base)
    with pytest.raises(OperationError, match="cannot open") as err:
        plugin.install(make_endpoint(t.base), LocalConnection(), bundle_of(test_ca.issue("b.test")), [], False, None)
    assert err.value.rolled_back
    assert t.pids() == pids  # never restarted
    assert conf_snapshot(t.base) == before


def test_dry_run_changes_nothing(tomcat10: TomcatServer, make_endpoint, test_ca: TestCA) -> None:
    t = tomcat10
    before = conf_snapshot(t.base)
    pids = t.pids()
    result = plugin.install(make_endpoint(t.base), LocalConnection(), bundle_of(test_ca.issue("b.test")), [], True, None)
    assert result.dry_run and not result.files_written
    assert [s.action for s in result.plan] == ["write", "replace", "verify", "run", "restart", "verify"]
    assert "configtest" in result.plan[3].target  # before anything is stopped
    # Debian's tomcat10 is installed here: restarted as its service starts it
    assert "/usr/libexec/tomcat10/tomcat-start.sh" in result.plan[4].target
    assert "b'secret" not in repr(result)
    assert conf_snapshot(t.base) == before
    assert not (t.base / "conf" / "tlsgate").exists()
    assert t.pids() == pids


def test_restart_hook_restarts_and_waits(tomcat10: TomcatServer, make_endpoint) -> None:
    t = tomcat10
    pids = t.pids()
    result = plugin.restart(make_endpoint(t.base), LocalConnection())
    assert result.restarted and "/usr/libexec/tomcat10/tomcat-start.sh" in result.message
    assert t.pids() and t.pids() != pids
    assert all(os.getsid(pid) != os.getsid(0) for pid in t.pids())  # detached from the gateway's session
    assert served_all(t) == t.expected()


def test_disabled_shutdown_port_is_stopped_by_signal(tomcat10: TomcatServer, make_endpoint) -> None:
    """Debian ships ``<Server port="-1">``: no shutdown command; the driver stops its pid."""
    t = tomcat10
    xml = t.server_xml.read_bytes()
    t.server_xml.write_bytes(xml.replace(f'<Server port="{t.shutdown_port}"'.encode(), b'<Server port="-1"'))
    pids = t.pids()
    result = plugin.restart(make_endpoint(t.base), LocalConnection())
    assert result.restarted
    assert t.pids() and t.pids() != pids
    assert served_all(t) == t.expected()
    again = t.pids()
    plugin.restart(make_endpoint(t.base), LocalConnection())  # now the running server has no port either
    assert t.pids() and t.pids() != again


def test_validate_checks_a_local_tomcat_dir(tmp_path: Path, make_endpoint) -> None:
    problems = plugin.validate(make_endpoint(tmp_path))
    assert [p.option for p in problems] == ["--tomcat_dir"]
    assert "server.xml" in problems[0].message


def test_a_connector_down_before_the_install_does_not_block_it(
    tomcat10: TomcatServer, make_endpoint, test_ca: TestCA
) -> None:
    t = tomcat10
    xml = t.server_xml.read_bytes()
    t.server_xml.write_bytes(xml.replace(b'certificateKeystorePassword="jks-Secret 1"',
                                         b'certificateKeystorePassword="not the password"'))
    t.stop()
    t.start(wait=False)
    deadline = time.monotonic() + 60
    while t.served(t.p12_port) is None and time.monotonic() < deadline:
        time.sleep(0.3)
    assert t.served(t.jks_port) is None  # the JKS connector could not load its keystore
    nodes = {n.locator: n.state for n in plugin.discover_nodes(make_endpoint(t.base), LocalConnection())}
    assert nodes[locator(t, t.jks_port, "_default_")] == "down"
    new = test_ca.issue("b.test")
    result = plugin.install(make_endpoint(t.base), LocalConnection(), bundle_of(new), [], False, None)
    assert result.verified
    assert t.served(t.p12_port, "b.test") == new.fingerprint
    assert t.served(t.p12_port) == t.certs["p12"].fingerprint
    assert t.served(t.jks_port) is None
