"""Layouts real operators' HAProxy has, through the ``tlsgate`` command with stdout piped: a bind
on two addresses, a bind on ::1 with a crt-list, and an ``accept-proxy`` bind behind another
load balancer (the PROXY protocol header comes before the TLS handshake), and a multi-certificate
bundle (``crt site.pem`` loading ``site.pem.rsa`` and ``site.pem.ecdsa``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from haproxy_peer import HAPROXY, HaproxySite, haproxy_site, start, stop
from tlsgate.plugin import try_served_fingerprint
from tlsgate_testing.certs import TestCA

pytestmark = pytest.mark.slow


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-m", "tlsgate", *args], capture_output=True, text=True,
                         env=os.environ.copy(), timeout=120, check=False)
    assert "Traceback" not in res.stderr, res.stderr
    return res


@pytest.fixture
def site(tmp_path: Path, test_ca: TestCA, tlsgate_home: Path) -> Iterator[HaproxySite]:
    if not os.path.exists(HAPROXY):
        pytest.fail("haproxy is required (apt-get install haproxy)")
    s = haproxy_site(tmp_path / "haproxy", test_ca)
    root = s.dir
    s.certs["lb"] = test_ca.issue("lb.test")
    (root / "certs" / "lb.pem").write_bytes(s.certs["lb"].cert_pem + s.certs["lb"].chain_pem + s.certs["lb"].key_pem)
    (root / "haproxy.cfg").write_text(f"""global
    crt-base {root}/certs
    pidfile {root}/run/haproxy.pid
    log stderr format raw local0 emerg

defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s

frontend web
    bind 127.0.0.1:{s.tls_port},127.0.0.2:{s.tls_port} ssl crt alpha.pem
    bind [::1]:{s.tls_port} ssl crt alpha.pem crt-list {root}/lists/sni.list alpn h2,http/1.1
    http-request return status 200 content-type text/plain string ok

listen behind-lb
    bind 127.0.0.1:{s.tls_port2} accept-proxy ssl crt lb.pem
    http-request return status 200 content-type text/plain string ok
""")
    start(s)
    yield s
    stop(s)


def test_binds_on_several_addresses_and_behind_a_proxy(site: HaproxySite, test_ca: TestCA, tmp_path: Path) -> None:
    assert cli("tls", "add", "haproxy", "--name", "lb", "--connection_type", "local",
               "--haproxy_config_path", str(site.config)).returncode == 0
    assert cli("org", "add", "acme").returncode == 0
    assert cli("tls", "delegate", "lb", "--org", "acme").returncode == 0
    assert cli("tls", "discover", "lb").returncode == 0
    nodes = json.loads(cli("tls", "nodes", "lb", "--json").stdout)
    https = {(n["name"], n["ip"], n["port"]) for n in nodes if n["protocol"] == "https"}
    assert {("alpha.test", ip, site.tls_port) for ip in ("127.0.0.1", "127.0.0.2", "::1")} <= https
    assert {("beta.test", "::1", site.tls_port), ("gamma.test", "::1", site.tls_port)} <= https
    lb = [n for n in nodes if n["name"] == "lb.test"]
    assert [(n["port"], n["fingerprint"]) for n in lb] == [(site.tls_port2, site.certs["lb"].fingerprint)]
    assert "not reachable" not in lb[0]["state"] and "PROXY protocol" in lb[0]["state"]

    new = test_ca.issue("lb.test")
    crt, key, chain = new.write(tmp_path / "in", "lb")
    done = cli("tls", "install", "lb", "--cert", str(crt), "--key", str(key), "--chain", str(chain))
    assert done.returncode == 0, done.stderr
    assert "verified by TLS handshake" in done.stdout
    assert try_served_fingerprint("127.0.0.1", site.tls_port2, "lb.test", proxy_protocol=True) == new.fingerprint
    # every other node serves what it did
    for ip in ("127.0.0.1", "127.0.0.2", "::1"):
        assert try_served_fingerprint(ip, site.tls_port, "alpha.test") == site.certs["alpha"].fingerprint
    assert cli("tls", "discover", "lb").returncode == 0
    checked = cli("tls", "verify", "--endpoint", "lb", "--json")
    results = {(r["node"], r["port"]): r["result"] for item in json.loads(checked.stdout)["items"]
               for r in item["details"]["nodes"]}
    assert results[("lb.test", site.tls_port2)] == "ok" and checked.returncode == 0, checked.stdout


def test_multi_certificate_bundle_members_each_installed_and_verified(tmp_path: Path, test_ca: TestCA,
                                                                      tlsgate_home: Path) -> None:
    """``crt site.pem`` where only ``site.pem.rsa`` and ``site.pem.ecdsa`` exist (HAProxy loads
    both, one per key type): discovery shows both with their certificates, an install replaces
    only the member of the new key's type, and verify checks each by a handshake for its type."""
    if not os.path.exists(HAPROXY):
        pytest.fail("haproxy is required (apt-get install haproxy)")
    s = haproxy_site(tmp_path / "haproxy", test_ca)
    root = s.dir
    pairs = {"rsa": test_ca.issue("alpha.test", key_type="rsa"), "ec": test_ca.issue("alpha.test")}
    suffix = {"rsa": ".rsa", "ec": ".ecdsa"}
    (root / "certs" / "alpha.pem").unlink()
    for kind, issued in pairs.items():
        (root / "certs" / f"site.pem{suffix[kind]}").write_bytes(issued.cert_pem + issued.chain_pem + issued.key_pem)
    text = s.config.read_text().replace("ssl crt alpha.pem crt-list", "ssl crt site.pem crt-list")
    s.config.write_text(text)
    s.certs["alpha"] = pairs["ec"]  # start() waits for a handshake with alpha.test
    start(s)
    try:
        assert cli("tls", "add", "haproxy", "--name", "lb", "--connection_type", "local",
                   "--haproxy_config_path", str(s.config)).returncode == 0
        assert cli("org", "add", "acme").returncode == 0
        assert cli("tls", "delegate", "lb", "--org", "acme").returncode == 0
        assert cli("tls", "discover", "lb").returncode == 0
        nodes = [n for n in json.loads(cli("tls", "nodes", "lb", "--json").stdout) if n["name"] == "alpha.test"]
        assert sorted(n["fingerprint"] for n in nodes) == sorted(p.fingerprint for p in pairs.values())
        assert all("unreadable" not in n["state"] and "serves another" not in n["state"] for n in nodes), nodes
        current = {kind: p.fingerprint for kind, p in pairs.items()}
        for kind in ("rsa", "ec"):
            new = test_ca.issue("alpha.test", key_type=kind)
            crt, key, chain = new.write(tmp_path / f"in-{kind}", "alpha")
            other = root / "certs" / f"site.pem{suffix['ec' if kind == 'rsa' else 'rsa']}"
            untouched = other.read_bytes()
            done = cli("tls", "install", "lb", "--cert", str(crt), "--key", str(key), "--chain", str(chain))
            assert done.returncode == 0, done.stderr
            assert "verified by TLS handshake" in done.stdout
            current[kind] = new.fingerprint
            assert {k: try_served_fingerprint("127.0.0.1", s.tls_port, "alpha.test", key_kind=k) for k in current} == current
            assert other.read_bytes() == untouched and not (root / "certs" / "site.pem").exists()
        checked = cli("tls", "verify", "--endpoint", "lb", "--json")
        assert checked.returncode == 0, checked.stdout
        results = [r for item in json.loads(checked.stdout)["items"] for r in item["details"]["nodes"]
                   if r["node"] == "alpha.test" and r["port"] == s.tls_port]
        assert len(results) == 2 and {r["result"] for r in results} == {"ok"}, results
    finally:
        stop(s)
