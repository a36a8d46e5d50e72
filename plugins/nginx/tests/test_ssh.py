"""The nginx driver over the real ssh transport (private sshd, root key login) against the real
nginx: discovery equals the local one; install, rollback and restart work remotely."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nginx_helpers import local_endpoint
from tlsgate import CertificateBundle, ConnectionSpec, Credentials, Endpoint, OperationError
from tlsgate.plugin import try_served_fingerprint
from tlsgate.policy import InstallPolicy, policy
from tlsgate_nginx import plugin
from tlsgate_nginx.plugin import NginxOptions
from tlsgate_testing.connections import LocalConnection, ssh
from tlsgate_testing.sshd import SshdServer

pytestmark = pytest.mark.slow


@pytest.fixture
def root_ssh(sshd: SshdServer, tlsgate_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SshdServer]:
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # never the real ~/.ssh/known_hosts
    ssh.trust_host_key(sshd.host, sshd.port, sshd.host_key_public)
    yield sshd


def ssh_endpoint(sshd: SshdServer, config: Path) -> Endpoint:
    return Endpoint(
        name="nginx-ssh", type="nginx",
        connection=ConnectionSpec(type="ssh", host=sshd.host, port=sshd.port, user="root"),
        options=NginxOptions(nginx_config_path=str(config)),
    )


def test_discover_install_rollback_restart_over_ssh(nginx_server, root_ssh: SshdServer, test_ca) -> None:
    site, server = nginx_server
    ep = ssh_endpoint(root_ssh, site.config)
    local = plugin.discover_nodes(local_endpoint(site.config), LocalConnection())
    with ssh.connect_ssh(ep, Credentials(ssh_key_path=str(root_ssh.root_key.path))) as conn:
        remote = plugin.discover_nodes(ep, conn)
        assert [n.to_json() for n in remote] == [n.to_json() for n in local]

        new = test_ca.issue("alpha.test", "www.alpha.test")
        bundle = CertificateBundle.from_pem(new.cert_pem, new.key_pem, new.chain_pem)
        result = plugin.install(ep, conn, bundle, [], False)
        assert result.verified and result.nodes == ("alpha.test",)
        assert try_served_fingerprint("127.0.0.1", site.tls_port, "alpha.test") == new.fingerprint
        assert try_served_fingerprint("127.0.0.1", site.tls_port, "beta.test") == site.certs["beta.test"].fingerprint

        (site.prefix / "conf.d" / "30-wip.conf").write_text("unknown_directive;\n")
        before = site.snapshot()
        newer = test_ca.issue("alpha.test", "www.alpha.test")
        # the broken file is a pending change: applied on purpose, nginx -t catches it
        with pytest.raises(OperationError, match="nginx -t failed") as excinfo, policy(InstallPolicy(apply_pending=True)):
            plugin.install(ep, conn, CertificateBundle.from_pem(newer.cert_pem, newer.key_pem), [], False)
        assert excinfo.value.rolled_back and site.snapshot() == before
        assert try_served_fingerprint("127.0.0.1", site.tls_port, "alpha.test") == new.fingerprint

        (site.prefix / "conf.d" / "30-wip.conf").unlink()
        pid = server.pid
        assert plugin.restart(ep, conn).restarted
        assert server.pid == pid


def test_failed_verification_over_ssh_restores_and_reloads(nginx_server, root_ssh: SshdServer, test_ca,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from tlsgate_nginx import install as install_mod

    site, _server = nginx_server
    ep = ssh_endpoint(root_ssh, site.config)
    impostor = test_ca.issue("beta.test")

    def swap_files(connection, cert_path: str, key_path: str) -> None:
        connection.write_file(cert_path, impostor.cert_pem)  # valid pair, not the one installed
        connection.write_file(key_path, impostor.key_pem, mode=0o600)

    monkeypatch.setattr(install_mod, "after_write_hook", swap_files)
    before = site.snapshot()
    new = test_ca.issue("beta.test")
    with ssh.connect_ssh(ep, Credentials(ssh_key_path=str(root_ssh.root_key.path))) as conn:
        with pytest.raises(OperationError, match="verification by TLS handshake failed") as excinfo:
            plugin.install(ep, conn, CertificateBundle.from_pem(new.cert_pem, new.key_pem), [], False)
    assert excinfo.value.rolled_back and site.snapshot() == before
    assert try_served_fingerprint("127.0.0.1", site.tls_port, "beta.test") == site.certs["beta.test"].fingerprint


def test_acme_http01_answer_over_ssh_and_removed_byte_for_byte(nginx_server, root_ssh: SshdServer) -> None:
    import urllib.request

    site, _server = nginx_server
    ep = ssh_endpoint(root_ssh, site.config)
    before = site.snapshot()
    token, key_auth = "tok-EN_1", "tok-EN_1.thumbprint-xyz"
    with ssh.connect_ssh(ep, Credentials(ssh_key_path=str(root_ssh.root_key.path))) as conn:
        with pytest.raises(OperationError, match="no server block on 'nginx-ssh' serves it over plain HTTP on port"):
            plugin.acme_http01(ep, conn, "alpha.test", token, key_auth, site.http_port)
        assert site.snapshot() == before
        cleanup = plugin.acme_http01(ep, conn, "plain.test", token, key_auth, site.http_port)
        req = urllib.request.Request(f"http://127.0.0.1:{site.http_port}/.well-known/acme-challenge/{token}",
                                     headers={"Host": "plain.test"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.read().decode() == key_auth
        cleanup()
    assert site.snapshot() == before
