"""End to end through the ``tlsgate`` command line (subprocess, private TLSGATE_HOME) against
the real Tomcat 10: add, delegate, discover, nodes, install (dry run, then real), restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tlsgate_testing.certs import TestCA
from tomcat_peer import B_PASSWORD, TomcatServer

pytestmark = pytest.mark.slow


def tg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tlsgate", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=240)


def ok(*args: str) -> subprocess.CompletedProcess[str]:
    res = tg(*args)
    assert res.returncode == 0, f"tlsgate {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def test_add_refuses_an_empty_tomcat_dir(tlsgate_home: Path) -> None:
    res = tg("tls", "add", "tomcat", "--name", "tc", "--connection_type", "local", "--tomcat_dir", "")
    assert res.returncode == 2
    assert "--tomcat_dir" in res.stderr and "Traceback" not in res.stderr
    missing = tg("tls", "add", "tomcat", "--name", "tc", "--connection_type", "local")
    assert missing.returncode == 2 and "--tomcat_dir" in missing.stderr
    docker = tg("tls", "add", "tomcat", "--name", "tc", "--connection_type", "rest", "--tomcat_dir", "/x")
    assert docker.returncode == 2


def test_cli_end_to_end(tomcat10: TomcatServer, tlsgate_home: Path, test_ca: TestCA, tmp_path: Path) -> None:
    t = tomcat10
    added = ok("tls", "add", "tomcat", "--name", "tc", "--connection_type", "local", "--tomcat_dir", str(t.base))
    assert "tc" in added.stdout
    ok("org", "add", "Acme")
    ok("tls", "delegate", "tc", "--org", "Acme")
    ok("tls", "discover", "tc")
    nodes = json.loads(ok("tls", "nodes", "tc", "--json").stdout)
    rows = nodes if isinstance(nodes, list) else nodes["nodes"]
    assert sorted((n["name"], n["port"]) for n in rows) == sorted(
        [("_default_", t.jks_port), ("_default_", t.p12_port), ("b.test", t.p12_port), ("pem.test", t.p12_port)])

    crt, key, chain = test_ca.issue("b.test").write(tmp_path, "b")
    before = t.server_xml.read_bytes()
    dry = ok("tls", "install", "tc", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
             "--node", "b.test", "--dry-run")
    assert "restart" in dry.stdout
    assert t.server_xml.read_bytes() == before
    assert t.served(t.p12_port, "b.test") == t.certs["b"].fingerprint

    ok("tls", "install", "tc", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
       "--node", f"_default_:{t.jks_port}", "--node", "b.test")
    from tlsgate.plugin import fingerprint, load_any_certificate

    new_fp = fingerprint(load_any_certificate(crt.read_bytes()))
    assert t.served(t.p12_port, "b.test") == new_fp
    assert t.served(t.jks_port) == new_fp
    assert t.served(t.p12_port) == t.certs["p12"].fingerprint
    assert t.served(t.p12_port, "pem.test") == t.certs["pem"].fingerprint
    shown = ok("tls", "nodes", "tc").stdout
    assert "External" in shown  # the untouched hosts' certificates are not in the inventory

    restarted = ok("tls", "restart", "tc")
    assert restarted.returncode == 0
    assert t.served(t.p12_port, "b.test") == new_fp
    # keystore passwords live only in server.xml: never in $TLSGATE_HOME
    blob = b"".join(p.read_bytes() for p in tlsgate_home.rglob("*") if p.is_file())
    assert B_PASSWORD.encode() not in blob
    xml = t.server_xml.read_text()
    generated = xml.split(f"127.0.0.1_{t.jks_port}__default_-{new_fp[:12]}.jks")[1]
    assert "jks-Secret 1" in generated  # the JKS connector's own password was kept
