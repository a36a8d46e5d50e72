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
from hypothesis import given, settings
from hypothesis import strategies as st
from nginx_peer import NginxServer, NginxSite, running_nginx
from tlsgate.probe import try_served_fingerprint
from tlsgate_nginx.plugin import SERVICE_UNIT
from tlsgate_testing.fixtures_core import world_readable_dir
from tlsgate_testing.sshd import SshdServer, readme_commands, sudoers_rule

pytestmark = pytest.mark.slow

TLSGATE = str(Path(sys.executable).with_name("tlsgate"))


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


def mtimes(site: NginxSite) -> dict[Path, int]:
    """Whole seconds: what SFTP (v3) and ``stat -c %Y`` tell tlsgate, so what it can restore."""
    return {p: int(p.stat().st_mtime) for p in site.snapshot()}


def owners_and_modes(site: NginxSite) -> dict[Path, tuple[int, int, int]]:
    return {p: (p.stat().st_uid, p.stat().st_gid, p.stat().st_mode & 0o7777)
            for p in site.prefix.rglob("*") if p.is_file() and "logs" not in p.parts and "temp" not in p.parts}


def test_nopasswd_rule_install_keeps_root_owner_and_modes(root_site, sshd: SshdServer, cli, test_ca,  # type: ignore[no-untyped-def]
                                                          tmp_path: Path) -> None:
    site, _server = root_site
    rule = f"{sshd.user} ALL=(root) NOPASSWD: {readme_commands('nginx')}"  # the README's rule, exactly
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
    rule = f"{sshd.user} ALL=(root) NOPASSWD: {readme_commands('nginx', without=('nginx',))}"  # no nginx
    with sudoers_rule(rule):
        add_endpoint(cli, sshd, site, "--sudo")
        test = cli("tls", "test", "web")
        assert test.returncode == 1 and "NOT allowed for tlsgate-test: add it to the sudoers rule" in test.stdout
        _fp, cert, key = new_pair(test_ca, tmp_path)
        before, times = site.snapshot(), mtimes(site)
        res = cli("tls", "install", "web", "--cert", str(cert), "--key", str(key))
    assert res.returncode == 1
    assert "sudo: a password is required for `" in res.stderr and " -t` on 127.0.0.1" in res.stderr
    assert "give --sudo_password or a NOPASSWD rule" in res.stderr
    assert "every change was restored" in res.stderr
    assert site.snapshot() == before and mtimes(site) == times  # the root-owned files' times too
    assert try_served_fingerprint("127.0.0.1", site.tls_port, "alpha.test") == site.certs["alpha.test"].fingerprint


def test_password_rule_with_sudo_password_on_stdin(root_site, sshd: SshdServer, cli, test_ca,  # type: ignore[no-untyped-def]
                                                   tmp_path: Path) -> None:
    site, _server = root_site
    rule = f"{sshd.user} ALL=(root) {readme_commands('nginx')}"  # the README's commands; a password is asked
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


# What is stood in, and why: no systemd runs on the test machine (nor in CI containers), so there
# is no real `systemctl`. The test writes an executable named `systemctl` in a root-owned
# directory and puts that directory first on the account's sudo secure_path (a `Defaults:`
# line of the test's own rule file, removed after), so `sudo -n -- systemctl reload nginx.service`
# resolves to it exactly as it would to /usr/bin/systemctl. It logs its uid, its argv and its
# parent's argv (sudo's own), then does what Debian's nginx.service ExecReload (`nginx -s reload`)
# does: SIGHUP to the master named by the test nginx's pid file. Everything else is real: sshd,
# sudo and its rule matching, nginx and its reload.
STAND_IN_SYSTEMCTL = """#!/bin/sh
{{ id -u; printf '%s\\n' "$*"; tr '\\0' ' ' < /proc/$PPID/cmdline; echo; }} >> {log}
[ "$*" = "reload nginx.service" ] || {{ echo "stand-in systemctl: only reload nginx.service" >&2; exit 1; }}
exec kill -HUP "$(cat {pid_file})"
"""


def test_systemctl_reload_of_the_named_unit_runs_under_sudo(root_site, sshd: SshdServer, cli, test_ca,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path) -> None:
    import shlex

    site, _server = root_site
    with world_readable_dir("tlsgate-systemctl-") as bindir:
        log = bindir / "calls.log"
        stand_in = bindir / "systemctl"
        stand_in.write_text(STAND_IN_SYSTEMCTL.format(log=shlex.quote(str(log)),
                                                      pid_file=shlex.quote(str(site.pid_file))))
        stand_in.chmod(0o755)
        secure_path = f"{bindir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        rule = (f"{sshd.user} ALL=(root) NOPASSWD: {stand_in} reload nginx.service, "
                f"{readme_commands('nginx')}")  # the README's nginx rule, systemd form
        with sudoers_rule(f'Defaults:{sshd.user} secure_path="{secure_path}"', rule):
            add_endpoint(cli, sshd, site, "--sudo", "--nginx_service", "nginx.service")
            test = cli("tls", "test", "web")
            assert "[ok] sudo systemctl reload nginx.service: allowed by sudo -n -l" in test.stdout, test.stdout
            fingerprint, cert, key = new_pair(test_ca, tmp_path)
            res = cli("tls", "install", "web", "--cert", str(cert), "--key", str(key))
            assert res.returncode == 0, res.stdout + res.stderr
        assert try_served_fingerprint("127.0.0.1", site.tls_port, "alpha.test") == fingerprint
        uid, argv, parent = log.read_text().splitlines()
    assert (uid, argv) == ("0", "reload nginx.service")  # as root, the unit the endpoint names
    assert parent.split() == ["sudo", "-n", "--", "systemctl", "reload", "nginx.service"]


def test_nginx_service_must_be_a_unit_name(cli) -> None:  # type: ignore[no-untyped-def]
    res = cli("tls", "add", "nginx", "--name", "w", "--connection_type", "local",
              "--nginx_config_path", "/etc/nginx/nginx.conf", "--nginx_service", "-nginx.service")
    assert res.returncode == 2 and "--nginx_service" in res.stderr and "Traceback" not in res.stderr


@settings(max_examples=200, deadline=None)
@given(st.text("aZ09:_.@\\-" + " '\"$;|`\n\t/=*é", max_size=20).map(lambda s: s + ".service") | st.text(max_size=30))
def test_an_accepted_unit_is_one_plain_systemctl_argument(value: str) -> None:
    if SERVICE_UNIT.fullmatch(value):
        assert value.endswith(".service") and not value.startswith("-") and value.isascii()
        assert not any(c.isspace() or not c.isprintable() or c in "'\"$`;|&<>()*?[]~=/" for c in value)
