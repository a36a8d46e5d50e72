"""Against a real HAProxy started by the test: discovery finds exactly the configured nodes, an
install changes what it must and nothing else, and every failure is restored."""

from __future__ import annotations

from pathlib import Path

import pytest
from haproxy_peer import HaproxySite
from tlsgate.plugin import CertificateBundle, ConnectionSpec, Endpoint, OperationError, ValidationError
from tlsgate_haproxy import plugin
from tlsgate_haproxy.plugin import HaproxyOptions
from tlsgate_testing.contract import Case, check_behaviour, local_connection

pytestmark = pytest.mark.slow


def endpoint(site: HaproxySite) -> Endpoint:
    return Endpoint(name="lb", type="haproxy", connection=ConnectionSpec(type="local"),
                    options=HaproxyOptions(haproxy_config_path=str(site.config)))


def bundle(issued) -> CertificateBundle:  # type: ignore[no-untyped-def]
    return CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)


def discover(site: HaproxySite) -> list:  # type: ignore[type-arg]
    with local_connection() as conn:
        return plugin.discover_nodes(endpoint(site), conn)


def test_discovered_nodes_exactly(haproxy: HaproxySite) -> None:
    site = haproxy
    got = [(n.name, n.protocol, n.ip, n.port, n.fingerprint, n.state) for n in discover(site)]
    c = site.certs
    assert got == [
        ("alpha.test", "https", "127.0.0.1", site.tls_port, c["alpha"].fingerprint, "active"),
        ("www.alpha.test", "https", "127.0.0.1", site.tls_port, c["alpha"].fingerprint, "active"),
        ("beta.test", "https", "127.0.0.1", site.tls_port, c["beta"].fingerprint, "active"),
        ("gamma.test", "https", "127.0.0.1", site.tls_port, c["gamma"].fingerprint, "active"),
        ("delta.test", "https", "127.0.0.1", site.tls_port2, c["delta"].fingerprint, "active"),
        ("plain", "http", "127.0.0.1", site.http_port, None, "active"),
    ]


def test_install_into_a_crt_file_changes_its_names_and_nothing_else(haproxy: HaproxySite, test_ca) -> None:
    site = haproxy
    before, master = site.served_map(), site.pids()
    new = test_ca.issue("alpha.test", "www.alpha.test")
    b = bundle(new)
    with local_connection() as conn:
        result = plugin.install(endpoint(site), conn, b, [], False)
    assert result.verified and not result.rolled_back
    assert result.nodes == ("alpha.test", "www.alpha.test")
    after = site.served_map()
    assert after["alpha"] == after["www.alpha"] == new.fingerprint
    assert {k: v for k, v in after.items() if "alpha" not in k} == {k: v for k, v in before.items() if "alpha" not in k}
    pem = site.dir / "certs" / "alpha.pem"
    assert pem.read_bytes() == b.fullchain_pem() + b.key_pem()  # leaf + chain + key in one file, as HAProxy wants
    assert pem.stat().st_mode & 0o777 == 0o600
    assert site.pids() == master  # master-worker: reloaded by the master, not replaced
    assert [n.fingerprint for n in discover(site) if n.name == "alpha.test"] == [new.fingerprint]


def test_install_by_node_into_a_crt_list_line_and_a_directory(haproxy: HaproxySite, test_ca) -> None:
    site = haproxy
    nodes = {n.name: n for n in discover(site)}
    new_beta, new_delta = test_ca.issue("beta.test"), test_ca.issue("delta.test")
    with local_connection() as conn:
        assert plugin.install(endpoint(site), conn, bundle(new_beta), [nodes["beta.test"]], False).verified
        assert plugin.install(endpoint(site), conn, bundle(new_delta), [nodes["delta.test"]], False).verified
    served = site.served_map()
    assert (served["beta"], served["delta"]) == (new_beta.fingerprint, new_delta.fingerprint)
    assert served["alpha"] == site.certs["alpha"].fingerprint and served["gamma"] == site.certs["gamma"].fingerprint


def test_a_file_that_serves_an_uncovered_name_is_refused(haproxy: HaproxySite, test_ca) -> None:
    site = haproxy
    before = site.snapshot()
    only_alpha = test_ca.issue("alpha.test")  # alpha.pem also serves www.alpha.test
    with local_connection() as conn, pytest.raises(ValidationError, match=r"also serves www\.alpha\.test"):
        plugin.install(endpoint(site), conn, bundle(only_alpha), [], False)
    assert site.snapshot() == before


def test_dry_run_plans_and_changes_nothing(haproxy: HaproxySite, test_ca) -> None:
    site = haproxy
    before, served = site.snapshot(), site.served_map()
    with local_connection() as conn:
        result = plugin.install(endpoint(site), conn, bundle(test_ca.issue("gamma.test")), [], True)
    assert result.dry_run and [(s.action, s.target) for s in result.plan][:2] == [
        ("replace", str(site.dir / "certs" / "gamma.pem")), ("run", f"{result.plan[1].target}")]
    assert "-c" in result.plan[1].target and any(s.action == "verify" for s in result.plan)
    assert site.snapshot() == before and site.served_map() == served


def test_config_that_fails_haproxy_c_is_restored_and_not_reloaded(haproxy: HaproxySite, test_ca) -> None:
    site = haproxy
    with site.config.open("a") as fh:  # someone's unfinished edit: the running HAProxy still has the old one
        fh.write("\nfrontend wip\n    bind 127.0.0.1:1 ssl crt /nonexistent/tlsgate-test.pem\n")
    before, served = site.snapshot(), site.served_map()
    with local_connection() as conn, pytest.raises(OperationError, match="haproxy -c failed") as info:
        plugin.install(endpoint(site), conn, bundle(test_ca.issue("beta.test")), [], False)
    assert info.value.rolled_back
    assert site.snapshot() == before and site.served_map() == served


def test_contract_behaviour(haproxy: HaproxySite, test_ca) -> None:
    """The kit's suite: read-only discovery, dry run, and a failure injected after the first write
    (here: haproxy -c) restores the file byte for byte."""
    site = haproxy
    served = site.served_map()
    with local_connection() as conn:
        check_behaviour(Case(endpoint(site), conn, bundle(test_ca.issue("gamma.test")), snapshot=site.snapshot))
    assert site.served_map() == served


@pytest.mark.parametrize("haproxy", ["daemon"], indirect=True)
def test_private_daemon_is_reloaded_with_sf(haproxy: HaproxySite, test_ca) -> None:
    site = haproxy
    old = site.pids()
    new = test_ca.issue("beta.test")
    with local_connection() as conn:
        assert plugin.install(endpoint(site), conn, bundle(new), [], False).verified
        assert site.served("beta.test") == new.fingerprint and site.pids() != old
        assert plugin.restart(endpoint(site), conn).restarted
    assert site.served("beta.test") == new.fingerprint


def test_restart_checks_then_reloads(haproxy: HaproxySite) -> None:
    site = haproxy
    with local_connection() as conn:
        result = plugin.restart(endpoint(site), conn)
        assert result.restarted and "SIGUSR2" in result.message
        site.config.write_text(site.config.read_text() + "\nbogus_keyword_for_the_test\n")
        with pytest.raises(OperationError, match="haproxy -c failed, not reloaded"):
            plugin.restart(endpoint(site), conn)
    assert site.served("alpha.test") == site.certs["alpha"].fingerprint


def test_not_running_installs_checks_and_says_so(tmp_path: Path, test_ca) -> None:
    from haproxy_peer import haproxy_site

    site = haproxy_site(tmp_path / "stopped", test_ca)
    new = test_ca.issue("beta.test")
    with local_connection() as conn:
        result = plugin.install(endpoint(site), conn, bundle(new), [], False)
    assert not result.verified and any("not running" in m for m in result.messages)
    assert (site.dir / "certs" / "beta.pem").read_bytes().startswith(new.cert_pem)
