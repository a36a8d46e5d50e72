"""End to end through the ``tlsgate`` command line (subprocess, private TLSGATE_HOME) against
the real Tomcat 10: add, delegate, discover, nodes, install (dry run, then real), restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlsgate import ConnectionSpec, Endpoint
from tlsgate_testing.certs import TestCA
from tlsgate_tomcat import plugin
from tlsgate_tomcat.plugin import TomcatOptions
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


def test_add_refuses_a_relative_tomcat_dir(tlsgate_home: Path, tmp_path: Path) -> None:
    """A relative --tomcat_dir (or --tomcat_home) would name another directory from every other
    working directory (a cron job's, the login directory over ssh): refused, as other types' paths."""
    (tmp_path / "tc" / "conf").mkdir(parents=True)
    (tmp_path / "tc" / "conf" / "server.xml").write_text("<Server/>")
    for connection in (("--connection_type", "local"),
                       ("--connection_type", "ssh", "--host", "tc.example", "--user", "u", "--password", "p")):
        res = subprocess.run([sys.executable, "-m", "tlsgate", "tls", "add", "tomcat", "--name", "tc", *connection,
                              "--tomcat_dir", "tc"], capture_output=True, text=True, env=dict(os.environ),
                             cwd=tmp_path, timeout=60)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stdout + res.stderr
        assert "--tomcat_dir" in res.stderr and "absolute" in res.stderr, res.stderr
    home = tg("tls", "add", "tomcat", "--name", "tc", "--connection_type", "local", "--tomcat_dir", str(tmp_path / "tc"),
              "--tomcat_home", "usr/share/tomcat10")
    assert home.returncode == 2 and "--tomcat_home" in home.stderr and "absolute" in home.stderr, home.stderr
    assert "tc" not in tg("tls", "list").stdout.split()


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


def test_a_named_tomcat_service_that_does_not_run_this_tomcat_is_an_error(
    tomcat10: TomcatServer, tlsgate_home: Path, test_ca: TestCA, tmp_path: Path
) -> None:
    """``--tomcat_service`` names how this Tomcat is restarted: when no such systemd unit runs
    it (here: no systemd at all), restart and install say so and change nothing; they do not
    restart Tomcat some other way behind the operator's back."""
    t = tomcat10
    ok("tls", "add", "tomcat", "--name", "tc", "--connection_type", "local", "--tomcat_dir", str(t.base),
       "--tomcat_service", "tomcat99.service")
    ok("org", "add", "Acme")
    ok("tls", "delegate", "tc", "--org", "Acme")
    ok("tls", "discover", "tc")
    pids, before = t.pids(), t.server_xml.read_bytes()
    res = tg("tls", "restart", "tc")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "--tomcat_service tomcat99.service:" in res.stderr and "tls set ENDPOINT --tomcat_service" in res.stderr
    crt, key, chain = test_ca.issue("b.test").write(tmp_path, "b")
    res = tg("tls", "install", "tc", "--cert", str(crt), "--key", str(key), "--chain", str(chain), "--node", "b.test")
    assert res.returncode == 1 and "--tomcat_service tomcat99.service:" in res.stderr
    assert t.pids() == pids and t.server_xml.read_bytes() == before
    assert t.served(t.p12_port, "b.test") == t.certs["b"].fingerprint
    ok("tls", "set", "tc", "--tomcat_service", "")  # the setting removed: Tomcat's own scripts restart it
    planned = ok("tls", "install", "tc", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
                 "--node", "b.test", "--dry-run")
    assert "catalina.sh configtest" in planned.stdout and t.server_xml.read_bytes() == before


def test_restart_names_why_a_connector_does_not_listen(tomcat10: TomcatServer, tlsgate_home: Path) -> None:
    """A connector whose port another process holds: the JVM runs on without it, and ``tls
    restart`` fails naming that connector and Tomcat's own reason from catalina.out."""
    import socket

    t = tomcat10
    ok("tls", "add", "tomcat", "--name", "tc", "--connection_type", "local", "--tomcat_dir", str(t.base))
    original = t.server_xml.read_bytes()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        t.server_xml.write_bytes(original.replace(f'port="{t.jks_port}"'.encode(), f'port="{taken}"'.encode(), 1))
        res = tg("tls", "restart", "tc")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stdout + res.stderr
    assert f"127.0.0.1:{taken}" in res.stderr and "Address already in use" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


@pytest.mark.parametrize("unit", ["-x", "tomcat\n10", "a;b", ""])
def test_add_refuses_a_service_name_that_is_not_one(tlsgate_home: Path, unit: str) -> None:
    res = tg("tls", "add", "tomcat", "--name", "tc", "--connection_type", "ssh", "--host", "t.example",
             "--tomcat_dir", "/opt/tomcat", "--tomcat_service", unit)
    assert res.returncode == 2 and "--tomcat_service" in res.stderr and "Traceback" not in res.stderr


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_service_name_rule(unit: str) -> None:
    """Any --tomcat_service value: accepted exactly when it is a unit or service name (no option,
    no shell or control character, no blank at either end); a Problem naming the flag otherwise."""
    endpoint = Endpoint(name="tc", type="tomcat", connection=ConnectionSpec(type="ssh", host="t.example"),
                        options=TomcatOptions(tomcat_dir="/opt/tomcat", tomcat_service=unit))
    problems = [p.option for p in plugin.validate(endpoint)]
    good = (bool(unit) and unit[0] not in "- " and unit[-1] != " "
            and all(ch.isascii() and (ch.isalnum() or ch in ":_.@\\ -") for ch in unit))
    assert problems == ([] if good else ["--tomcat_service"])
