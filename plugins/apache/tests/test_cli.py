"""End to end, as an operator runs it: every step through the ``tlsgate`` command line in a
subprocess (TLSGATE_HOME private), against the real httpd, locally and over the real sshd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tlsgate_testing.sshd import SshdServer

from .conftest import served_map

pytestmark = pytest.mark.slow


def tg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tlsgate", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=180)


def ok(*args: str) -> subprocess.CompletedProcess[str]:
    res = tg(*args)
    assert res.returncode == 0, f"tlsgate {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def write_pem(directory: Path, issued) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "cert.pem", directory / "key.pem", directory / "chain.pem"
    paths[0].write_bytes(issued.cert_pem)
    paths[1].write_bytes(issued.key_pem)
    paths[2].write_bytes(issued.chain_pem)
    return tuple(str(p) for p in paths)  # type: ignore[return-value]


def operator_flow(name: str, site, server, test_ca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """delegate, discover, nodes, dry run, install to one node, a failing install, restart."""
    assert tg("tls", "discover", name).returncode == 1  # refused until delegated
    ok("org", "add", "Acme")
    ok("tls", "delegate", name, "--org", "Acme")
    ok("tls", "discover", name)
    nodes = json.loads(ok("tls", "nodes", name, "--json").stdout)
    assert sorted((n["name"], n["protocol"], n["port"]) for n in nodes if n["ip"] == "127.0.0.1") == sorted([
        ("plain.test", "http", site.http_port), ("alpha.test", "https", site.tls_port),
        ("beta.test", "https", site.tls_port), ("gamma.test", "https", site.tls_port),
        ("gamma.test", "https", site.tls_port2),
    ])
    assert {n["ssl"] for n in nodes if n["protocol"] == "https"} == {"External"}
    text = ok("tls", "nodes", name).stdout
    assert "www.alpha.test" in text and "beta.test" in text

    before_files, before = site.snapshot(), served_map(site)
    new = test_ca.issue("beta.test", "gamma.test")
    cert, key, chain = write_pem(tmp_path / "new", new)
    dry = json.loads(ok("tls", "install", name, "--cert", cert, "--key", key, "--chain", chain,
                        "--node", "beta.test", "--dry-run", "--json").stdout)
    assert dry["dry_run"] and dry["files_written"] == [] and dry["nodes"] == ["beta.test"]
    assert [s["action"] for s in dry["plan"]][-3:] == ["run", "run", "verify"]
    assert site.snapshot() == before_files and served_map(site) == before

    # the certificate also covers gamma.test, but --node limits the install to beta.test
    done = json.loads(ok("tls", "install", name, "--cert", cert, "--key", key, "--chain", chain,
                         "--node", "beta.test", "--json").stdout)
    assert done["verified"] and done["nodes"] == ["beta.test"] and not done["rolled_back"]
    after = served_map(site)
    assert after["beta"] == new.fingerprint
    assert {k: v for k, v in after.items() if k != "beta"} == {k: v for k, v in before.items() if k != "beta"}
    nodes = json.loads(ok("tls", "nodes", name, "--json").stdout)
    beta = next(n for n in nodes if n["name"] == "beta.test")
    assert beta["fingerprint"] == new.fingerprint and beta["ssl"] == str(done["certificate_id"])

    # a failing install: exit 1 with the reason, every file as it was, the old certificate served
    before_files, before = site.snapshot(), served_map(site)
    other = test_ca.issue("alpha.test", "www.alpha.test")
    cert2, key2, chain2 = write_pem(tmp_path / "other", other)
    bad = tg("tls", "install", name, "--cert", cert2, "--key", key2, "--chain", chain2, "--node", "plain.test")
    assert bad.returncode == 2 and "plain http" in bad.stderr
    broken = site.root / "conf.d" / "30-wip.conf"
    broken.write_text("<VirtualHost 127.0.0.1:1>\n")  # an unfinished edit: httpd -t refuses it
    failed = tg("tls", "install", name, "--cert", cert2, "--key", key2, "--chain", chain2)
    assert failed.returncode == 1 and "30-wip.conf" in failed.stderr and "Traceback" not in failed.stderr
    broken.unlink()
    assert site.snapshot() == before_files and served_map(site) == before and server.alive

    pid = server.pid
    restarted = ok("tls", "restart", name)
    assert "graceful" in restarted.stdout and server.pid == pid


def test_add_checks_a_local_apachectl_path(tlsgate_home: Path) -> None:
    for path, what in (("/nonexistent/apache2ctl", "no such file"), ("/etc", "is a directory")):
        res = tg("tls", "add", "apache", "--name", "x", "--connection_type", "local", "--apachectl_path", path)
        assert res.returncode == 2 and res.stderr.strip() == f"error: --apachectl_path: {path}: {what}"
    # a program name is looked up on PATH when the job runs; over ssh the path is the remote host's
    ok("tls", "add", "apache", "--name", "x", "--connection_type", "local", "--apachectl_path", "apache2ctl")
    ok("tls", "add", "apache", "--name", "y", "--connection_type", "ssh", "--host", "web.example",
       "--apachectl_path", "/nonexistent/apache2ctl")


def test_cli_local(apache_server, test_ca, tlsgate_home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    site, server = apache_server
    added = ok("tls", "add", "apache", "--name", "web", "--connection_type", "local",
               "--apachectl_path", str(site.apachectl), "--certs_dir", str(site.root / "tlsgate-certs"))
    assert added.stdout.startswith("Endpoint 'web' added successfully. Instance ID: ")
    shown = json.loads(ok("tls", "show", "web", "--json").stdout)
    assert shown["type"] == "apache"
    bad = tg("tls", "add", "apache", "--name", "x", "--connection_type", "local", "--apachectl_path", "x" * 4097)
    assert bad.returncode == 2 and "--apachectl_path: must be between 1 and 4096 characters" in bad.stderr
    operator_flow("web", site, server, test_ca, tmp_path)


def test_cli_over_ssh(apache_server, sshd: SshdServer, test_ca, tlsgate_home: Path, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    site, server = apache_server
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    ok("tls", "add", "apache", "--name", "web-ssh", "--connection_type", "ssh", "--host", sshd.host,
       "--port", str(sshd.port), "--user", "root", "--ssh_key_path", str(sshd.root_key.path),
       "--apachectl_path", str(site.root / "bin" / "apache2ctl"),  # Debian's apache2ctl, over ssh
       "--certs_dir", str(site.root / "tlsgate-certs"))
    ok("tls", "trust", "web-ssh", "--yes")
    operator_flow("web-ssh", site, server, test_ca, tmp_path)
