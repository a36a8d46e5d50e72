"""A vhost written in another encoding than UTF-8 (``ServerName caf\\xe9.test`` in a file called
``caf\\xe9.conf``, as Latin-1 bytes) through ``tlsgate`` with stdout piped: httpd's dump names the
file and the name byte for byte, discovery finds the vhost's section in that file (https, its
certificate, each foreign byte shown as ``\\xNN``), and an install and a verify work on it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from apache_peer import running_apache
from tlsgate.plugin import try_served_fingerprint
from tlsgate_testing.certs import TestCA
from tlsgate_testing.cli import cli_runner

pytestmark = pytest.mark.slow


def test_latin1_server_name_and_file_name(tmp_path: Path, test_ca: TestCA) -> None:
    root = tmp_path / "apache"
    with running_apache(root, test_ca) as (site, server):
        old = test_ca.issue("x.test")
        (root / "certs" / "x.crt").write_bytes(old.cert_pem + old.chain_pem)
        (root / "certs" / "x.key").write_bytes(old.key_pem)
        vhost = os.path.join(os.fsencode(root / "sites enabled"), b"caf\xe9.conf")
        with open(vhost, "wb") as f:
            f.write(b"<VirtualHost 127.0.0.1:%d>\n    ServerName caf\xe9.test\n    ServerAlias x.test\n"
                    b"    SSLEngine on\n    SSLCertificateFile certs/x.crt\n    SSLCertificateKeyFile certs/x.key\n"
                    b"</VirtualHost>\n" % site.tls_port)
        assert server.ctl("-k", "graceful").returncode == 0
        cli = cli_runner(tmp_path)
        assert cli("tls", "add", "apache", "--name", "web", "--connection_type", "local",
                   "--apachectl_path", str(site.apachectl)).returncode == 0
        assert cli("org", "add", "A").returncode == 0
        assert cli("tls", "delegate", "web", "--org", "A").returncode == 0
        time.sleep(2.5)  # past tlsgate.early's margin: the second discovery may take the early dump
        for _ in range(2):  # the second one starts httpd's dump before tlsgate loads (tlsgate.early)
            found = cli("tls", "discover", "web")
            assert found.returncode == 0, found.stderr
            nodes = [n for n in json.loads(cli("tls", "nodes", "web", "--json").stdout) if n["alias"] == ["x.test"]]
            assert [(n["name"], n["protocol"], n["fingerprint"]) for n in nodes] == [
                ("caf\\xe9.test", "https", old.fingerprint)]
        assert "caf\\xe9.conf" in nodes[0]["locator"] and "could not be read" not in nodes[0]["state"]
        new = test_ca.issue("x.test")
        crt, key, chain = new.write(tmp_path / "in", "x")
        done = cli("tls", "install", "web", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
                   "--node", "caf\\xe9.test", "--allow-name-mismatch")
        assert done.returncode == 0, done.stderr
        assert try_served_fingerprint("127.0.0.1", site.tls_port, "x.test") == new.fingerprint
        with open(vhost, "rb") as f:
            assert b"ServerName caf\xe9.test\n" in f.read()  # its other bytes kept as they were
        verified = json.loads(cli("tls", "verify", "--all", "--json").stdout)
        assert verified
