"""Installs against a real httpd: what changes, what must not, and every way it can fail."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from tlsgate import CertificateBundle, OperationError, ValidationError
from tlsgate_apache import install as install_mod
from tlsgate_apache import plugin
from tlsgate_testing.connections import LocalConnection

from .conftest import bundle_for, local_endpoint, served_map


def discover(site):  # type: ignore[no-untyped-def]
    return plugin.discover_nodes(local_endpoint(site), LocalConnection())


def test_install_changes_one_vhost_and_nothing_else(apache_server, test_ca) -> None:
    site, server = apache_server
    before_files, before = site.snapshot(), served_map(site)
    pid = server.pid
    new = test_ca.issue("beta.test")
    result = plugin.install(local_endpoint(site), LocalConnection(), bundle_for(new), [], False)

    assert result.verified and not result.rolled_back and result.nodes == ("beta.test",)
    after = served_map(site)
    assert after["beta"] == new.fingerprint
    assert {k: v for k, v in after.items() if k != "beta"} == {k: v for k, v in before.items() if k != "beta"}
    assert server.pid == pid and server.alive  # a graceful restart, not a new server

    after_files = site.snapshot()
    certs_dir = site.root / "tlsgate-certs"
    stem = certs_dir / f"tlsgate-beta.test-{new.fingerprint[:12]}"
    assert set(after_files) - set(before_files) == {Path(f"{stem}.crt"), Path(f"{stem}.key"), Path(f"{stem}.chain.crt")}
    assert stat.S_IMODE(os.stat(f"{stem}.key").st_mode) == 0o600
    bundle = bundle_for(new)
    assert Path(f"{stem}.crt").read_bytes() == bundle.fullchain_pem()  # 2.4.8+ reads the chain from here
    assert Path(f"{stem}.chain.crt").read_bytes() == bundle.chain_pem()  # the vhost already used a chain file
    changed = [p for p in before_files if before_files[p] != after_files[p]]
    beta = site.root / "conf.d" / "20-beta.conf"
    assert changed == [beta]
    # only the three arguments changed; quotes, tabs, the continuation and comments all stayed
    assert after_files[beta].decode() == before_files[beta].decode().replace(
        f'"{site.root}/certs/beta.test.crt"', f'"{stem}.crt"'
    ).replace(f"'{site.root}/certs/beta.test.key'", f"'{stem}.key'").replace(
        '"certs/beta chain.pem"', f'"{stem}.chain.crt"'
    )
    node = next(n for n in discover(site) if n.name == "beta.test")
    assert node.fingerprint == new.fingerprint and node.state == "active"


def test_install_into_inheriting_vhost_adds_its_own_pair(apache_server, test_ca) -> None:
    site, _server = apache_server
    before_files, before = site.snapshot(), served_map(site)
    new = test_ca.issue("gamma.test")
    gamma = [n for n in discover(site) if n.name == "gamma.test"]
    result = plugin.install(local_endpoint(site), LocalConnection(), bundle_for(new), gamma[:1], False)
    assert result.verified and result.nodes == ("gamma.test",)
    after = served_map(site)
    assert after["gamma"] == after["gamma2"] == new.fingerprint  # both addresses of the vhost
    unchanged = {k for k in before if k not in ("gamma", "gamma2")}  # six.test inherits the same pair
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    after_files = site.snapshot()
    conf = site.root / "sites available" / "gamma.conf"
    link = site.root / "sites enabled" / "gamma.conf"
    assert [p for p in before_files if p in after_files and before_files[p] != after_files[p]] == [conf, link]
    assert link.is_symlink() and link.resolve() == conf  # edited through the a2ensite symlink
    old_lines = before_files[conf].decode().splitlines(keepends=True)
    stem = site.root / "tlsgate-certs" / f"tlsgate-gamma.test-{new.fingerprint[:12]}"
    assert after_files[conf].decode().splitlines(keepends=True) == [
        old_lines[0],
        f"    SSLCertificateFile {stem}.crt\n",
        f"    SSLCertificateKeyFile {stem}.key\n",
        *old_lines[1:],
    ]


def test_dry_run_changes_nothing(apache_server, test_ca) -> None:
    site, server = apache_server
    before_files, before = site.snapshot(), served_map(site)
    pid = server.pid
    new = test_ca.issue("alpha.test", "www.alpha.test")
    result = plugin.install(local_endpoint(site), LocalConnection(), bundle_for(new), [], True)
    assert result.dry_run and not result.files_written and not result.verified
    actions = [(s.action, s.target) for s in result.plan]
    stem = str(site.root / "tlsgate-certs" / f"tlsgate-alpha.test-{new.fingerprint[:12]}")
    ctl = str(site.apachectl)
    assert actions == [
        ("mkdir", str(site.root / "tlsgate-certs")),
        ("write", f"{stem}.key"),
        ("write", f"{stem}.crt"),
        ("replace", str(site.root / "conf.d" / "10-alpha.conf")),
        ("check", f"{stem}.key"),
        ("run", f"{ctl} -t"),
        ("run", f"{ctl} -k graceful"),
        ("verify", f"127.0.0.1:{site.tls_port} (SNI alpha.test)"),
    ]
    assert site.snapshot() == before_files and served_map(site) == before
    assert not (site.root / "tlsgate-certs").exists() and server.pid == pid


def test_no_covered_node_is_a_clear_error(apache_server, test_ca) -> None:
    site, _server = apache_server
    before_files = site.snapshot()
    with pytest.raises(ValidationError, match="covers none of the https nodes"):
        plugin.install(local_endpoint(site), LocalConnection(), bundle_for(test_ca.issue("other.test")), [], False)
    plain = next(n for n in discover(site) if n.protocol == "http")
    with pytest.raises(ValidationError, match="plain http"):
        plugin.install(local_endpoint(site), LocalConnection(), bundle_for(test_ca.issue("plain.test")), [plain],
                       False)
    assert site.snapshot() == before_files


def assert_rolled_back(site, server, before_files, before, excinfo) -> None:  # type: ignore[no-untyped-def]
    assert excinfo.value.rolled_back, str(excinfo.value)
    assert site.snapshot() == before_files  # every file byte-identical, new files removed
    assert server.alive
    assert served_map(site) == before  # the old certificates are still served


def test_config_that_fails_apachectl_t_is_rolled_back(apache_server, test_ca, monkeypatch) -> None:
    site, server = apache_server
    before_files, before = site.snapshot(), served_map(site)
    pid = server.pid

    def unfinished_edit(connection, paths) -> None:  # type: ignore[no-untyped-def]
        # an operator's concurrent, unfinished edit of the same file: httpd -t refuses it
        beta = site.root / "conf.d" / "20-beta.conf"
        beta.write_bytes(beta.read_bytes() + b"NoSuchDirective on\n")

    monkeypatch.setattr(install_mod, "after_write_hook", unfinished_edit)
    with pytest.raises(OperationError, match=r"apachectl -t failed.*NoSuchDirective") as excinfo:
        plugin.install(local_endpoint(site), LocalConnection(), bundle_for(test_ca.issue("beta.test")), [], False)
    assert_rolled_back(site, server, before_files, before, excinfo)
    assert server.pid == pid  # never signalled


def test_graceful_that_fails_is_rolled_back(apache_server, test_ca, monkeypatch) -> None:
    """``-k graceful`` exits 1: the PidFile names no process, so httpd tries to start a second
    server, which cannot bind the ports the running one holds."""
    site, server = apache_server
    before_files, before = site.snapshot(), served_map(site)
    real_pid = site.pid_file.read_bytes()

    def stale_pid_file(connection, paths) -> None:  # type: ignore[no-untyped-def]
        site.pid_file.write_text(f"{int(Path('/proc/sys/kernel/pid_max').read_text()) + 1}\n")

    monkeypatch.setattr(install_mod, "after_write_hook", stale_pid_file)
    try:
        with pytest.raises(OperationError, match=r"graceful failed.*(bind|Address already in use)") as excinfo:
            plugin.install(local_endpoint(site), LocalConnection(), bundle_for(test_ca.issue("beta.test")), [], False)
    finally:
        site.pid_file.write_bytes(real_pid)
    assert_rolled_back(site, server, before_files, before, excinfo)


def test_graceful_that_kills_httpd_is_rolled_back_and_started_again(apache_server, test_ca, monkeypatch) -> None:
    """A Listen on a port in use passes ``apachectl -t`` (it does not bind) but makes the parent
    exit during the graceful restart; the driver restores the files and starts httpd again."""
    site, server = apache_server
    before_files, before = site.snapshot(), served_map(site)
    pid = server.pid
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()

    def listen_on_busy_port(connection, paths) -> None:  # type: ignore[no-untyped-def]
        beta = site.root / "conf.d" / "20-beta.conf"
        beta.write_bytes(beta.read_bytes() + f"Listen 127.0.0.1:{busy.getsockname()[1]}\n".encode())

    monkeypatch.setattr(install_mod, "after_write_hook", listen_on_busy_port)
    try:
        with pytest.raises(OperationError, match=r"httpd exited during the graceful restart.*bind") as excinfo:
            plugin.install(local_endpoint(site), LocalConnection(), bundle_for(test_ca.issue("beta.test")), [], False)
    finally:
        busy.close()
    assert server.pid != pid  # started again
    assert_rolled_back(site, server, before_files, before, excinfo)


def test_mismatched_key_is_refused_before_anything_is_written(apache_server, test_ca) -> None:
    site, server = apache_server
    before_files, before = site.snapshot(), served_map(site)
    new, other = test_ca.issue("beta.test"), test_ca.issue("beta.test")
    # CertificateBundle's constructors refuse this pair; build it directly as a buggy caller could
    bad = CertificateBundle(leaf=new.cert, key=other.key, chain=())  # type: ignore[arg-type]
    with pytest.raises(OperationError, match="does not match") as excinfo:
        plugin.install(local_endpoint(site), LocalConnection(), bad, [], False)
    assert_rolled_back(site, server, before_files, before, excinfo)


def test_mismatched_key_file_is_caught_before_the_graceful(apache_server, test_ca, monkeypatch) -> None:
    """The key file on disk is not the one written (replaced underneath us): the driver's own
    check of the written files stops the install before ``-k graceful``, which would kill httpd."""
    site, server = apache_server
    before_files, before = site.snapshot(), served_map(site)
    pid = server.pid
    other = test_ca.issue("beta.test")

    def replace_key(connection, paths) -> None:  # type: ignore[no-untyped-def]
        connection.write_file(paths.key, other.key_pem, mode=0o600)

    monkeypatch.setattr(install_mod, "after_write_hook", replace_key)
    with pytest.raises(OperationError, match="private key does not match the certificate") as excinfo:
        plugin.install(local_endpoint(site), LocalConnection(), bundle_for(test_ca.issue("beta.test")), [], False)
    assert_rolled_back(site, server, before_files, before, excinfo)
    assert server.pid == pid  # never signalled


def test_mismatch_that_slips_through_kills_httpd_and_is_recovered(apache_server, test_ca, monkeypatch) -> None:
    """protocols.md section 0, end to end: with the driver's own checks switched off, apachectl -t
    passes the mismatched pair and the graceful restart kills httpd; the driver notices, restores
    the files and starts httpd again with the old certificates."""
    site, server = apache_server
    before_files, before = site.snapshot(), served_map(site)
    new, other = test_ca.issue("beta.test"), test_ca.issue("beta.test")
    bad = CertificateBundle(leaf=new.cert, key=other.key, chain=())  # type: ignore[arg-type]
    monkeypatch.setattr(install_mod, "check_bundle", lambda bundle: None)
    monkeypatch.setattr(install_mod, "check_written", lambda connection, paths, bundle: None)
    with pytest.raises(OperationError, match=r"httpd exited during the graceful restart.*(AH02565|do not match)") as excinfo:
        plugin.install(local_endpoint(site), LocalConnection(), bad, [], False)
    assert_rolled_back(site, server, before_files, before, excinfo)


def test_restart_is_graceful_and_refuses_a_mismatched_pair(apache_server, test_ca) -> None:
    site, server = apache_server
    pid = server.pid
    result = plugin.restart(local_endpoint(site), LocalConnection())
    assert result.restarted and "graceful" in result.message and server.pid == pid
    # a key that does not match: apachectl -t passes it, our check refuses to signal
    (site.root / "certs" / "alpha.test.key").write_bytes(test_ca.issue("alpha.test").key_pem)
    with pytest.raises(OperationError, match=r"alpha\.test\.key does not match"):
        plugin.restart(local_endpoint(site), LocalConnection())
    assert server.alive and server.pid == pid


def test_restart_starts_a_stopped_server(apache_server) -> None:
    site, server = apache_server
    before = served_map(site)
    server.stop()
    result = plugin.restart(local_endpoint(site, ctl="apache2ctl"), LocalConnection())  # Debian's apache2ctl
    assert result.restarted and "started" in result.message
    assert server.alive and served_map(site) == before


def test_failed_verification_restores_and_restarts_gracefully_again(apache_server, test_ca, monkeypatch) -> None:
    """httpd accepts the files and restarts, but the handshake shows another certificate: the
    files are restored and a second graceful restart brings the old certificate back."""
    site, server = apache_server
    before_files, before = site.snapshot(), served_map(site)
    pid = server.pid
    impostor = test_ca.issue("beta.test")

    def swap_files(connection, paths) -> None:  # type: ignore[no-untyped-def]
        # a valid pair, but not the one being installed (the read-back check is off for this test)
        connection.write_file(paths.cert, impostor.cert_pem)
        connection.write_file(paths.key, impostor.key_pem, mode=0o600)

    monkeypatch.setattr(install_mod, "after_write_hook", swap_files)
    monkeypatch.setattr(install_mod, "check_written", lambda connection, paths, bundle: None)
    with pytest.raises(OperationError, match="verification by TLS handshake failed") as excinfo:
        plugin.install(local_endpoint(site), LocalConnection(), bundle_for(test_ca.issue("beta.test")), [], False)
    assert_rolled_back(site, server, before_files, before, excinfo)
    assert server.pid == pid  # restarted gracefully twice, never killed


def test_restart_refuses_a_config_that_fails_apachectl_t(apache_server) -> None:
    site, server = apache_server
    pid = server.pid
    (site.root / "conf.d" / "30-wip.conf").write_text("NoSuchDirective on\n")
    with pytest.raises(OperationError, match=r"apachectl -t failed, not restarted: .*NoSuchDirective"):
        plugin.restart(local_endpoint(site), LocalConnection())
    assert server.alive and server.pid == pid


class CtrlCDuringGraceful(LocalConnection):
    """Ctrl-C while ``apachectl -k graceful`` runs: httpd has its signal already, tlsgate is
    interrupted before the command returned."""

    interrupted = False

    def run(self, argv, **kwargs):  # type: ignore[no-untyped-def,override]
        result = super().run(argv, **kwargs)
        if "graceful" in argv and not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt
        return result


def test_ctrl_c_during_the_graceful_restart_restarts_with_the_restored_files(apache_server, test_ca) -> None:
    site, server = apache_server
    before_files, before = site.snapshot(), served_map(site)
    connection = CtrlCDuringGraceful()
    with pytest.raises(KeyboardInterrupt):
        plugin.install(local_endpoint(site), connection, bundle_for(test_ca.issue("beta.test")), [], False)
    assert connection.interrupted
    assert site.snapshot() == before_files
    assert server.alive
    assert served_map(site) == before  # httpd read the restored files again, not only the disk has them
