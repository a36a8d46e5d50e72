"""The Tomcat driver over the real ssh transport (private sshd, root key login) against the real
Tomcat 10: discovery equals the local one, install + restart + verification work remotely."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tlsgate import CertificateBundle, ConnectionSpec, Credentials, Endpoint
from tlsgate_testing.certs import TestCA
from tlsgate_testing.connections import LocalConnection, ssh
from tlsgate_testing.sshd import SshdServer
from tlsgate_tomcat import plugin
from tlsgate_tomcat.plugin import TomcatOptions
from tomcat_peer import TomcatServer

pytestmark = pytest.mark.slow


@pytest.fixture
def root_ssh(sshd: SshdServer, tlsgate_home: Path, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Endpoint, ssh.SSHConnection]]:
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # never the real ~/.ssh/known_hosts
    ssh.trust_host_key(sshd.host, sshd.port, sshd.host_key_public)
    yield sshd  # type: ignore[misc]


def ssh_endpoint(sshd: SshdServer, base: Path) -> Endpoint:
    return Endpoint(name="tc-ssh", type="tomcat",
                    connection=ConnectionSpec(type="ssh", host=sshd.host, port=sshd.port, user="root"),
                    options=TomcatOptions(tomcat_dir=str(base)))


def test_discover_and_install_over_ssh(tomcat10: TomcatServer, root_ssh: SshdServer, test_ca: TestCA) -> None:
    t, sshd = tomcat10, root_ssh
    ep = ssh_endpoint(sshd, t.base)
    xml_stat = t.server_xml.stat()
    local = plugin.discover_nodes(Endpoint(name="l", type="tomcat", connection=ConnectionSpec("local"),
                                           options=TomcatOptions(tomcat_dir=str(t.base))), LocalConnection())
    with ssh.connect_ssh(ep, Credentials(ssh_key_path=str(sshd.root_key.path))) as conn:
        remote = plugin.discover_nodes(ep, conn)
        assert [n.to_json() for n in remote] == [n.to_json() for n in local]
        new = test_ca.issue("pem.test", "b.test")
        bundle = CertificateBundle.from_pem(new.cert_pem, new.key_pem, new.chain_pem)
        result = plugin.install(ep, conn, bundle, [], False, None)
    assert sorted(result.nodes) == ["b.test", "pem.test"]
    assert result.verified
    assert t.served(t.p12_port, "b.test") == new.fingerprint
    assert t.served(t.p12_port, "pem.test") == new.fingerprint
    assert t.served(t.p12_port) == t.certs["p12"].fingerprint
    assert t.served(t.jks_port) == t.certs["jks"].fingerprint
    assert "as tomcat" in result.messages[0] or not t.user
    after = t.server_xml.stat()
    assert (after.st_mode, after.st_uid, after.st_gid) == (xml_stat.st_mode, xml_stat.st_uid, xml_stat.st_gid)
    for written in result.files_written:
        st = Path(written).stat()
        assert (st.st_uid, st.st_gid) == (xml_stat.st_uid, xml_stat.st_gid)
        if not written.endswith(".crt"):  # certificates are public; keys and keystores are not
            assert st.st_mode & 0o007 == 0
    key = next(Path(w) for w in result.files_written if w.endswith(".key"))
    assert key.stat().st_mode & 0o777 == 0o640


def test_install_as_a_non_root_account_with_sudo(tomcat10: TomcatServer, root_ssh: SshdServer,
                                                 test_ca: TestCA) -> None:
    """The test account (not root) with a NOPASSWD rule for the file commands and the restart
    commands: conf/ (root:tomcat, not readable by the account) is read and written through sudo,
    owners and modes stay, and Tomcat is restarted as its own user."""
    from tlsgate_testing.sshd import readme_commands, sudoers_rule

    t, sshd = tomcat10, root_ssh
    ep = Endpoint(name="tc-sudo", type="tomcat",
                  connection=ConnectionSpec(type="ssh", host=sshd.host, port=sshd.port, user=sshd.user,
                                            extra={"sudo": True}),
                  options=TomcatOptions(tomcat_dir=str(t.base)))
    xml_stat = t.server_xml.stat()
    rule = (f"{sshd.user} ALL=(root) NOPASSWD: "
            f"{readme_commands('tomcat', without=('systemctl',))}")  # the README's rule; no systemd runs here
    with sudoers_rule(rule), ssh.connect_ssh(ep, Credentials(ssh_key_path=str(sshd.keys["ecdsa"].path))) as conn:
        new = test_ca.issue("pem.test", "b.test")
        bundle = CertificateBundle.from_pem(new.cert_pem, new.key_pem, new.chain_pem)
        result = plugin.install(ep, conn, bundle, [], False, None)
    assert result.verified and sorted(result.nodes) == ["b.test", "pem.test"]
    assert t.served(t.p12_port, "pem.test") == new.fingerprint
    after = t.server_xml.stat()
    assert (after.st_mode, after.st_uid, after.st_gid) == (xml_stat.st_mode, xml_stat.st_uid, xml_stat.st_gid)
    for written in result.files_written:
        st = Path(written).stat()
        assert (st.st_uid, st.st_gid) == (xml_stat.st_uid, xml_stat.st_gid)
    if t.user:
        assert "as tomcat" in result.messages[0]
