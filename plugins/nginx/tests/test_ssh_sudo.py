"""nginx over ssh as a non-root account with sudo, as operators run it, end to end through the
``tlsgate`` command: the real sshd fixture (account ``tlsgate-test``), the real Debian sudo with a
rule file the test writes under /etc/sudoers.d (removed after), the real nginx running as root
from a prefix only root may write."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from nginx_peer import NginxServer, NginxSite, running_nginx
from tlsgate.probe import try_served_fingerprint
from tlsgate_testing.fixtures_core import world_readable_dir
from tlsgate_testing.sshd import SshdServer, sudo_commands, sudoers_rule

pytestmark = pytest.mark.slow

TLSGATE = str(Path(sys.executable).with_name("tlsgate"))
FILE_COMMANDS = ("install", "mv", "rm", "cat", "mkdir", "touch")  # mkdir: the endpoint's tlsgate/ folder; touch: restored mtimes


@pytest.fixture
def root_site(test_ca) -> Iterator[tuple[NginxSite, NginxServer]]:  # type: ignore[no-untyped-def]
    """nginx (as root) in a prefix the ssh account may read but not write, keys mode 0600."""
    with world_readable_dir("tlsgate-nginx-root-") as base, running_nginx(base / "nginx", test_ca) as pair:
        yield pair


@pytest.fixture
def cli(sshd: SshdServer, tmp_path: Path):  # type: ignore[no-untyped-def]
    home = tmp_path / "user-home"
    home.mkdir()
    env = {**os.environ, "TLSGATE_HOME": str(tmp_path / "home"), "HOME": str(home)}
    env.pop("TLSGATE_MASTER_KEY", None)
    env.pop("SSH_AUTH_SOCK", None)

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TLSGATE, *args], capture_output=True, text=True, env=env, timeout=180,
                              check=False, input=stdin)

    run.home = tmp_path / "home"  # type: ignore[attr-defined]
    return run


def add_endpoint(cli, sshd: SshdServer, site: NginxSite, *extra: str, stdin: str | None = None) -> None:  # type: ignore[no-untyped-def]
    res = cli("tls", "add", "nginx", "--name", "web", "--connection_type", "ssh", "--host", sshd.host,
              "--port", str(sshd.port), "--user", sshd.user, "--ssh_key_path", str(sshd.keys["ecdsa"].path),
              "--nginx_config_path", str(site.config), *extra, stdin=stdin)
    assert res.returncode == 0, res.stderr
    for args in (("tls", "trust", "web", "--yes"), ("org", "add", "acme"), ("tls", "delegate", "web", "--org", "acme")):
        res = cli(*args)
        assert res.returncode == 0, res.stderr


def new_pair(test_ca, tmp_path: Path) -> tuple[str, Path, Path]:  # type: ignore[no-untyped-def]
    issued = test_ca.issue("alpha.test", "www.alpha.test")
    cert, key = tmp_path / "new.crt", tmp_path / "new.key"
    cert.write_bytes(issued.cert_pem + issued.chain_pem)
    key.write_bytes(issued.key_pem)
    return issued.fingerprint, cert, key


def owners_and_modes(site: NginxSite) -> dict[Path, tuple[int, int, int]]:
    return {p: (p.stat().st_uid, p.stat().st_gid, p.stat().st_mode & 0o7777)
            for p in site.prefix.rglob("*") if p.is_file() and "logs" not in p.parts and "temp" not in p.parts}


def test_nopasswd_rule_install_keeps_root_owner_and_modes(root_site, sshd: SshdServer, cli, test_ca,  # type: ignore[no-untyped-def]
                                                          tmp_path: Path) -> None:
    site, _server = root_site
    rule = f"{sshd.user} ALL=(root) NOPASSWD: {sudo_commands('nginx', *FILE_COMMANDS)}"
    with sudoers_rule(rule):
        add_endpoint(cli, sshd, site, "--sudo")
        test = cli("tls", "test", "web")
        assert test.returncode == 0, test.stdout + test.stderr
        assert "allowed by sudo -n -l" in test.stdout and "not writable by tlsgate-test: written through sudo" in test.stdout
        fingerprint, cert, key = new_pair(test_ca, tmp_path)
        before = owners_and_modes(site)
        plan = cli("tls", "install", "web", "--cert", str(cert), "--key", str(key), "--dry-run")
        assert plan.returncode == 0, plan.stderr
        assert "run            sudo " in plan.stdout and "via sudo install + mv" in plan.stdout
        res = cli("tls", "install", "web", "--cert", str(cert), "--key", str(key))
        assert res.returncode == 0, res.stdout + res.stderr
    assert try_served_fingerprint("127.0.0.1", site.tls_port, "alpha.test") == fingerprint
    after = owners_and_modes(site)
    assert {p: after[p] for p in before} == before  # every file: owner root, group and mode as they were
    assert not [p for p in site.prefix.rglob(".tlsgate-*")]


def test_command_outside_the_rule_fails_clearly_and_nothing_changes(root_site, sshd: SshdServer, cli,  # type: ignore[no-untyped-def]
                                                                    test_ca, tmp_path: Path) -> None:
    site, _server = root_site
    rule = f"{sshd.user} ALL=(root) NOPASSWD: {sudo_commands(*FILE_COMMANDS)}"  # no nginx
    with sudoers_rule(rule):
        add_endpoint(cli, sshd, site, "--sudo")
        test = cli("tls", "test", "web")
        assert test.returncode == 1 and "NOT allowed for tlsgate-test: add it to the sudoers rule" in test.stdout
        _fp, cert, key = new_pair(test_ca, tmp_path)
        before = site.snapshot()
        res = cli("tls", "install", "web", "--cert", str(cert), "--key", str(key))
    assert res.returncode == 1
    assert "sudo: a password is required for `" in res.stderr and " -t` on 127.0.0.1" in res.stderr
    assert "give --sudo_password or a NOPASSWD rule" in res.stderr
    assert site.snapshot() == before
    assert try_served_fingerprint("127.0.0.1", site.tls_port, "alpha.test") == site.certs["alpha.test"].fingerprint


def test_password_rule_with_sudo_password_on_stdin(root_site, sshd: SshdServer, cli, test_ca,  # type: ignore[no-untyped-def]
                                                   tmp_path: Path) -> None:
    site, _server = root_site
    rule = f"{sshd.user} ALL=(root) {sudo_commands('nginx', *FILE_COMMANDS)}"  # a password is asked
    seen: set[bytes] = set()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for entry in os.scandir("/proc"):
                if entry.name.isdigit():
                    try:
                        with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                            seen.add(fh.read())
                    except OSError:
                        pass

    sampler = threading.Thread(target=sample, daemon=True)
    with sudoers_rule(rule):
        add_endpoint(cli, sshd, site, "--sudo", "--sudo_password", "-", stdin=sshd.password + "\n")
        fingerprint, cert, key = new_pair(test_ca, tmp_path)
        sampler.start()
        try:
            res = cli("tls", "install", "web", "--cert", str(cert), "--key", str(key))
        finally:
            stop.set()
            sampler.join()
    assert res.returncode == 0, res.stdout + res.stderr
    assert try_served_fingerprint("127.0.0.1", site.tls_port, "alpha.test") == fingerprint
    assert len(seen) > 20 and not [c for c in seen if sshd.password.encode() in c]
    stored = b"".join(p.read_bytes() for p in cli.home.rglob("*") if p.is_file())
    assert sshd.password.encode() not in stored
    shown = cli("tls", "show", "web", "--json")
    assert sshd.password not in shown.stdout and '"sudo_password": "********"' in shown.stdout


def test_without_sudo_the_error_names_the_file_and_the_fix(root_site, sshd: SshdServer, cli, test_ca,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path) -> None:
    site, _server = root_site
    add_endpoint(cli, sshd, site)
    _fp, cert, key = new_pair(test_ca, tmp_path)
    before = site.snapshot()
    res = cli("tls", "install", "web", "--cert", str(cert), "--key", str(key))
    assert res.returncode == 1
    assert re.search(rf"permission denied (writing|creating) {re.escape(str(site.prefix))}/\S+ as tlsgate-test "
                     r"\(use --sudo, or give the group write permission\)", res.stderr), res.stderr
    assert site.snapshot() == before
