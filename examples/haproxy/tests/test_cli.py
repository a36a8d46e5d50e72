"""The documented CLI end to end (``tlsgate`` as a subprocess, stdout piped), locally and over the
kit's real sshd, against a real HAProxy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from haproxy_peer import HaproxySite
from tlsgate_testing.sshd import SshdServer


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tlsgate", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=120, check=False)


def ok(*args: str) -> subprocess.CompletedProcess[str]:
    res = cli(*args)
    assert res.returncode == 0, f"{args}: {res.stderr}"
    return res


def test_add_validates_the_config_path(tlsgate_home: Path) -> None:
    too_long = cli("tls", "add", "haproxy", "--name", "lb", "--connection_type", "local",
                   "--haproxy_config_path", "/" + "x" * 4096)
    assert too_long.returncode == 2
    assert too_long.stderr.strip() == "error: --haproxy_config_path: must be between 1 and 4096 characters"
    relative = cli("tls", "add", "haproxy", "--name", "lb", "--connection_type", "local",
                   "--haproxy_config_path", "haproxy.cfg")
    assert relative.returncode == 2 and "--haproxy_config_path: must be an absolute path" in relative.stderr
    for path, what in (("/nonexistent/haproxy.cfg", "no such file"), ("/etc", "is a directory")):
        res = cli("tls", "add", "haproxy", "--name", "lb", "--connection_type", "local",
                  "--haproxy_config_path", path)  # local: checked when added, as a keystore's --path is
        assert res.returncode == 2 and res.stderr.strip() == f"error: --haproxy_config_path: {path}: {what}"
    shown = json.loads(ok("tls", "add", "haproxy", "--name", "lb", "--connection_type", "local", "--json").stdout)
    assert shown["options"] == {"haproxy_config_path": "/etc/haproxy/haproxy.cfg"}  # the default
    assert "--haproxy_config_path" in ok("tls", "add", "haproxy", "--help").stdout


@pytest.mark.slow
def test_local_add_discover_install_restart(haproxy: HaproxySite, tlsgate_home: Path, test_ca, tmp_path: Path) -> None:
    site = haproxy
    ok("tls", "add", "haproxy", "--name", "lb", "--connection_type", "local",
       "--haproxy_config_path", str(site.config))
    ok("org", "add", "Acme")
    ok("tls", "delegate", "lb", "--org", "Acme")
    found = json.loads(ok("tls", "discover", "lb", "--json").stdout)
    assert [n["name"] for n in found] == ["alpha.test", "www.alpha.test", "beta.test", "gamma.test", "delta.test",
                                          "plain"]
    new = test_ca.issue("gamma.test", "gamma2.test")
    crt, key, chain = new.write(tmp_path / "in", "gamma")
    plan = json.loads(ok("tls", "install", "lb", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
                         "--dry-run", "--json").stdout)
    assert plan["dry_run"] and site.served("gamma.test") == site.certs["gamma"].fingerprint
    done = json.loads(ok("tls", "install", "lb", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
                         "--json").stdout)
    assert done["verified"] and done["nodes"] == ["gamma.test"]
    assert site.served("gamma.test") == new.fingerprint
    nodes = json.loads(ok("tls", "nodes", "lb", "--json").stdout)
    assert [n["ssl"] for n in nodes if n["name"] == "gamma.test"] == [str(done["certificate_id"])]
    assert "reloaded" in ok("tls", "restart", "lb").stdout


@pytest.mark.slow
def test_over_ssh(haproxy: HaproxySite, sshd: SshdServer, tlsgate_home: Path, test_ca, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    site = haproxy
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # never the real ~/.ssh/known_hosts
    ok("tls", "add", "haproxy", "--name", "lb-ssh", "--connection_type", "ssh", "--host", sshd.host,
       "--port", str(sshd.port), "--user", "root", "--ssh_key_path", str(sshd.root_key.path),
       "--haproxy_config_path", str(site.config))
    ok("tls", "trust", "lb-ssh", "--yes")
    ok("org", "add", "Acme")
    ok("tls", "delegate", "lb-ssh", "--org", "Acme")
    found = json.loads(ok("tls", "discover", "lb-ssh", "--json").stdout)
    assert {n["name"]: n["fingerprint"] for n in found if n["protocol"] == "https"}["beta.test"] == \
        site.certs["beta"].fingerprint
    new = test_ca.issue("beta.test")
    crt, key, chain = new.write(tmp_path / "in", "beta")
    done = json.loads(ok("tls", "install", "lb-ssh", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
                         "--json").stdout)
    assert done["verified"] and done["nodes"] == ["beta.test"]
    assert site.served("beta.test") == new.fingerprint
    assert site.served("alpha.test") == site.certs["alpha"].fingerprint
    assert (site.dir / "certs" / "beta.pem").stat().st_mode & 0o777 == 0o600

    # a broken configuration on the remote host: restored, not reloaded, exit 1 with the reason
    with site.config.open("a") as fh:
        fh.write("\nbogus_keyword_for_the_test\n")
    before = site.snapshot()
    newer = test_ca.issue("beta.test")
    crt2, key2, chain2 = newer.write(tmp_path / "in2", "beta")
    failed = cli("tls", "install", "lb-ssh", "--cert", str(crt2), "--key", str(key2), "--chain", str(chain2))
    assert failed.returncode == 1 and "haproxy -c failed" in failed.stderr and "Traceback" not in failed.stderr
    assert site.snapshot() == before and site.served("beta.test") == new.fingerprint
