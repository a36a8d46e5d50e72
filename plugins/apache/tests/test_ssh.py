"""The same driver over the real sshd fixture (as root, key login): discovery, install, rollback,
restart. The httpd is the local fixture's; every command and file goes through SSH/SFTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tlsgate import ConnectionSpec, Credentials, Endpoint, OperationError
from tlsgate_apache import install as install_mod
from tlsgate_apache import plugin
from tlsgate_apache.plugin import ApacheOptions
from tlsgate_testing.connections import LocalConnection, ssh
from tlsgate_testing.sshd import SshdServer

from .conftest import bundle_for, local_endpoint, served_map

pytestmark = pytest.mark.slow


def ssh_endpoint(server: SshdServer, site) -> Endpoint:  # type: ignore[no-untyped-def]
    return Endpoint(
        name="web-ssh",
        type="apache",
        connection=ConnectionSpec(type="ssh", host=server.host, port=server.port, user="root"),
        options=ApacheOptions(apachectl_path=str(site.apachectl), certs_dir=str(site.root / "tlsgate-certs")),
    )


@pytest.fixture
def remote(sshd: SshdServer, tlsgate_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           apache_server) -> Iterator[tuple[Endpoint, ssh.SSHConnection]]:  # type: ignore[no-untyped-def]
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # never read the real ~/.ssh/known_hosts
    ssh.trust_host_key(sshd.host, sshd.port, sshd.host_key_public)
    site, _server = apache_server
    endpoint = ssh_endpoint(sshd, site)
    with ssh.connect_ssh(endpoint, Credentials(ssh_key_path=str(sshd.root_key.path))) as conn:
        yield endpoint, conn  # type: ignore[misc]


def test_discovery_over_ssh_matches_local(remote, apache_server) -> None:  # type: ignore[no-untyped-def]
    endpoint, conn = remote
    site, _server = apache_server
    over_ssh = {n.key: n for n in plugin.discover_nodes(endpoint, conn)}
    local = {n.key: n for n in plugin.discover_nodes(local_endpoint(site), LocalConnection())}
    assert set(over_ssh) == set(local)
    for key, node in local.items():
        other = over_ssh[key]
        assert (other.name, other.alias, other.protocol, other.port, other.fingerprint) == (
            node.name, node.alias, node.protocol, node.port, node.fingerprint)
        if node.ip == "::1":  # probed at the endpoint's host (127.0.0.1), where [::1] does not listen
            assert other.state.endswith("not reachable, certificate read from its file")
        else:
            assert other.state == node.state


def test_install_and_rollback_over_ssh(remote, apache_server, test_ca, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    endpoint, conn = remote
    site, server = apache_server
    before_files, before = site.snapshot(), served_map(site)

    other = test_ca.issue("beta.test")
    monkeypatch.setattr(install_mod, "after_write_hook",
                        lambda connection, paths: connection.write_file(paths.key, other.key_pem, mode=0o600))
    with pytest.raises(OperationError, match="private key does not match") as excinfo:
        plugin.install(endpoint, conn, bundle_for(test_ca.issue("beta.test")), [], False)
    assert excinfo.value.rolled_back
    assert site.snapshot() == before_files and served_map(site) == before and server.alive
    monkeypatch.setattr(install_mod, "after_write_hook", None)

    new = test_ca.issue("beta.test")
    result = plugin.install(endpoint, conn, bundle_for(new), [], False)
    assert result.verified and result.nodes == ("beta.test",)
    after = served_map(site)
    assert after["beta"] == new.fingerprint
    assert {k: v for k, v in after.items() if k != "beta"} == {k: v for k, v in before.items() if k != "beta"}
    after_files = site.snapshot()
    assert [p.name for p in before_files if before_files[p] != after_files.get(p)] == ["20-beta.conf"]

    pid = server.pid
    assert plugin.restart(endpoint, conn).restarted and server.pid == pid


def test_graceful_that_kills_httpd_over_ssh_is_recovered(remote, apache_server, test_ca, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Liveness through /proc over ssh, restore over SFTP, ``-k start`` over ssh."""
    import socket

    endpoint, conn = remote
    site, server = apache_server
    before_files, before = site.snapshot(), served_map(site)
    pid = server.pid
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()

    def listen_on_busy_port(connection, paths) -> None:  # type: ignore[no-untyped-def]
        beta = str(site.root / "conf.d" / "20-beta.conf")
        connection.write_file(beta, connection.read_file(beta) + f"Listen 127.0.0.1:{busy.getsockname()[1]}\n".encode())

    monkeypatch.setattr(install_mod, "after_write_hook", listen_on_busy_port)
    try:
        with pytest.raises(OperationError, match="httpd exited during the graceful restart") as excinfo:
            plugin.install(endpoint, conn, bundle_for(test_ca.issue("beta.test")), [], False)
    finally:
        busy.close()
    assert excinfo.value.rolled_back, str(excinfo.value)
    assert server.pid != pid and server.alive
    assert site.snapshot() == before_files and served_map(site) == before
