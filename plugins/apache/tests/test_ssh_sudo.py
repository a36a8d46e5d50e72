"""Apache over ssh as a non-root account with sudo, end to end through the ``tlsgate`` command:
the real sshd fixture (account ``tlsgate-test``), the real Debian sudo with a NOPASSWD rule for
exactly apachectl and the file commands (written under /etc/sudoers.d, removed after), the real
httpd running as root from a ServerRoot only root may write."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from apache_peer import ApacheServer, ApacheSite, running_apache
from tlsgate.probe import try_served_fingerprint
from tlsgate_testing.fixtures_core import world_readable_dir
from tlsgate_testing.sshd import SshdServer, readme_commands, sudoers_rule

pytestmark = pytest.mark.slow

TLSGATE = str(Path(sys.executable).with_name("tlsgate"))


@pytest.fixture
def root_site(test_ca) -> Iterator[tuple[ApacheSite, ApacheServer]]:  # type: ignore[no-untyped-def]
    """httpd (as root) in a ServerRoot the ssh account may read but not write."""
    with world_readable_dir("tlsgate-apache-root-") as base, running_apache(base / "apache", test_ca) as pair:
        yield pair


def owners_and_modes(root: Path) -> dict[Path, tuple[int, int, int]]:
    return {p: (p.stat().st_uid, p.stat().st_gid, p.stat().st_mode & 0o7777) for p in root.rglob("*")
            if p.is_file() and not p.is_symlink() and not {"logs", "run"} & set(p.parts)}


def test_nopasswd_rule_install_and_a_command_outside_it(root_site, sshd: SshdServer, test_ca,  # type: ignore[no-untyped-def]
                                                        tmp_path: Path) -> None:
    site, _server = root_site
    home = tmp_path / "user-home"
    home.mkdir()
    env = {**os.environ, "TLSGATE_HOME": str(tmp_path / "home"), "HOME": str(home)}
    env.pop("TLSGATE_MASTER_KEY", None)
    env.pop("SSH_AUTH_SOCK", None)

    def tg(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TLSGATE, *args], capture_output=True, text=True, env=env, timeout=180, check=False)

    def ok(*args: str) -> subprocess.CompletedProcess[str]:
        res = tg(*args)
        assert res.returncode == 0, f"{args}: {res.stdout}{res.stderr}"
        return res

    ok("tls", "add", "apache", "--name", "web", "--connection_type", "ssh", "--host", sshd.host,
       "--port", str(sshd.port), "--user", sshd.user, "--ssh_key_path", str(sshd.keys["ecdsa"].path),
       "--sudo", "--apachectl_path", str(site.apachectl), "--certs_dir", str(site.root / "tlsgate-certs"))
    ok("tls", "trust", "web", "--yes")
    ok("org", "add", "acme")
    ok("tls", "delegate", "web", "--org", "acme")
    issued = test_ca.issue("alpha.test", "www.alpha.test")
    cert, key = tmp_path / "new.crt", tmp_path / "new.key"
    cert.write_bytes(issued.cert_pem + issued.chain_pem)
    key.write_bytes(issued.key_pem)
    with sudoers_rule(f"{sshd.user} ALL=(root) NOPASSWD: {readme_commands('apache', without=('apachectl',))}"):
        before = site.snapshot()
        res = tg("tls", "install", "web", "--cert", str(cert), "--key", str(key))  # apachectl not allowed
        assert res.returncode == 1 and "sudo: a password is required for `" in res.stderr, res.stderr
        assert "(give --sudo_password or a NOPASSWD rule)" in res.stderr
        assert site.snapshot() == before
    # the README's rule, exactly, with the test's apachectl (its wrapper of apache2 -d ROOT)
    rule = f"{sshd.user} ALL=(root) NOPASSWD: {readme_commands('apache', replace={'apachectl': str(site.apachectl)})}"
    with sudoers_rule(rule):
        test = ok("tls", "test", "web")
        assert f"sudo {site.apachectl} -t" in test.stdout and "NOT allowed" not in test.stdout
        before_modes = owners_and_modes(site.root)
        ok("tls", "install", "web", "--cert", str(cert), "--key", str(key))
    assert try_served_fingerprint("127.0.0.1", site.tls_port, "alpha.test") == issued.fingerprint
    after = owners_and_modes(site.root)
    assert {p: after[p] for p in before_modes} == before_modes
    new_files = {p: after[p] for p in set(after) - set(before_modes)}
    assert new_files and all(uid == 0 for uid, _g, _m in new_files.values())  # written as root, via sudo
    assert any(mode == 0o600 for _u, _g, mode in new_files.values())  # the new private key
