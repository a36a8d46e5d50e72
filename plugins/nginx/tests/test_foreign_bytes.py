"""A configuration written in another encoding than UTF-8 (an old Latin-1 site: ``server_name
caf\\xe9.test`` and a file called ``caf\\xe9.conf``, as bytes), through ``tlsgate`` with stdout
piped: discovery stores and shows the block (each foreign byte as ``\\xNN``) instead of failing
with UnicodeEncodeError, probes it by the name that is a host name, and an install and a verify
work on it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from nginx_peer import NginxServer, _main_conf, nginx_binary
from tlsgate.plugin import try_served_fingerprint
from tlsgate_testing.certs import TestCA
from tlsgate_testing.cli import cli_runner
from tlsgate_testing.daemons import running
from tlsgate_testing.fixtures_core import free_port

pytestmark = pytest.mark.slow


def test_latin1_server_name_and_file_name(tmp_path: Path, test_ca: TestCA) -> None:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    root = tmp_path / "nginx"
    for d in ("logs", "sites", "certs", *(f"temp/{t}" for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))):
        (root / d).mkdir(parents=True, exist_ok=True)
    port = free_port()
    old = test_ca.issue("x.test")
    (root / "certs" / "x.crt").write_bytes(old.cert_pem + old.chain_pem)
    (root / "certs" / "x.key").write_bytes(old.key_pem)
    (root / "nginx.conf").write_text(_main_conf(root, "    include sites/*.conf;\n"))
    site = os.path.join(os.fsencode(root / "sites"), b"caf\xe9.conf")
    with open(site, "wb") as f:
        f.write(b"server {\n    listen 127.0.0.1:%d ssl;\n    server_name caf\xe9.test x.test;\n"
                b"    ssl_certificate certs/x.crt;\n    ssl_certificate_key certs/x.key;\n}\n" % port)
    cli = cli_runner(tmp_path)
    assert cli("tls", "add", "nginx", "--name", "web", "--connection_type", "local",
               "--nginx_config_path", str(root / "nginx.conf")).returncode == 0
    assert cli("org", "add", "A").returncode == 0
    assert cli("tls", "delegate", "web", "--org", "A").returncode == 0
    with running(NginxServer(root, root / "nginx.conf", root / "logs" / "nginx.pid", [port])):
        found = cli("tls", "discover", "web")
        assert found.returncode == 0, found.stderr
        assert "1 node(s)" in found.stdout and "0 unreachable" in found.stdout
        [node] = json.loads(cli("tls", "nodes", "web", "--json").stdout)
        assert node["name"] == "caf\\xe9.test" and node["alias"] == ["x.test"]
        assert node["locator"].startswith(str(root / "sites" / "caf\\xe9.conf"))
        assert node["fingerprint"] == old.fingerprint and node["state"] == "active"  # reached as x.test
        assert "caf\\xe9.test" in cli("tls", "nodes", "web").stdout
        new = test_ca.issue("x.test")
        crt, key, chain = new.write(tmp_path / "in", "x")
        done = cli("tls", "install", "web", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
                   "--node", "caf\\xe9.test", "--allow-name-mismatch")  # the name as tls nodes shows it
        assert done.returncode == 0, done.stderr
        assert try_served_fingerprint("127.0.0.1", port, "x.test") == new.fingerprint
        with open(site, "rb") as f:
            assert b"server_name caf\xe9.test x.test;" in f.read()  # the other bytes kept as they were
        verified = cli("tls", "verify", "--all", "--json")
        assert verified.returncode == 0, verified.stdout
        assert "ok" in verified.stdout and new.fingerprint[:16] in verified.stdout
