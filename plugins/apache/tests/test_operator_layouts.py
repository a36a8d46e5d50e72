"""Layouts real operators' httpd servers have, through the ``tlsgate`` command with stdout piped:
an RSA and an ECDSA pair (and a chain file) in one vhost, checked pair by pair; an
``IncludeOptional`` glob under a directory that does not exist, locally and over the real sshd."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from apache_peer import _MODULES, MODULES_DIR, apache_binary
from tlsgate.plugin import try_served_fingerprint
from tlsgate_testing.certs import Issued, TestCA
from tlsgate_testing.cli import cli_runner, tree_snapshot
from tlsgate_testing.daemons import kill_daemon, start_daemon
from tlsgate_testing.fixtures_core import free_port
from tlsgate_testing.sshd import SshdServer

pytestmark = pytest.mark.slow


def _httpd_root(tmp_path: Path, *dirs: str) -> Path:
    """A private ServerRoot under ``tmp_path`` with ``dirs`` and ``bin`` (skips without httpd)."""
    if apache_binary() is None:
        pytest.skip("apache2/httpd is not installed")
    root = tmp_path / "httpd"
    for d in (*dirs, "bin"):
        (root / d).mkdir(parents=True)
    return root


def _write_httpd(root: Path, directives: str) -> Path:
    """``root``/httpd.conf (ServerRoot, the modules, then ``directives``) and ``bin/apachectl``
    running httpd on it; returns that apachectl."""
    loads = "\n".join(f"LoadModule {m}_module {MODULES_DIR}/mod_{m}.so" for m in _MODULES)
    (root / "httpd.conf").write_text(f'ServerRoot "{root}"\n{loads}\n{directives}')
    ctl = root / "bin" / "apachectl"
    ctl.write_text(f'#!/bin/sh\nexec "{apache_binary()}" -d "{root}" -f "{root}/httpd.conf" "$@"\n')
    ctl.chmod(0o755)
    return ctl



@attrs.frozen
class Site:
    root: Path
    ctl: Path
    tls: int
    certs: dict[str, Issued]

    def snapshot(self) -> dict[Path, bytes]:
        return tree_snapshot(self.root, skip=("logs", "run"))


@pytest.fixture
def site(tmp_path: Path, test_ca: TestCA) -> Iterator[Site]:
    root = _httpd_root(tmp_path, "run", "logs", "sites", "tls certs")
    tls = free_port()
    certs = {"rsa": test_ca.issue("dual.test", key_type="rsa"), "ec": test_ca.issue("dual.test")}
    for kind, issued in certs.items():
        (root / "tls certs" / f"dual-{kind}.crt").write_bytes(issued.cert_pem)
        (root / "tls certs" / f"dual-{kind}.key").write_bytes(issued.key_pem)
    (root / "tls certs" / "chain.pem").write_bytes(certs["ec"].chain_pem)
    ctl = _write_httpd(root, f"""PidFile run/httpd.pid
Mutex file:{root / 'run'} default
ErrorLog logs/error.log
LogLevel warn
ServerName localhost
User nobody
Group nogroup
Listen 127.0.0.1:{tls} https
SSLSessionCache shmcb:{root / 'run' / 'scache'}(512000)
IncludeOptional sites/*.conf
# a package's optional directory that this host does not have
IncludeOptional conf-extra.d/*.conf
""")
    (root / "sites" / "dual.conf").write_text(f"""<VirtualHost 127.0.0.1:{tls}>
    ServerName dual.test
    SSLEngine on
    # an RSA pair for old clients, an ECDSA pair for the rest, one chain file
    SSLCertificateFile "tls certs/dual-rsa.crt"
    SSLCertificateKeyFile "tls certs/dual-rsa.key"
    SSLCertificateFile "tls certs/dual-ec.crt"
    SSLCertificateKeyFile "tls certs/dual-ec.key"
    SSLCertificateChainFile "tls certs/chain.pem"
</VirtualHost>
""")
    start_daemon([str(ctl), "-k", "start"], "httpd", [tls], pid_file=root / "run" / "httpd.pid")
    try:
        yield Site(root, ctl, tls, certs)
    finally:
        kill_daemon(root / "run" / "httpd.pid")


@pytest.fixture
def cli(tmp_path: Path):
    return cli_runner(tmp_path, timeout=180)


def test_rsa_and_ecdsa_pairs_in_one_vhost(site: Site, cli, test_ca: TestCA, tmp_path: Path) -> None:
    assert cli("tls", "add", "apache", "--name", "web", "--connection_type", "local",
               "--apachectl_path", str(site.ctl)).returncode == 0
    assert cli("org", "add", "acme").returncode == 0
    assert cli("tls", "delegate", "web", "--org", "acme").returncode == 0
    assert cli("tls", "discover", "web").returncode == 0
    nodes = json.loads(cli("tls", "nodes", "web", "--json").stdout)
    assert [n["fingerprint"] for n in nodes] == [site.certs["rsa"].fingerprint]
    assert "pending" not in nodes[0]["state"] and "2 certificate pairs" in nodes[0]["state"]
    current = {kind: issued.fingerprint for kind, issued in site.certs.items()}
    # as with public CAs, the RSA and the ECDSA certificate come from different intermediates
    issuers = {"rsa": TestCA("Other RSA", key_type="rsa"), "ec": test_ca}
    for kind in ("rsa", "ec"):
        new = issuers[kind].issue("dual.test", key_type=kind)
        crt, key, chain = new.write(tmp_path / f"in-{kind}", "new")
        before = site.snapshot()
        done = cli("tls", "install", "web", "--cert", str(crt), "--key", str(key), "--chain", str(chain))
        assert done.returncode == 0, done.stderr
        assert "verified" in done.stdout
        current[kind] = new.fingerprint
        # that pair replaced, the other one untouched and still served
        assert {k: try_served_fingerprint("127.0.0.1", site.tls, "dual.test", key_kind=k) for k in current} == current
        after = site.snapshot()
        assert sorted(p.name for p in before if p in after and before[p] != after[p]) == ["dual.conf"]
    text = (site.root / "sites" / "dual.conf").read_text()
    assert text.count("SSLCertificateFile ") == 2
    # the one chain file both pairs shared is left alone (each new certificate file holds its own
    # chain, which is sent for that pair): pointing it at one pair's chain would break the other's
    assert 'SSLCertificateChainFile "tls certs/chain.pem"' in text
    for kind, cipher in (("rsa", "aRSA"), ("ec", "aECDSA")):
        shown = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{site.tls}", "-servername", "dual.test",
                                "-tls1_2", "-cipher", cipher, "-showcerts"], input="", capture_output=True, text=True,
                               timeout=30, check=False).stdout
        assert f"{'Other RSA' if kind == 'rsa' else 'tlsgate Test'} Intermediate CA" in shown.split("Server certificate")[0]
    checked = cli("tls", "verify", "--endpoint", "web", "--json")
    assert checked.returncode == 0, checked.stdout


def test_include_optional_under_a_missing_directory_over_ssh(site: Site, cli, sshd: SshdServer) -> None:
    assert cli("tls", "add", "apache", "--name", "web-ssh", "--connection_type", "ssh", "--host", sshd.host,
               "--port", str(sshd.port), "--user", "root", "--ssh_key_path", str(sshd.root_key.path),
               "--apachectl_path", str(site.ctl)).returncode == 0
    assert cli("tls", "trust", "web-ssh", "--yes").returncode == 0
    assert cli("org", "add", "acme").returncode == 0
    assert cli("tls", "delegate", "web-ssh", "--org", "acme").returncode == 0
    found = cli("tls", "discover", "web-ssh")
    assert found.returncode == 0, found.stderr
    nodes = json.loads(cli("tls", "nodes", "web-ssh", "--json").stdout)
    assert [(n["name"], n["port"], n["fingerprint"]) for n in nodes] == [
        ("dual.test", site.tls, site.certs["rsa"].fingerprint)]


def test_vhost_inheriting_two_server_level_pairs(site: Site, cli) -> None:
    with (site.root / "httpd.conf").open("a") as conf:
        conf.write('SSLCertificateFile "tls certs/dual-rsa.crt"\nSSLCertificateKeyFile "tls certs/dual-rsa.key"\n'
                   'SSLCertificateFile "tls certs/dual-ec.crt"\nSSLCertificateKeyFile "tls certs/dual-ec.key"\n')
    (site.root / "sites" / "inherit.conf").write_text(
        f"<VirtualHost 127.0.0.1:{site.tls}>\n    ServerName inherit.test\n    SSLEngine on\n</VirtualHost>\n")
    restarted = subprocess.run([str(site.ctl), "-k", "graceful"], capture_output=True, text=True, check=False)
    assert restarted.returncode == 0, restarted.stderr
    deadline = time.monotonic() + 10
    while try_served_fingerprint("127.0.0.1", site.tls, "inherit.test", key_kind="rsa") != site.certs["rsa"].fingerprint:
        assert time.monotonic() < deadline, "httpd did not take the new configuration"
        time.sleep(0.1)
    assert cli("tls", "add", "apache", "--name", "web", "--connection_type", "local",
               "--apachectl_path", str(site.ctl)).returncode == 0
    assert cli("org", "add", "acme").returncode == 0
    assert cli("tls", "delegate", "web", "--org", "acme").returncode == 0
    assert cli("tls", "discover", "web").returncode == 0
    nodes = {n["name"]: n for n in json.loads(cli("tls", "nodes", "web", "--json").stdout)}
    inherit = nodes["inherit.test"]
    assert inherit["fingerprint"] == site.certs["rsa"].fingerprint
    assert "pending" not in inherit["state"] and "2 certificate pairs" in inherit["state"], inherit["state"]


def test_server_alias_of_a_vhost_alone_on_its_address(tmp_path: Path, cli, test_ca: TestCA) -> None:
    """httpd's vhost dump lists a vhost's aliases only on an address several vhosts share: the
    ServerAlias of a vhost alone on its address (``*:443``, ``[::1]:443``) is a name it answers
    all the same, shown as its Alias and checked against the certificate before an install."""
    root = _httpd_root(tmp_path, "run", "logs", "sites")
    port, port6 = free_port(), free_port()
    old = test_ca.issue("solo.test", "alt.solo.test")
    (root / "solo.crt").write_bytes(old.cert_pem)
    (root / "solo.key").write_bytes(old.key_pem)
    ctl = _write_httpd(root, f"""PidFile run/httpd.pid
ErrorLog logs/error.log
ServerName localhost
Listen 127.0.0.1:{port} https
Listen [::1]:{port6} https
Define ALT alt.solo.test
IncludeOptional sites/*.conf
""")
    (root / "sites" / "solo.conf").write_text(f"""<VirtualHost *:{port} [::1]:{port6}>
    ServerName solo.test
    ServerAlias ${{ALT}}
    SSLEngine on
    SSLCertificateFile solo.crt
    SSLCertificateKeyFile solo.key
</VirtualHost>
""")
    assert cli("tls", "add", "apache", "--name", "solo", "--connection_type", "local",
               "--apachectl_path", str(ctl)).returncode == 0
    assert cli("org", "add", "acme").returncode == 0
    assert cli("tls", "delegate", "solo", "--org", "acme").returncode == 0
    assert cli("tls", "discover", "solo").returncode == 0
    nodes = json.loads(cli("tls", "nodes", "solo", "--json").stdout)
    assert sorted((n["ip"], n["port"], n["alias"]) for n in nodes) == [
        ("*", port, ["alt.solo.test"]), ("::1", port6, ["alt.solo.test"])]
    crt, key, _ = test_ca.issue("solo.test").write(tmp_path / "in", "new")
    refused = cli("tls", "install", "solo", "--cert", str(crt), "--key", str(key), "--node", "solo.test", "--dry-run")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "alt.solo.test" in refused.stderr


def test_a_star_vhost_beside_an_address_specific_one_on_its_port(tmp_path: Path, cli, test_ca: TestCA) -> None:
    """``<VirtualHost *:P>`` and ``<VirtualHost 127.0.0.1:P>`` on one ``Listen P``: httpd answers
    127.0.0.1 with the address-specific vhost (the most specific address wins), so the ``*``
    vhost was probed at 127.0.0.1, reported as serving "a certificate other than its files", and
    an install on it failed its verification and rolled back. It is probed where httpd serves it
    (another loopback address), and an install on it is verified there."""
    root = _httpd_root(tmp_path, "run", "logs", "sites")
    port = free_port()
    certs = {"star": test_ca.issue("star.test"), "ip": test_ca.issue("ip.test")}
    for name, issued in certs.items():
        (root / f"{name}.crt").write_bytes(issued.cert_pem)
        (root / f"{name}.key").write_bytes(issued.key_pem)
    ctl = _write_httpd(root, f"""PidFile run/httpd.pid
Mutex file:{root / 'run'} default
ErrorLog logs/error.log
ServerName localhost
User nobody
Group nogroup
Listen 127.0.0.1:{port} https
Listen 127.0.0.2:{port} https
IncludeOptional sites/*.conf
""")
    (root / "sites" / "a-ip.conf").write_text(f"""<VirtualHost 127.0.0.1:{port}>
    ServerName ip.test
    SSLEngine on
    SSLCertificateFile ip.crt
    SSLCertificateKeyFile ip.key
</VirtualHost>
""")
    (root / "sites" / "b-star.conf").write_text(f"""<VirtualHost *:{port}>
    ServerName star.test
    SSLEngine on
    SSLCertificateFile star.crt
    SSLCertificateKeyFile star.key
</VirtualHost>
""")
    start_daemon([str(ctl), "-k", "start"], "httpd", [port], pid_file=root / "run" / "httpd.pid")
    try:
        assert cli("tls", "add", "apache", "--name", "mixed", "--connection_type", "local",
                   "--apachectl_path", str(ctl)).returncode == 0
        assert cli("org", "add", "acme").returncode == 0
        assert cli("tls", "delegate", "mixed", "--org", "acme").returncode == 0
        assert cli("tls", "discover", "mixed").returncode == 0
        nodes = {n["name"]: n for n in json.loads(cli("tls", "nodes", "mixed", "--json").stdout)}
        assert nodes["star.test"]["fingerprint"] == certs["star"].fingerprint
        assert "other than" not in nodes["star.test"]["state"], nodes["star.test"]
        assert "other than" not in nodes["ip.test"]["state"], nodes["ip.test"]
        new = test_ca.issue("star.test")
        crt, key, _ = new.write(tmp_path / "in", "new")
        done = cli("tls", "install", "mixed", "--cert", str(crt), "--key", str(key), "--node", "star.test")
        assert done.returncode == 0, done.stdout + done.stderr
        assert try_served_fingerprint("127.0.0.2", port, "star.test") == new.fingerprint
        assert try_served_fingerprint("127.0.0.1", port, "ip.test") == certs["ip"].fingerprint
        verified = cli("tls", "verify", "mixed")  # exit 0: every node serves what the inventory says
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        kill_daemon(root / "run" / "httpd.pid")
