"""A real Apache httpd 2.4 for tests (fixture ``apache_server``).

:func:`apache_site` writes a private server root (never /etc/apache2): ``httpd.conf`` with
absolute ``LoadModule`` paths, ``PidFile``, ``Mutex file:``, ``SSLSessionCache shmcb:`` and the
error log inside the root; vhosts spread over Include files (a glob, a directory name with a
space, a relative path against ServerRoot, an ``<IfModule>`` around an Include), SNI names, plain
http and https on 127.0.0.1 free ports, IPv6 loopback where the host has it, comments and line
continuations. It also writes ``bin/apachectl``, a small wrapper around ``apache2 -d ROOT -f
CONF "$@"``: that is what an endpoint's ``--apachectl_path`` points to, as Debian's
``apache2ctl`` would on a real host. :class:`ApacheServer` starts and stops it (by its PidFile).
Tests that cannot find ``apache2`` (or ``httpd``) are skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from tlsgate_testing.certs import Issued, TestCA
from tlsgate_testing.daemons import kill_daemon, process_alive, read_pid, running, start_daemon
from tlsgate_testing.fixtures_core import free_port

APACHE_BINARY = os.environ.get("TLSGATE_TEST_APACHE", "/usr/sbin/apache2")
MODULES_DIR = os.environ.get("TLSGATE_TEST_APACHE_MODULES", "/usr/lib/apache2/modules")
DEBIAN_APACHE2CTL = "/usr/sbin/apache2ctl"


def apache_binary() -> str | None:
    """The httpd binary the tests use, or None when it is not installed."""
    if os.access(APACHE_BINARY, os.X_OK):
        return APACHE_BINARY
    return shutil.which("apache2") or shutil.which("httpd")


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


@attrs.frozen
class ApacheSite:
    """What :func:`apache_site` wrote: paths, ports and the certificate of each name."""

    root: Path
    config: Path
    apachectl: Path
    http_port: int
    tls_port: int
    tls_port2: int
    ipv6_port: int | None
    certs: dict[str, Issued]

    @property
    def pid_file(self) -> Path:
        return self.root / "run" / "httpd.pid"

    @property
    def error_log(self) -> Path:
        return self.root / "logs" / "error.log"

    @property
    def ports(self) -> list[int]:
        return [self.http_port, self.tls_port, self.tls_port2]

    def snapshot(self) -> dict[Path, bytes]:
        """Every file under the root except logs and run state (to prove nothing changed)."""
        skip = {self.root / "logs", self.root / "run"}
        return {
            p: p.read_bytes()
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and not any(s in p.parents for s in skip)
        }


_MODULES = ("mpm_event", "authz_core", "socache_shmcb", "ssl", "alias")


def _main_conf(root: Path, site_ports: tuple[int, int, int], ipv6_port: int | None) -> str:
    http, tls, tls2 = site_ports
    loads = "\n".join(f"LoadModule {m}_module {MODULES_DIR}/mod_{m}.so" for m in _MODULES)
    listen6 = f"\nListen [::1]:{ipv6_port} https" if ipv6_port else ""
    return f"""# tlsgate test httpd (generated): private root, loopback high ports
ServerRoot "{root}"
{loads}

PidFile run/httpd.pid
Mutex file:{root / 'run'} default
ErrorLog logs/error.log
LogLevel warn
ServerName localhost
User nobody
Group nogroup

Listen 127.0.0.1:{http}
Listen 127.0.0.1:{tls} https
Listen 127.0.0.1:{tls2} https{listen6}

<IfModule ssl_module>
    SSLSessionCache shmcb:{root / 'run' / 'scache'}(512000)
    SSLRandomSeed startup builtin
    # every https vhost without its own pair uses this one
    SSLCertificateFile certs/fallback.crt
    SSLCertificateKeyFile certs/fallback.key
</IfModule>

<IfModule no_such_module>
    Include does-not-exist/*.conf
</IfModule>

# sites: a glob, then a directory with a space in its name
IncludeOptional conf.d/*.conf
Include "sites enabled/*.conf"
"""


def apache_site(root: Path, ca: TestCA) -> ApacheSite:
    """Write the fixture configuration under ``root`` (the ServerRoot).

    Layout (ports are free ports, shown as HTTP, TLS, TLS2, TLS6)::

        httpd.conf                  server-level SSLCertificateFile certs/fallback.crt (inherited)
        conf.d/00-plain.conf        plain.test          127.0.0.1:HTTP (http)
        conf.d/10-alpha.conf        alpha.test, alias www.alpha.test   127.0.0.1:TLS (first: default)
        conf.d/20-beta.conf         beta.test           127.0.0.1:TLS, quoted paths, continuation,
                                                         SSLCertificateChainFile
        conf.d/README               not included (no .conf)
        sites enabled/gamma.conf    gamma.test          127.0.0.1:TLS and 127.0.0.1:TLS2, inherits
                                                         the server-level pair; a symlink to
                                                         ../sites available/gamma.conf (a2ensite)
        sites enabled/ipv6.conf     six.test            [::1]:TLS6 (only when ::1 is available)
        bin/apachectl               exec apache2 -d ROOT -f ROOT/httpd.conf "$@"
        bin/apache2ctl              Debian's /usr/sbin/apache2ctl with APACHE_CONFDIR=ROOT (sources
                                    ROOT/envvars; apache2 reads ROOT/apache2.conf: Include httpd.conf)
    """
    root.mkdir(parents=True, exist_ok=True)
    for d in ("run", "logs", "conf.d", "sites enabled", "certs", "bin", "htdocs"):
        (root / d).mkdir(exist_ok=True)
    http, tls, tls2 = _free_ports(3)
    ipv6_port = None
    if has_ipv6_loopback():
        ipv6_port = free_port()
        while ipv6_port in (http, tls, tls2):
            ipv6_port = free_port()
    issued = {
        "alpha.test": ca.issue("alpha.test", "www.alpha.test"),
        "beta.test": ca.issue("beta.test"),
        "fallback": ca.issue("gamma.test", "six.test", cn="fallback"),
    }
    for name, cert in issued.items():
        (root / "certs" / f"{name}.crt").write_bytes(cert.cert_pem + (b"" if name == "beta.test" else cert.chain_pem))
        key = root / "certs" / f"{name}.key"
        key.touch(mode=0o600)
        key.write_bytes(cert.key_pem)
    (root / "certs" / "beta chain.pem").write_bytes(issued["beta.test"].chain_pem)
    (root / "httpd.conf").write_text(_main_conf(root, (http, tls, tls2), ipv6_port))
    (root / "conf.d" / "00-plain.conf").write_text(
        f"""# plain http only
<VirtualHost 127.0.0.1:{http}>
    ServerName plain.test
    DocumentRoot htdocs
</VirtualHost>
"""
    )
    (root / "conf.d" / "10-alpha.conf").write_text(
        f"""<VirtualHost 127.0.0.1:{tls}>
    # the first vhost on this address: the default for unknown SNI names
    ServerName alpha.test
    ServerAlias www.alpha.test
    SSLEngine on
    SSLCertificateFile    certs/alpha.test.crt
    SSLCertificateKeyFile certs/alpha.test.key
</VirtualHost>
"""
    )
    (root / "conf.d" / "20-beta.conf").write_text(
        f"""<VirtualHost 127.0.0.1:{tls}>
\tServerName beta.test
\t# quoted absolute paths, tabs, a continued line, a chain file
\t<IfModule ssl_module>
\t\tSSLEngine On
\t\tSSLCertificateFile   "{root}/certs/beta.test.crt"
\t\tSSLCertificateKeyFile \\
\t\t    '{root}/certs/beta.test.key'
\t\tSSLCertificateChainFile "certs/beta chain.pem"
\t</IfModule>
</VirtualHost>
"""
    )
    (root / "conf.d" / "README").write_text("not a config file: IncludeOptional conf.d/*.conf skips it\n")
    # Debian's a2ensite layout: the enabled site is a symlink to the available one
    (root / "sites available").mkdir(exist_ok=True)
    (root / "sites enabled" / "gamma.conf").symlink_to(Path("..") / "sites available" / "gamma.conf")
    (root / "sites available" / "gamma.conf").write_text(
        f"""<VirtualHost 127.0.0.1:{tls} 127.0.0.1:{tls2}>
    ServerName gamma.test
    SSLEngine on
    # no pair of its own: inherits the server-level one
</VirtualHost>
"""
    )
    if ipv6_port:
        (root / "sites enabled" / "ipv6.conf").write_text(
            f"""<VirtualHost [::1]:{ipv6_port}>
    ServerName six.test
    SSLEngine on
</VirtualHost>
"""
        )
    binary = apache_binary() or APACHE_BINARY
    ctl = root / "bin" / "apachectl"
    ctl.write_text(f'#!/bin/sh\nexec "{binary}" -d "{root}" -f "{root}/httpd.conf" "$@"\n')
    ctl.chmod(0o755)
    # Debian's own apache2ctl, pointed at this root the supported way (APACHE_CONFDIR): it sources
    # ROOT/envvars and runs apache2 -d ROOT, which reads ROOT/apache2.conf.
    (root / "apache2.conf").write_text("# Debian layout entry point\nInclude httpd.conf\n")
    (root / "envvars").write_text(
        f"export APACHE_RUN_USER=nobody\nexport APACHE_RUN_GROUP=nogroup\n"
        f"export APACHE_RUN_DIR={root}/run\nexport APACHE_LOCK_DIR={root}/run\nexport APACHE_LOG_DIR={root}/logs\n"
        f"export APACHE_HTTPD={binary}\n"
    )
    debian = root / "bin" / "apache2ctl"
    debian.write_text(f'#!/bin/sh\nAPACHE_CONFDIR="{root}" exec {DEBIAN_APACHE2CTL} "$@"\n')
    debian.chmod(0o755)
    return ApacheSite(
        root=root,
        config=root / "httpd.conf",
        apachectl=ctl,
        http_port=http,
        tls_port=tls,
        tls_port2=tls2,
        ipv6_port=ipv6_port,
        certs=issued,
    )


class ApacheServer:
    """A running httpd on an :class:`ApacheSite`."""

    def __init__(self, site: ApacheSite) -> None:
        self.site = site

    @property
    def pid(self) -> int | None:
        return read_pid(self.site.pid_file)

    @property
    def alive(self) -> bool:
        pid = self.pid
        return pid is not None and process_alive(pid)

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.site.apachectl), *args], capture_output=True, text=True, timeout=60,
                              check=False)

    def start(self) -> None:
        start_daemon([str(self.site.apachectl), "-k", "start"], "httpd", self.site.ports, pid_file=self.site.pid_file)

    def stop(self) -> None:
        """Kill this instance's parent and its children (found from its own PidFile)."""
        kill_daemon(self.site.pid_file)


@pytest.fixture
def apache_server(tmp_path: Path, test_ca: TestCA) -> Iterator[tuple[ApacheSite, ApacheServer]]:
    """A real httpd on :func:`apache_site`'s configuration; stopped (by its PidFile) at teardown."""
    with running_apache(tmp_path / "apache", test_ca) as pair:
        yield pair


@contextlib.contextmanager
def running_apache(root: Path, ca: TestCA) -> Iterator[tuple[ApacheSite, ApacheServer]]:
    """:func:`apache_site` under ``root``, started; stopped when the block ends."""
    if apache_binary() is None:
        pytest.skip("apache2/httpd is not installed")
    site = apache_site(root, ca)
    with running(ApacheServer(site)) as server:
        yield site, server
