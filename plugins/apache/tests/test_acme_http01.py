"""ACME http-01 answered by a real httpd, against a real Pebble (resolving through a real BIND),
locally and over the real sshd: order, validate, record, deploy, handshake; every file
byte-identical afterwards except the deployed certificate paths; an unreachable challenge fails
with one clear line and leaves nothing behind."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from apache_peer import ApacheServer, apache_binary, apache_site
from tlsgate_testing.fixtures_core import free_port
from tlsgate_testing.lifecycle import changed_directives, deployed_by_cli, served, tg, tg_json

pytestmark = pytest.mark.slow

SHOP = """<VirtualHost 127.0.0.1:{http}>
    ServerName shop.test
    ServerAlias www.shop.test
    DocumentRoot htdocs
</VirtualHost>
<VirtualHost 127.0.0.1:{tls}>
    ServerName shop.test
    SSLEngine on
    SSLCertificateFile    certs/alpha.test.crt
    SSLCertificateKeyFile certs/alpha.test.key
</VirtualHost>
"""


@pytest.fixture
def shop_site(test_ca, tlsgate_home):  # type: ignore[no-untyped-def]
    """The shop's httpd running (no endpoint yet)."""
    if apache_binary() is None:
        pytest.skip("apache2 is not installed")
    # httpd's workers (User nobody) read the answer file, as they read a document root: the site
    # lives in a folder they can traverse (pytest's tmp_path is 0700)
    base = Path(tempfile.mkdtemp(prefix="tlsgate-acme-apache-"))
    base.chmod(0o755)
    site = apache_site(base / "apache", test_ca)
    (site.root / "conf.d" / "30-shop.conf").write_text(SHOP.format(http=site.http_port, tls=site.tls_port2))
    (site.root / "htdocs").mkdir(exist_ok=True)
    server = ApacheServer(site)
    server.start()
    try:
        yield site, server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _adopt(name: str) -> None:
    tg("org", "add", "Acme")
    tg("tls", "delegate", name, "--org", "Acme")
    tg("tls", "discover", name)


@pytest.fixture
def shop_apache(shop_site):  # type: ignore[no-untyped-def]
    site, _server = shop_site
    tg("tls", "add", "apache", "--name", "web", "--connection_type", "local", "--apachectl_path",
       str(site.apachectl), "--certs_dir", str(site.root / "tlsgate-certs"))
    _adopt("web")
    return shop_site


def _files(site) -> dict[Path, bytes]:  # type: ignore[no-untyped-def]
    skip = {site.root / "logs", site.root / "run"}
    return {p: p.read_bytes() for p in sorted(site.root.rglob("*"))
            if p.is_file() and not any(s in p.parents for s in skip)}


def test_http01_via_apache_request_and_deploy(shop_apache, pebble_factory) -> None:  # type: ignore[no-untyped-def]
    site, _server = shop_apache
    _request_deploy_and_compare(site, pebble_factory, "web")


def test_http01_via_apache_over_ssh_request_and_deploy(shop_site, sshd, pebble_factory, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The same through an apache endpoint reached over the real sshd (root key login, the host
    key trusted by tls trust): the answer is written, tested, reloaded and removed remotely."""
    site, _server = shop_site
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # never the real ~/.ssh/known_hosts
    tg("tls", "add", "apache", "--name", "web-ssh", "--connection_type", "ssh", "--host", sshd.host,
       "--port", str(sshd.port), "--user", "root", "--ssh_key_path", str(sshd.root_key.path),
       "--apachectl_path", str(site.root / "bin" / "apache2ctl"),  # Debian's apache2ctl, over ssh
       "--certs_dir", str(site.root / "tlsgate-certs"))
    tg("tls", "trust", "web-ssh", "--yes")
    _adopt("web-ssh")
    shown = tg_json("tls", "show", "web-ssh")
    assert shown["connection"]["type"] == "ssh"
    _request_deploy_and_compare(site, pebble_factory, "web-ssh")


def _request_deploy_and_compare(site, pebble_factory, endpoint: str) -> None:  # type: ignore[no-untyped-def]
    pebble = pebble_factory(http_port=site.http_port)
    tg("acme", "add", "pebble", "--directory", pebble.directory, "--email", "ops@shop.test",
       "--ca_bundle", str(pebble.ca_bundle), "--agree_tos")
    before = _files(site)
    issued = tg_json("cert", "request", "--acme", "pebble", "--domain", "shop.test", "--domain", "www.shop.test",
                     "--via", endpoint, "--http_port", str(site.http_port), "--key_type", "rsa2048", "--org", "Acme")
    assert _files(site) == before, "the http-01 answer (config lines, answer file) was not removed"
    assert not (site.root / "tlsgate-certs").exists()

    assert deployed_by_cli(endpoint, issued["certificate_id"])
    leaf = served(site.tls_port2, "shop.test")
    assert leaf.issuer == pebble.intermediates()[0].subject
    assert leaf.public_key().key_size == 2048  # type: ignore[union-attr]
    after = {p: b for p, b in _files(site).items() if "tlsgate-certs" not in p.parts}
    changed = [p for p in after if after[p] != before.get(p)]
    assert changed == [site.root / "conf.d" / "30-shop.conf"]
    assert changed_directives(before[changed[0]], after[changed[0]]) == [b"SSLCertificateFile",
                                                                          b"SSLCertificateKeyFile"]


def test_unreachable_challenge_fails_clearly_and_leaves_nothing(shop_apache, pebble_factory) -> None:  # type: ignore[no-untyped-def]
    site, _server = shop_apache
    pebble = pebble_factory(http_port=free_port())  # the CA validates on a port nothing listens on
    tg("acme", "add", "pebble", "--directory", pebble.directory, "--email", "ops@shop.test",
       "--ca_bundle", str(pebble.ca_bundle), "--agree_tos")
    before = _files(site)
    res = tg("cert", "request", "--acme", "pebble", "--domain", "shop.test", "--via", "web",
             "--http_port", str(site.http_port), check=False)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ACME validation failed: shop.test: "), res.stderr
    assert "connection refused" in lines[0].lower() and "(connection)" in lines[0]
    assert _files(site) == before
    assert not (site.root / "tlsgate-certs").exists()
    assert json.loads(tg("cert", "list", "--json").stdout) == [
        c for c in json.loads(tg("cert", "list", "--json").stdout) if c["source"].startswith("discovered:")]
