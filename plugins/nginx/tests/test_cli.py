"""End to end through the ``tlsgate`` command (a subprocess with a private TLSGATE_HOME)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tlsgate.plugin import try_served_fingerprint
from tlsgate_testing.cli import cli_runner
from tlsgate_testing.sshd import SshdServer

pytestmark = pytest.mark.slow



@pytest.fixture
def cli(tmp_path: Path):
    return cli_runner(tmp_path, timeout=120)


def test_add_delegate_discover_nodes_install(nginx_server, test_ca, cli, tmp_path: Path) -> None:
    site, _server = nginx_server
    add = cli("tls", "add", "nginx", "--name", "web", "--connection_type", "local",
              "--nginx_config_path", str(site.config))
    assert add.returncode == 0, add.stderr
    assert "Instance ID" in add.stdout
    assert cli("org", "add", "acme").returncode == 0
    refused = cli("tls", "discover", "web")
    assert refused.returncode == 1 and "not delegated" in refused.stderr
    assert cli("tls", "delegate", "web", "--org", "acme").returncode == 0
    assert cli("tls", "discover", "web").returncode == 0

    nodes = json.loads(cli("tls", "nodes", "web", "--json").stdout)
    assert sorted((n["name"], n["protocol"], n["port"]) for n in nodes) == sorted([
        ("plain.test", "http", site.http_port),
        ("alpha.test", "https", site.tls_port),
        ("beta.test", "https", site.tls_port),
        ("gamma.test", "https", site.tls_port),
        ("gamma.test", "https", site.tls_port2),
    ])
    assert {n["name"]: n["fingerprint"] for n in nodes if n["name"] != "gamma.test"}["beta.test"] == (
        site.certs["beta.test"].fingerprint
    )

    new = test_ca.issue("beta.test", "gamma.test")
    crt, key, chain = new.write(tmp_path / "in", "new")
    files = ["--cert", str(crt), "--key", str(key), "--chain", str(chain)]
    before = site.snapshot()
    dry = cli("tls", "install", "web", *files, "--node", "beta.test", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "20-beta.conf" in dry.stdout and "-s reload" in dry.stdout
    assert site.snapshot() == before

    done = cli("tls", "install", "web", *files, "--node", "beta.test")
    assert done.returncode == 0, done.stderr
    assert "verified" in done.stdout
    assert try_served_fingerprint("127.0.0.1", site.tls_port, "beta.test") == new.fingerprint
    # gamma.test is covered by the certificate too, but only --node beta.test was asked for
    assert try_served_fingerprint("127.0.0.1", site.tls_port, "gamma.test") == site.certs["fallback"].fingerprint

    (site.prefix / "conf.d" / "30-wip.conf").write_text("no_such_directive on;\n")
    before = site.snapshot()
    newer = test_ca.issue("alpha.test", "www.alpha.test")
    crt2, key2, _ = newer.write(tmp_path / "in2", "newer")
    # the broken file is a pending change: applied on purpose, nginx -t catches it
    failed = cli("tls", "install", "web", "--cert", str(crt2), "--key", str(key2), "--apply-pending")
    assert failed.returncode == 1
    assert "nginx -t failed" in failed.stderr and "restored" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert site.snapshot() == before
    assert try_served_fingerprint("127.0.0.1", site.tls_port, "alpha.test") == site.certs["alpha.test"].fingerprint


def test_bad_options_exit_2_naming_the_option(cli) -> None:
    long = cli("tls", "add", "nginx", "--name", "w", "--connection_type", "local",
               "--nginx_config_path", "/" + "x" * 4096)
    assert long.returncode == 2
    assert "--nginx_config_path" in long.stderr and "4096" in long.stderr and "Traceback" not in long.stderr
    missing = cli("tls", "add", "nginx", "--name", "w", "--connection_type", "local")
    assert missing.returncode == 2 and "--nginx_config_path" in missing.stderr
    wrong = cli("tls", "add", "nginx", "--name", "w", "--connection_type", "winrm_http",
                "--nginx_config_path", "/etc/nginx/nginx.conf")
    assert wrong.returncode == 2 and "--connection_type" in wrong.stderr
    for path, what in (("/nonexistent/nginx.conf", "no such file"), ("/etc", "is a directory")):
        res = cli("tls", "add", "nginx", "--name", "w", "--connection_type", "local", "--nginx_config_path", path)
        assert res.returncode == 2 and res.stderr.strip() == f"error: --nginx_config_path: {path}: {what}"
    # over ssh the path is the remote host's: not checked when added
    remote = cli("tls", "add", "nginx", "--name", "w", "--connection_type", "ssh", "--host", "web.example",
                 "--nginx_config_path", "/nonexistent/nginx.conf")
    assert remote.returncode == 0, remote.stderr


def test_over_ssh(nginx_server, sshd: SshdServer, test_ca, cli, tmp_path: Path) -> None:
    site, _server = nginx_server
    add = cli("tls", "add", "nginx", "--name", "web-ssh", "--connection_type", "ssh", "--host", sshd.host,
              "--port", str(sshd.port), "--user", "root", "--ssh_key_path", str(sshd.root_key.path),
              "--nginx_config_path", str(site.config), "--certs_dir", str(site.prefix / "tlsgate certs"))
    assert add.returncode == 0, add.stderr
    assert cli("tls", "trust", "web-ssh", "--yes").returncode == 0
    assert cli("org", "add", "acme").returncode == 0
    assert cli("tls", "delegate", "web-ssh", "--org", "acme").returncode == 0
    found = cli("tls", "discover", "web-ssh")
    assert found.returncode == 0, found.stderr
    nodes = json.loads(cli("tls", "nodes", "web-ssh", "--json").stdout)
    assert len(nodes) == 5 and {n["fingerprint"] for n in nodes if n["name"] == "alpha.test"} == {
        site.certs["alpha.test"].fingerprint
    }
    new = test_ca.issue("alpha.test", "www.alpha.test")
    crt, key, chain = new.write(tmp_path / "in", "new")
    done = cli("tls", "install", "web-ssh", "--cert", str(crt), "--key", str(key), "--chain", str(chain))
    assert done.returncode == 0, done.stderr
    assert try_served_fingerprint("127.0.0.1", site.tls_port, "alpha.test") == new.fingerprint
    assert try_served_fingerprint("127.0.0.1", site.tls_port, "beta.test") == site.certs["beta.test"].fingerprint
    # the new files went to --certs_dir (a path with a space, quoted in the config)
    assert '"' + str(site.prefix / "tlsgate certs") in (site.prefix / "conf.d" / "10-alpha.conf").read_text()
    restarted = cli("tls", "restart", "web-ssh")
    assert restarted.returncode == 0, restarted.stderr
