"""ACME http-01 answered by a real nginx, against a real Pebble (resolving through a real BIND):
order, validate, record, deploy, handshake; the config is byte-identical afterwards except the
deployed certificate paths; renewal with --deploy replaces the certificate on the node."""

from __future__ import annotations

from pathlib import Path

import pytest
from nginx_peer import nginx_binary, nginx_site, server_of
from tlsgate_testing.daemons import running
from tlsgate_testing.lifecycle import changed_directives, deployed_by_cli, served, tg, tg_json

pytestmark = pytest.mark.slow

SHOP = """server {{
    listen 127.0.0.1:{http};
    listen 127.0.0.1:{tls} ssl;
    server_name shop.test www.shop.test;
    ssl_certificate     certs/alpha.test.crt;
    ssl_certificate_key certs/alpha.test.key;
    location / {{ return 200 "shop\\n"; }}
}}
"""


@pytest.fixture
def shop_nginx(tmp_path: Path, test_ca, tlsgate_home):  # type: ignore[no-untyped-def]
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    site = nginx_site(tmp_path / "nginx", test_ca)
    (site.prefix / "conf.d" / "30-shop.conf").write_text(SHOP.format(http=site.http_port, tls=site.tls_port2))
    with running(server_of(site)) as server:
        yield site, server


def _configs(site) -> dict[Path, bytes]:  # type: ignore[no-untyped-def]
    return {p: p.read_bytes() for p in site.config_files()}


def test_http01_via_nginx_request_deploy_and_renew(shop_nginx, pebble_factory) -> None:  # type: ignore[no-untyped-def]
    site, _server = shop_nginx
    pebble = pebble_factory(http_port=site.http_port)
    tg("tls", "add", "nginx", "--name", "web", "--connection_type", "local", "--nginx_config_path", str(site.config))
    tg("org", "add", "Acme")
    tg("tls", "delegate", "web", "--org", "Acme")
    tg("tls", "discover", "web")
    account = tg_json("acme", "add", "pebble", "--directory", pebble.directory, "--email", "ops@shop.test",
                      "--ca_bundle", str(pebble.ca_bundle), "--agree_tos")
    assert account["uri"].startswith(f"https://127.0.0.1:{pebble.port}/") and "key" not in account
    before = _configs(site)

    issued = tg_json("cert", "request", "--acme", "pebble", "--domain", "shop.test", "--domain", "WWW.shop.test",
                     "--via", "web", "--http_port", str(site.http_port), "--org", "Acme")
    assert issued["names"] == ["shop.test", "www.shop.test"]
    assert "Pebble Intermediate" in issued["issuer"]
    assert _configs(site) == before, "the http-01 answer was not removed byte for byte"
    assert not list(site.prefix.rglob("*acme-challenge*"))

    # cert deploy of the recorded certificate (key sealed in the inventory), a fleet job
    assert deployed_by_cli("web", issued["certificate_id"])
    leaf = served(site.tls_port2, "shop.test")
    inter = pebble.intermediates()[0]
    assert leaf.issuer == inter.subject
    after = _configs(site)
    changed = {p for p in after if after[p] != before.get(p)}
    assert changed == {site.prefix / "conf.d" / "30-shop.conf"}
    shop = site.prefix / "conf.d" / "30-shop.conf"
    assert changed_directives(before[shop], after[shop]) == [b"ssl_certificate", b"ssl_certificate_key"]

    # nothing is due (Pebble's certificates live years; one third of the lifetime is left)
    res = tg("cert", "renew", "--json")
    report = __import__("json").loads(res.stdout)
    assert [c["action"] for c in report["certificates"]] == ["not due"] and report["certificates"][0]["window"] == "lifetime"

    # forced renewal with --deploy: the new certificate replaces the old one on the node
    report = tg_json("cert", "renew", "--days", "3650", "--deploy")
    item = report["certificates"][0]
    assert item["action"] == "renewed" and report["ok"], report
    assert [e["action"] for e in item["deploy"]] == ["deployed"]
    new_leaf = served(site.tls_port2, "shop.test")
    assert new_leaf.serial_number != leaf.serial_number and new_leaf.issuer == inter.subject
    listing = {c["id"]: c for c in tg_json("cert", "list")}
    assert listing[issued["certificate_id"]]["status"] == f"superseded by {item['new_certificate_id']}"
    # idempotent: the renewed certificate is the one due next time, the old one is never renewed again
    again = tg_json("cert", "renew", "--dry-run")
    assert [c["certificate_id"] for c in again["certificates"]] == [item["new_certificate_id"]]


def test_http01_into_a_server_block_written_on_one_line(shop_nginx, pebble_factory) -> None:  # type: ignore[no-untyped-def]
    # the answer's trailing '# tlsgate: ...' comment swallowed the rest of the line, '}' included:
    # nginx -t failed ("unexpected end of file, expecting '}'") and no certificate could be issued
    site, _server = shop_nginx
    one_line = site.prefix / "conf.d" / "40-one-line.conf"
    one_line.write_text(f"server {{ listen 127.0.0.1:{site.http_port}; server_name one.test; }}\n")
    tg("tls", "add", "nginx", "--name", "web", "--connection_type", "local", "--nginx_config_path", str(site.config))
    tg("org", "add", "Acme")
    tg("tls", "delegate", "web", "--org", "Acme")
    pebble = pebble_factory(http_port=site.http_port)
    tg("acme", "add", "pebble", "--directory", pebble.directory, "--email", "ops@shop.test",
       "--ca_bundle", str(pebble.ca_bundle), "--agree_tos")
    before = _configs(site)
    issued = tg_json("cert", "request", "--acme", "pebble", "--domain", "one.test", "--via", "web",
                     "--http_port", str(site.http_port))
    assert issued["names"] == ["one.test"]
    assert _configs(site) == before, "the http-01 answer was not removed byte for byte"
