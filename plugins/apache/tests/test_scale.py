"""Installs into many vhosts, end to end through ``tlsgate`` (a subprocess, stdout piped) against a
real httpd: what an install handshakes, and what it says about vhosts it left alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from apache_peer import ApacheServer, apache_binary, apache_site
from tlsgate.plugin import try_served_fingerprint
from tlsgate_testing.cli import ok, pem_files, settle, tg, tg_counting_handshakes
from tlsgate_testing.daemons import running

pytestmark = pytest.mark.slow

VHOSTS = 60


@pytest.fixture
def many_vhosts(tmp_path: Path, test_ca, tlsgate_home):
    """The fixture httpd plus 60 TLS vhosts v0 .. v59.example.com (alias www.), alternately on its
    two TLS ports, one certificate file each; added, delegated and discovered as endpoint 'big'."""
    if apache_binary() is None:
        pytest.skip("apache2/httpd is not installed")
    site = apache_site(tmp_path / "apache", test_ca)
    old = test_ca.issue("old.example.com")
    parts = []
    for i in range(VHOSTS):
        crt, key = site.root / "certs" / f"v{i}.crt", site.root / "certs" / f"v{i}.key"
        crt.write_bytes(old.cert_pem + old.chain_pem)
        key.write_bytes(old.key_pem)
        parts.append(f"<VirtualHost 127.0.0.1:{site.tls_port if i % 2 else site.tls_port2}>\n"
                     f"    ServerName v{i}.example.com\n    ServerAlias www.v{i}.example.com\n    SSLEngine on\n"
                     f"    SSLCertificateFile {crt}\n    SSLCertificateKeyFile {key}\n</VirtualHost>\n")
    (site.root / "conf.d" / "50-bulk.conf").write_text("".join(parts))
    with running(ApacheServer(site)):
        ok("tls", "add", "apache", "--name", "big", "--connection_type", "local",
           "--apachectl_path", str(site.apachectl))
        ok("org", "add", "acme")
        ok("tls", "delegate", "big", "--org", "acme")
        ok("tls", "discover", "big")
        yield site, old


def port_of(site, i: int) -> int:
    return site.tls_port if i % 2 else site.tls_port2


def test_install_on_one_of_many_vhosts_handshakes_each_vhost_at_most_twice(many_vhosts, test_ca, tmp_path) -> None:
    site, old = many_vhosts
    nodes = len(json.loads(ok("tls", "nodes", "big", "--json").stdout))
    new = test_ca.issue("v7.example.com", "www.v7.example.com")
    res, handshakes = tg_counting_handshakes(tmp_path / "count", "tls", "install", "big",
                                             *pem_files(tmp_path / "in", new), "--node", "v7.example.com")
    assert res.returncode == 0, res.stderr
    assert "verified by TLS handshake" in res.stdout
    assert try_served_fingerprint("127.0.0.1", port_of(site, 7), "v7.example.com") == new.fingerprint
    assert try_served_fingerprint("127.0.0.1", port_of(site, 8), "v8.example.com") == old.fingerprint
    # the discoveries before and after see each node once; the install itself handshakes the
    # vhost it changed, not every vhost before and after too
    assert handshakes <= 2 * nodes + 10, (handshakes, nodes)


def test_install_that_applies_another_vhosts_new_certificate_says_so(many_vhosts, test_ca, tmp_path) -> None:
    site, _old = many_vhosts
    renewed = test_ca.issue("v4.example.com", "www.v4.example.com")
    (site.root / "certs" / "v4.crt").write_bytes(renewed.cert_pem + renewed.chain_pem)
    (site.root / "certs" / "v4.key").write_bytes(renewed.key_pem)
    settle()
    new = test_ca.issue("v1.example.com", "www.v1.example.com")
    res = tg("tls", "install", "big", *pem_files(tmp_path / "in", new), "--node", "v1.example.com",
             "--apply-pending", "--json")
    assert res.returncode == 0, res.stderr  # was: rolled back, the other vhost "failed" verification
    notes = " ".join(json.loads(res.stdout)["messages"])
    assert "v4.example.com" in notes and "did not change" in notes, notes
    assert try_served_fingerprint("127.0.0.1", port_of(site, 1), "v1.example.com") == new.fingerprint
    assert try_served_fingerprint("127.0.0.1", port_of(site, 4), "v4.example.com") == renewed.fingerprint
