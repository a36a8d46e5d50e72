"""Apache as Debian ships it: a throw-away copy of /etc/apache2 with ``a2ensite default-ssl``
and a snakeoil-like pair, started with Debian's apache2ctl (APACHE_CONFDIR), on 127.0.0.1 high
ports. Through the ``tlsgate`` command line, locally and over the real sshd (issue 14: pending
changes, names coverage, package-owned files).

dpkg attributes the copy's files to the apache2 package as it does the originals (the package's
own dpkg records relocated into the copy, ``DPKG_ADMINDIR``: :mod:`tlsgate_testing.dpkg`), so
``sites-available/default-ssl.conf`` is apache2's conffile here too (item 7)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tlsgate.plugin import OperationError, package_file_route
from tlsgate_testing.cli import ok, settle, tg
from tlsgate_testing.connections import LocalConnection
from tlsgate_testing.dpkg import relocated_admindir
from tlsgate_testing.fixtures_core import free_port
from tlsgate_testing.sshd import SshdServer, start_sshd, stop_sshd

pytestmark = pytest.mark.slow

ETC = Path("/etc/apache2")
APACHE2CTL = "/usr/sbin/apache2ctl"




def snakeoil(directory: Path) -> tuple[Path, Path]:
    """A self-signed RSA pair like Debian's ssl-cert snakeoil (CN = the host name)."""
    import datetime as dt

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "snakeoil.invalid")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("snakeoil.invalid")]), critical=False)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True)
    crt, pem = directory / "ssl-cert-snakeoil.pem", directory / "ssl-cert-snakeoil.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
    pem.chmod(0o600)
    return crt, pem


class Stock:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "etc" / "apache2"
        self.http, self.https = free_port(), free_port()
        self.ctl = root / "apache2ctl"
        self.dpkg = root / "dpkg"  # DPKG_ADMINDIR: apache2's records, relocated into the copy

    @property
    def enabled_ssl(self) -> Path:
        return self.conf / "sites-enabled" / "default-ssl.conf"

    @property
    def pid_file(self) -> Path:
        return self.root / "run" / "apache2.pid"

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.ctl), *args], capture_output=True, text=True, timeout=60, check=False)


def build(root: Path) -> Stock:
    s = Stock(root)
    shutil.copytree(ETC, s.conf, symlinks=True)
    for d in ("run", "lock", "log"):
        (root / d).mkdir()
    with (s.conf / "envvars").open("a") as fh:  # the package's envvars, pointed at the copy
        fh.write(f"\nexport APACHE_RUN_DIR={root}/run\nexport APACHE_PID_FILE={root}/run/apache2.pid\n"
                 f"export APACHE_LOCK_DIR={root}/lock\nexport APACHE_LOG_DIR={root}/log\n")
    ports = (s.conf / "ports.conf").read_text()
    ports = re.sub(r"(?m)^(\s*)Listen 80$", rf"\1Listen 127.0.0.1:{s.http}", ports)
    ports = re.sub(r"(?m)^(\s*)Listen 443$", rf"\1Listen 127.0.0.1:{s.https}", ports)
    (s.conf / "ports.conf").write_text(ports)
    sites = s.conf / "sites-available"
    default = (sites / "000-default.conf").read_text().replace("<VirtualHost *:80>", f"<VirtualHost 127.0.0.1:{s.http}>")
    (sites / "000-default.conf").write_text(default)
    crt, key = snakeoil(root / "ssl")
    ssl = (sites / "default-ssl.conf").read_text().replace("<VirtualHost *:443>", f"<VirtualHost 127.0.0.1:{s.https}>")
    ssl = ssl.replace("/etc/ssl/certs/ssl-cert-snakeoil.pem", str(crt)).replace(
        "/etc/ssl/private/ssl-cert-snakeoil.key", str(key))
    (sites / "default-ssl.conf").write_text(ssl)
    enabled = s.conf / "mods-enabled"
    for mod in ("ssl.load", "ssl.conf", "socache_shmcb.load"):  # a2enmod ssl
        if not (enabled / mod).exists():
            (enabled / mod).symlink_to(Path("..") / "mods-available" / mod)
    (s.conf / "sites-enabled" / "default-ssl.conf").symlink_to(Path("..") / "sites-available" / "default-ssl.conf")
    s.ctl.write_text(f'#!/bin/sh\nAPACHE_CONFDIR="{s.conf}" exec {APACHE2CTL} "$@"\n')
    s.ctl.chmod(0o755)
    relocated_admindir(s.dpkg, {"apache2": (str(ETC), s.conf)})
    return s


@pytest.fixture(scope="module")
def stock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stock]:
    if not ETC.exists() or not Path(APACHE2CTL).exists():
        pytest.fail("Debian's apache2 package is required (scripts/bootstrap.sh installs it)")
    s = build(tmp_path_factory.mktemp("stock-apache"))
    res = s.run("start")
    assert res.returncode == 0, res.stdout + res.stderr
    end = time.monotonic() + 15
    while s.pid() is None and time.monotonic() < end:
        time.sleep(0.05)
    assert s.pid() is not None
    try:
        yield s
    finally:
        pid = s.pid()
        if pid is not None:
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass


def served(port: int, sni: str | None = None) -> str | None:
    from tlsgate.probe import try_served_fingerprint

    return try_served_fingerprint("127.0.0.1", port, sni, timeout=5)



def flow(name: str, s: Stock, test_ca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    certs_dir = s.conf / "tlsgate"
    ok("org", "add", "Acme")
    ok("tls", "delegate", name, "--org", "Acme")
    nodes = json.loads(ok("tls", "discover", name, "--json").stdout)
    # 8: default-ssl has no ServerName: the default vhost of its address, not httpd's fallback name
    assert ("_default_", "https", s.https) in {(n["name"], n["protocol"], n["port"]) for n in nodes}
    # 8: a discovery error names the command that ran (not "apachectl -S"); the file is put back
    # as it was, mtime included
    ports = s.conf / "ports.conf"
    st, kept = ports.stat(), ports.read_bytes()
    ports.write_bytes(kept + b"\nNoSuchDirective here\n")
    broken = tg("tls", "discover", name)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"{s.ctl} -t -D DUMP_VHOSTS" in broken.stderr and "NoSuchDirective" in broken.stderr, broken.stderr
    assert "-S failed" not in broken.stderr
    ports.write_bytes(kept)
    os.utime(ports, ns=(st.st_atime_ns, st.st_mtime_ns))
    pid = s.pid()
    assert pid is not None
    settle()

    # 4: a leaf for another name is refused on a named node (exit 2, the uncovered name listed)
    new = test_ca.issue("stock.test")
    d = tmp_path / name
    d.mkdir()
    (d / "c.pem").write_bytes(new.cert_pem + new.chain_pem)
    (d / "k.pem").write_bytes(new.key_pem)
    files = ["--cert", str(d / "c.pem"), "--key", str(d / "k.pem")]
    site = s.conf / "sites-available" / "default-ssl.conf"
    text = site.read_text()
    site.write_text(text.replace("\tServerAdmin", "\tServerName www.stock.test\n\tServerAdmin", 1))
    assert s.run("graceful").returncode == 0
    settle()
    ok("tls", "discover", name)
    refused = tg("tls", "install", name, *files, "--node", "www.stock.test")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "www.stock.test" in refused.stderr and "--allow_name_mismatch" in refused.stderr
    before = served(s.https)

    # 1: an unrelated pending change (a Listen on a port in use: apachectl -t passes it) is refused,
    # naming the file; nothing changes and httpd keeps serving
    settle()
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    ports = s.conf / "ports.conf"
    original_ports = ports.read_bytes()
    ports.write_text(ports.read_text() + f"\nListen 127.0.0.1:{busy}\n")
    good = test_ca.issue("www.stock.test")
    (d / "c2.pem").write_bytes(good.cert_pem + good.chain_pem)
    (d / "k2.pem").write_bytes(good.key_pem)
    files2 = ["--cert", str(d / "c2.pem"), "--key", str(d / "k2.pem")]
    pending = tg("tls", "install", name, *files2, "--node", "www.stock.test")
    assert pending.returncode == 1, pending.stdout + pending.stderr
    assert str(ports) in pending.stderr and "--apply-pending" in pending.stderr
    assert len(pending.stderr.strip().splitlines()) == 1
    assert s.pid() == pid and served(s.https) == before
    ports.write_bytes(original_ports)
    taken.close()

    # the operator's harmless pending edit, applied on purpose with --apply-pending
    default = s.conf / "sites-available" / "000-default.conf"
    default.write_text(default.read_text() + "\n# reviewed by the operator\n")
    assert tg("tls", "install", name, *files2, "--node", "www.stock.test").returncode == 1
    shipped = site.read_bytes()
    done = ok("tls", "install", name, *files2, "--node", "www.stock.test", "--apply_pending")
    assert "verified" in done.stdout
    assert served(s.https) == good.fingerprint
    # 7: default-ssl.conf is apache2's conffile: left as it was; the vhost now lives in tlsgate's
    # own copy, which a2ensite's link points at (a2dissite default-ssl still disables it)
    own_site = certs_dir / "default-ssl.conf"
    assert site.read_bytes() == shipped
    assert s.enabled_ssl.is_symlink() and Path(os.readlink(s.enabled_ssl)) == own_site
    assert f"{site} belongs to the package apache2" in done.stdout and str(own_site) in done.stdout
    assert good.fingerprint[:12] in own_site.read_text() and "ServerName www.stock.test" in own_site.read_text()

    # tlsgate's own writes and the change it applied do not count as pending next time
    again = test_ca.issue("www.stock.test")
    (d / "c3.pem").write_bytes(again.cert_pem + again.chain_pem)
    (d / "k3.pem").write_bytes(again.key_pem)
    again_out = ok("tls", "install", name, "--cert", str(d / "c3.pem"), "--key", str(d / "k3.pem"),
                   "--node", "www.stock.test")
    assert served(s.https) == again.fingerprint
    assert s.pid() == pid  # graceful restarts only
    # the own copy is edited in place from now on; the package's file stays as shipped
    assert site.read_bytes() == shipped and Path(os.readlink(s.enabled_ssl)) == own_site
    assert again.fingerprint[:12] in own_site.read_text() and "belongs to the package" not in again_out.stdout
    # 6: the server's own directory (ServerRoot/tlsgate); the superseded pair is gone
    own = sorted(p.name for p in certs_dir.iterdir() if p != own_site)
    assert own and all(again.fingerprint[:12] in n for n in own), own

    # ... but someone's edit after that does
    settle()
    default.write_text(default.read_text() + "# another edit\n")
    late = tg("tls", "install", name, *files2, "--node", "www.stock.test")
    assert late.returncode == 1 and "sites-enabled/000-default.conf" in late.stderr  # as httpd names it


def test_stock_local(stock: Stock, test_ca, tlsgate_home: Path, tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DPKG_ADMINDIR", str(stock.dpkg))
    ok("tls", "add", "apache", "--name", "web", "--connection_type", "local", "--apachectl_path", str(stock.ctl))
    flow("web", stock, test_ca, tmp_path)


@pytest.fixture(scope="module")
def dpkg_sshd(stock: Stock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """The real sshd whose sessions see the copy's dpkg records (``SetEnv DPKG_ADMINDIR``)."""
    server = start_sshd(tmp_path_factory.mktemp("dpkg-sshd"), extra_config=f"SetEnv DPKG_ADMINDIR={stock.dpkg}\n")
    try:
        yield server
    finally:
        stop_sshd(server)


def test_stock_over_ssh(stock: Stock, dpkg_sshd: SshdServer, test_ca, tlsgate_home: Path, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    sshd = dpkg_sshd
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    # the local test left its edits: start from the package's files again, loaded
    site = stock.conf / "sites-available" / "default-ssl.conf"
    text = site.read_text()
    site.write_text(re.sub(r"\tServerName www\.stock\.test\n", "", text))
    stock.enabled_ssl.unlink()
    stock.enabled_ssl.symlink_to(Path("..") / "sites-available" / "default-ssl.conf")  # a2ensite's link
    shutil.rmtree(stock.conf / "tlsgate", ignore_errors=True)
    default = stock.conf / "sites-available" / "000-default.conf"
    default.write_text(default.read_text().replace("\n# reviewed by the operator\n", "").replace("# another edit\n", ""))
    stock.run("stop")
    end = time.monotonic() + 15
    while stock.pid_file.exists() and time.monotonic() < end:
        time.sleep(0.05)
    assert stock.run("start").returncode == 0
    end = time.monotonic() + 15
    while stock.pid() is None and time.monotonic() < end:
        time.sleep(0.05)
    ok("tls", "add", "apache", "--name", "web-ssh", "--connection_type", "ssh", "--host", sshd.host,
       "--port", str(sshd.port), "--user", "root", "--ssh_key_path", str(sshd.root_key.path),
       "--apachectl_path", str(stock.ctl), "--certs_dir", str(stock.conf / "tlsgate"))
    ok("tls", "trust", "web-ssh", "--yes")
    flow("web-ssh", stock, test_ca, tmp_path)


def test_packaged_file_not_reached_by_a_link_is_refused(stock: Stock, monkeypatch: pytest.MonkeyPatch) -> None:
    """7: a directive in a package's file that httpd does not read through a link tlsgate may
    repoint (RHEL's conf.d/ssl.conf, a conffile included directly) is refused with the reason."""
    monkeypatch.setenv("DPKG_ADMINDIR", str(stock.dpkg))
    packaged = stock.conf / "mods-available" / "ssl.conf"
    c = LocalConnection()
    with pytest.raises(OperationError, match=r"belongs to the package apache2 .*conffile; give the vhost"):
        package_file_route(c, str(packaged), str(stock.conf / "tlsgate"), fix="give the vhost its own file")
    # through a2enmod's link the packaged file is routed to a copy of tlsgate's own
    route = package_file_route(c, str(stock.conf / "mods-enabled" / "ssl.conf"), str(stock.root / "own"), fix="-")
    assert route is not None and route.owner == "apache2" and route.packaged == str(packaged)
    assert route.copy == str(stock.root / "own" / "ssl.conf")
    # a file no package ships: no route, nothing refused
    monkeypatch.delenv("DPKG_ADMINDIR")
    assert package_file_route(c, str(packaged), str(stock.root / "own"), fix="-") is None
