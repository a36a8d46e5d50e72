"""Installs into many server blocks, end to end through ``tlsgate`` (a subprocess, stdout piped)
against a real nginx: what an install handshakes, and what it says about blocks it left alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nginx_peer import generate_config, nginx_binary, server_of_generated
from tlsgate.plugin import try_served_fingerprint
from tlsgate_testing.cli import ok, pem_files, settle, tg, tg_counting_handshakes
from tlsgate_testing.daemons import running
from tlsgate_testing.fixtures_core import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def many_blocks(tmp_path: Path, test_ca, tlsgate_home):
    """A running nginx of 90 TLS server blocks over three ports (site0 .. site89.example.com, one
    certificate file per block), added, delegated and discovered as endpoint 'big'."""
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    old = test_ca.issue("old.example.com")
    ports = [free_port() for _ in range(3)]
    main = generate_config(tmp_path / "nginx", 90, per_file=30, cert_pem=old.cert_pem + old.chain_pem,
                           key_pem=old.key_pem, listens=[f"127.0.0.1:{p} ssl" for p in ports], runnable=True)
    with running(server_of_generated(main, ports)):
        ok("tls", "add", "nginx", "--name", "big", "--connection_type", "local", "--nginx_config_path", str(main))
        ok("org", "add", "acme")
        ok("tls", "delegate", "big", "--org", "acme")
        ok("tls", "discover", "big")
        yield main, ports, old


def test_install_on_one_of_many_blocks_handshakes_each_block_at_most_twice(many_blocks, test_ca, tmp_path) -> None:
    _main, ports, old = many_blocks
    new = test_ca.issue("site7.example.com", "www.site7.example.com")
    res, handshakes = tg_counting_handshakes(tmp_path / "count", "tls", "install", "big", *pem_files(tmp_path / "in", new),
                                      "--node", "site7.example.com")
    assert res.returncode == 0, res.stderr
    assert "verified by TLS handshake" in res.stdout
    assert try_served_fingerprint("127.0.0.1", ports[7 % 3], "site7.example.com") == new.fingerprint
    assert try_served_fingerprint("127.0.0.1", ports[8 % 3], "site8.example.com") == old.fingerprint
    # the discovery the install starts with and the one it ends with see every block once each;
    # the install itself handshakes the block it changed (before, and after the reload), not all
    # 90 before and after as well (4 x 90 = 360)
    assert handshakes <= 2 * 90 + 10, handshakes


def test_install_that_applies_another_blocks_new_certificate_says_so(many_blocks, test_ca, tmp_path) -> None:
    main, ports, _old = many_blocks
    # someone replaced site4's certificate file and has not reloaded yet: tlsgate's reload applies it
    renewed = test_ca.issue("site4.example.com", "www.site4.example.com")
    certs = main.parent / "certs"
    (certs / "site4.crt").write_bytes(renewed.cert_pem + renewed.chain_pem)
    (certs / "site4.key").write_bytes(renewed.key_pem)
    settle()
    new = test_ca.issue("site1.example.com", "www.site1.example.com")
    res = tg("tls", "install", "big", *pem_files(tmp_path / "in", new), "--node", "site1.example.com",
             "--apply-pending", "--json")
    assert res.returncode == 0, res.stderr  # was: rolled back, the other block "failed" verification
    outcome = json.loads(res.stdout)
    notes = " ".join(outcome["messages"])
    assert "site4.example.com" in notes and "did not change" in notes, outcome
    assert try_served_fingerprint("127.0.0.1", ports[1], "site1.example.com") == new.fingerprint
    assert try_served_fingerprint("127.0.0.1", ports[4 % 3], "site4.example.com") == renewed.fingerprint
    nodes = {n["name"]: n for n in json.loads(ok("tls", "nodes", "big", "--json").stdout)}
    assert nodes["site4.example.com"]["fingerprint"] == renewed.fingerprint


def test_a_deep_include_tree_of_odd_files_is_discovered_and_installed(tmp_path: Path, test_ca, tlsgate_home) -> None:
    """50 levels of include (nginx has no limit), ending in a glob over a symlinked site with a
    UTF-8 file name, CRLF line ends and a server_name line of 300 names; a real include loop is
    a clear error naming the chain."""
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    from nginx_peer import NginxServer, _main_conf

    root = tmp_path / "nginx"
    for d in ("logs", "sites-available", "sites-enabled", "certs", "deep",
              *(f"temp/{t}" for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))):
        (root / d).mkdir(parents=True, exist_ok=True)
    port = free_port()
    names = [f"n{i}.example.com" for i in range(300)]
    old, new = test_ca.issue("xn--caf-dma.example.com", *names), test_ca.issue("xn--caf-dma.example.com", *names)
    (root / "certs" / "ö.crt").write_bytes(old.cert_pem + old.chain_pem)
    (root / "certs" / "ö.key").write_bytes(old.key_pem)
    site = (f"server {{\r\n    listen 127.0.0.1:{port} ssl;\r\n    server_name xn--caf-dma.example.com {' '.join(names)};"
            f"\r\n    ssl_certificate {root}/certs/ö.crt;\r\n    ssl_certificate_key {root}/certs/ö.key;\r\n}}\r\n")
    (root / "sites-available" / "café.conf").write_bytes(site.encode())
    (root / "sites-enabled" / "café.conf").symlink_to(root / "sites-available" / "café.conf")
    depth = 50
    for i in range(depth):
        (root / "deep" / f"{i}.conf").write_text(
            f"include {root}/deep/{i + 1}.conf;\n" if i + 1 < depth else f"include {root}/sites-enabled/*.conf;\n")
    main = root / "nginx.conf"
    main.write_text(_main_conf(root, f"    server_names_hash_bucket_size 128;\n    include {root}/deep/0.conf;\n"))
    with running(NginxServer(root, main, root / "logs" / "nginx.pid", [port])):
        ok("tls", "add", "nginx", "--name", "odd", "--connection_type", "local", "--nginx_config_path", str(main))
        ok("org", "add", "acme")
        ok("tls", "delegate", "odd", "--org", "acme")
        found = json.loads(ok("tls", "discover", "odd", "--json").stdout)  # was: "nest deeper than 32"
        assert [(n["name"], len(n["alias"]), n["fingerprint"]) for n in found] == [
            ("xn--caf-dma.example.com", 300, old.fingerprint)]
        done = ok("tls", "install", "odd", *pem_files(tmp_path / "in", new))
        assert "verified by TLS handshake" in done.stdout
        assert try_served_fingerprint("127.0.0.1", port, "n299.example.com") == new.fingerprint
        assert (root / "sites-enabled" / "café.conf").is_symlink()
        edited = (root / "sites-available" / "café.conf").read_bytes()
        assert edited.count(b"\r\n") == 6 and b"\n" not in edited.replace(b"\r\n", b"")

    (root / "deep" / "7.conf").write_text(f"include {root}/deep/3.conf;\n")  # 3 -> ... -> 7 -> 3
    loop = tg("tls", "discover", "odd")
    assert loop.returncode == 1 and "Traceback" not in loop.stderr
    assert "include loop" in loop.stderr and "deep/3.conf -> " in loop.stderr and "deep/7.conf -> " in loop.stderr
