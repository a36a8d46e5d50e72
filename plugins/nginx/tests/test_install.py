"""Installs against a real nginx: what changes, what must not, and every way it can fail."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from nginx_helpers import local_endpoint
from tlsgate import CertificateBundle, OperationError, ValidationError
from tlsgate.plugin import try_served_fingerprint
from tlsgate_nginx import install as install_mod
from tlsgate_nginx import plugin
from tlsgate_testing.connections import LocalConnection


def served(site, port: int, sni: str | None) -> str | None:
    return try_served_fingerprint("127.0.0.1", port, sni)


def served_map(site) -> dict[str, str | None]:
    return {
        "alpha": served(site, site.tls_port, "alpha.test"),
        "beta": served(site, site.tls_port, "beta.test"),
        "gamma": served(site, site.tls_port, "gamma.test"),
        "gamma2": served(site, site.tls_port2, "gamma.test"),
    }


def bundle_for(issued) -> CertificateBundle:
    return CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)


def discover(site):
    return plugin.discover_nodes(local_endpoint(site.config), LocalConnection())


def test_install_changes_one_node_and_nothing_else(nginx_server, test_ca) -> None:
    site, _server = nginx_server
    before_files = site.snapshot()
    before = served_map(site)
    new = test_ca.issue("beta.test")
    result = plugin.install(local_endpoint(site.config), LocalConnection(), bundle_for(new), [], False)

    assert result.verified and not result.rolled_back and result.nodes == ("beta.test",)
    after = served_map(site)
    assert after["beta"] == new.fingerprint
    assert {k: v for k, v in after.items() if k != "beta"} == {k: v for k, v in before.items() if k != "beta"}

    after_files = site.snapshot()
    written = set(after_files) - set(before_files)
    assert {p.name for p in written} == {
        f"tlsgate-beta.test-{new.fingerprint[:12]}.fullchain.pem",
        f"tlsgate-beta.test-{new.fingerprint[:12]}.key.pem",
    }
    key = next(p for p in written if p.name.endswith(".key.pem"))
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    changed = [p for p in before_files if before_files[p] != after_files[p]]
    assert [p.name for p in changed] == ["20-beta.conf"]
    beta_path = changed[0]
    old_text, new_text = before_files[beta_path].decode(), after_files[beta_path].decode()
    # only the two arguments changed: the quotes, tabs, spacing and comments are all still there
    cert_dir = site.prefix
    own = cert_dir / "tlsgate"  # the default directory: tlsgate/ beside the main config
    assert new_text == old_text.replace(
        f'"{cert_dir}/certs/beta.test.crt"', str(own / f"tlsgate-beta.test-{new.fingerprint[:12]}.fullchain.pem")
    ).replace(
        f"'{cert_dir}/certs/beta.test.key'", str(own / f"tlsgate-beta.test-{new.fingerprint[:12]}.key.pem")
    )
    beta = next(n for n in discover(site) if n.name == "beta.test")
    assert beta.fingerprint == new.fingerprint and beta.state == "active"


def test_install_into_inheriting_block_adds_its_own_directives(nginx_server, test_ca) -> None:
    site, _server = nginx_server
    before_files = site.snapshot()
    before = served_map(site)
    new = test_ca.issue("gamma.test")
    gamma_nodes = [n for n in discover(site) if n.name == "gamma.test"]
    result = plugin.install(local_endpoint(site.config), LocalConnection(), bundle_for(new), gamma_nodes[:1], False)
    assert result.verified and result.nodes == ("gamma.test", "gamma.test")
    after = served_map(site)
    assert after["gamma"] == after["gamma2"] == new.fingerprint  # both listens of the block
    assert (after["alpha"], after["beta"]) == (before["alpha"], before["beta"])
    after_files = site.snapshot()
    gamma = site.prefix / "sites enabled" / "gamma.conf"
    assert [p for p in before_files if before_files[p] != after_files[p]] == [gamma]
    old_lines = before_files[gamma].decode().splitlines(keepends=True)
    new_lines = after_files[gamma].decode().splitlines(keepends=True)
    stem = site.prefix / "tlsgate" / f"tlsgate-gamma.test-{new.fingerprint[:12]}"
    assert new_lines == [
        old_lines[0],
        f"    ssl_certificate {stem}.fullchain.pem;\n",
        f"    ssl_certificate_key {stem}.key.pem;\n",
        *old_lines[1:],
    ]


def test_dry_run_changes_nothing(nginx_server, test_ca) -> None:
    site, _server = nginx_server
    before_files, before = site.snapshot(), served_map(site)
    new = test_ca.issue("alpha.test", "www.alpha.test")
    result = plugin.install(local_endpoint(site.config), LocalConnection(), bundle_for(new), [], True)
    assert result.dry_run and not result.files_written
    actions = [(s.action, s.target) for s in result.plan]
    stem = str(site.prefix / "tlsgate" / f"tlsgate-alpha.test-{new.fingerprint[:12]}")
    assert ("write", f"{stem}.key.pem") in actions and ("write", f"{stem}.fullchain.pem") in actions
    assert ("replace", str(site.prefix / "conf.d" / "10-alpha.conf")) in actions
    assert any(a == "run" and t.endswith(" -t") for a, t in actions)
    assert any(a == "run" and t.endswith("-s reload") for a, t in actions)
    assert site.snapshot() == before_files and served_map(site) == before


def test_no_covered_node_is_a_clear_error(nginx_server, test_ca) -> None:
    site, _server = nginx_server
    before_files = site.snapshot()
    with pytest.raises(ValidationError, match="covers none of the https nodes"):
        plugin.install(local_endpoint(site.config), LocalConnection(), bundle_for(test_ca.issue("other.test")), [], False)
    plain = next(n for n in discover(site) if n.protocol == "http")
    with pytest.raises(ValidationError, match="plain http"):
        plugin.install(local_endpoint(site.config), LocalConnection(), bundle_for(test_ca.issue("plain.test")), [plain], False)
    assert site.snapshot() == before_files


def assert_rolled_back(site, before_files, before, excinfo) -> None:
    assert excinfo.value.rolled_back, str(excinfo.value)
    assert site.snapshot() == before_files
    assert served_map(site) == before


def test_config_that_fails_nginx_t_is_rolled_back(nginx_server, test_ca) -> None:
    site, _server = nginx_server
    # an operator's unfinished edit: valid syntax, but nginx -t refuses it (unknown directive)
    (site.prefix / "conf.d" / "30-wip.conf").write_text("server { listen 127.0.0.1:1; no_such_directive on; }\n")
    before_files, before = site.snapshot(), served_map(site)
    with pytest.raises(OperationError, match=r"nginx -t failed.*no_such_directive") as excinfo:
        plugin.install(local_endpoint(site.config), LocalConnection(), bundle_for(test_ca.issue("beta.test")), [], False)
    assert_rolled_back(site, before_files, before, excinfo)


def test_failed_reload_is_rolled_back(nginx_server, test_ca, monkeypatch) -> None:
    site, _server = nginx_server
    before_files, before = site.snapshot(), served_map(site)
    real_pid = site.pid_file.read_bytes()

    def stale_pid_file(connection, cert_path, key_path) -> None:
        # the pid file now names a process that does not exist: "nginx -s reload" fails
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
        site.pid_file.write_text(f"{pid_max + 1}\n")

    monkeypatch.setattr(install_mod, "after_write_hook", stale_pid_file)
    try:
        with pytest.raises(OperationError, match="nginx reload failed") as excinfo:
            plugin.install(local_endpoint(site.config), LocalConnection(), bundle_for(test_ca.issue("beta.test")), [], False)
    finally:
        site.pid_file.write_bytes(real_pid)
    assert_rolled_back(site, before_files, before, excinfo)


def test_mismatched_key_is_refused_before_anything_is_written(nginx_server, test_ca) -> None:
    site, _server = nginx_server
    before_files, before = site.snapshot(), served_map(site)
    new, other = test_ca.issue("beta.test"), test_ca.issue("beta.test")
    # CertificateBundle's constructors refuse this pair; build it directly as a buggy caller could
    bad = CertificateBundle(leaf=new.cert, key=other.key, chain=())  # type: ignore[arg-type]
    with pytest.raises(OperationError, match="does not match") as excinfo:
        plugin.install(local_endpoint(site.config), LocalConnection(), bad, [], False)
    assert_rolled_back(site, before_files, before, excinfo)


def test_mismatched_key_is_caught_by_nginx_t_too(nginx_server, test_ca, monkeypatch) -> None:
    site, _server = nginx_server
    before_files, before = site.snapshot(), served_map(site)
    new, other = test_ca.issue("beta.test"), test_ca.issue("beta.test")
    bad = CertificateBundle(leaf=new.cert, key=other.key, chain=())  # type: ignore[arg-type]
    monkeypatch.setattr(install_mod, "check_bundle", lambda bundle: None)  # only nginx -t stands guard
    with pytest.raises(OperationError, match=r"nginx -t failed.*key values mismatch") as excinfo:
        plugin.install(local_endpoint(site.config), LocalConnection(), bad, [], False)
    assert_rolled_back(site, before_files, before, excinfo)


def test_failed_verification_restores_and_reloads_again(nginx_server, test_ca, monkeypatch) -> None:
    site, _server = nginx_server
    before_files, before = site.snapshot(), served_map(site)
    impostor = test_ca.issue("beta.test")

    def swap_files(connection, cert_path, key_path) -> None:
        # a valid pair, but not the one being installed: nginx -t and reload pass, the handshake does not
        connection.write_file(cert_path, impostor.cert_pem)
        connection.write_file(key_path, impostor.key_pem, mode=0o600)

    monkeypatch.setattr(install_mod, "after_write_hook", swap_files)
    with pytest.raises(OperationError, match="verification by TLS handshake failed") as excinfo:
        plugin.install(local_endpoint(site.config), LocalConnection(), bundle_for(test_ca.issue("beta.test")), [], False)
    assert_rolled_back(site, before_files, before, excinfo)


def test_restart_tests_then_reloads(nginx_server) -> None:
    site, server = nginx_server
    pid = server.pid
    result = plugin.restart(local_endpoint(site.config), LocalConnection())
    assert result.restarted and "-s reload" in result.message
    assert server.pid == pid  # a reload, not a restart
    (site.prefix / "conf.d" / "30-wip.conf").write_text("bad_directive;\n")
    with pytest.raises(OperationError, match="nginx -t failed"):
        plugin.restart(local_endpoint(site.config), LocalConnection())


def test_install_while_nginx_is_stopped_tests_but_does_not_reload(tmp_path, test_ca) -> None:
    from nginx_peer import nginx_binary, nginx_site

    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    site = nginx_site(tmp_path / "stopped", test_ca)  # written, never started
    new = test_ca.issue("beta.test")
    result = plugin.install(local_endpoint(site.config), LocalConnection(), bundle_for(new), [], False)
    assert not result.verified and not result.rolled_back
    assert any("not running" in m for m in result.messages)
    assert len(result.files_written) == 3  # key, full chain, 20-beta.conf
    # a broken file is still caught by nginx -t, and everything is restored
    (site.prefix / "conf.d" / "30-wip.conf").write_text("no_such_directive on;\n")
    before_files = site.snapshot()
    with pytest.raises(OperationError, match="nginx -t failed") as excinfo:
        plugin.install(local_endpoint(site.config), LocalConnection(), bundle_for(test_ca.issue("alpha.test", "www.alpha.test")), [],
                       False)
    assert excinfo.value.rolled_back and site.snapshot() == before_files


def test_syntax_error_names_file_and_line(nginx_server) -> None:
    site, _server = nginx_server
    (site.prefix / "conf.d" / "30-bad.conf").write_text("server {\n  listen 1;\n")
    with pytest.raises(OperationError, match=r"30-bad\.conf:3: unexpected end of file"):
        discover(site)
