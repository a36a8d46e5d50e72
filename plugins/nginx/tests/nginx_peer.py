"""A real nginx for tests, and the configuration generator the benchmark shares.

:func:`nginx_site` writes a private prefix (main file, glob includes across two directories, a
path with a space, comments, quoting, relative certificate paths, one block that inherits its
certificate from ``http``, plain http and SNI https on 127.0.0.1 free ports);
:class:`NginxServer` starts the Debian ``nginx`` binary on it (``-p``/``-c``/``-e``, never
touching /etc or /var) and stops it by its pid file. The ``nginx_server`` fixture does both and
stops it at teardown. Tests that cannot find ``nginx`` are skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import pytest
from tlsgate_testing.certs import Issued, TestCA
from tlsgate_testing.daemons import children, kill_daemon, read_pid, running, start_daemon
from tlsgate_testing.fixtures_core import free_port

NGINX_BINARY = os.environ.get("TLSGATE_TEST_NGINX", "/usr/sbin/nginx")


def nginx_binary() -> str | None:
    """The nginx binary the tests use, or None when it is not installed."""
    if os.access(NGINX_BINARY, os.X_OK):
        return NGINX_BINARY
    return shutil.which("nginx")


def _main_conf(prefix: Path, body: str) -> str:
    logs = prefix / "logs"
    temps = "\n".join(
        f"    {d}_temp_path {prefix / 'temp' / d};" for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""# tlsgate test nginx (generated)
worker_processes 1;
pid {logs / 'nginx.pid'};
error_log {logs / 'error.log'} warn;

events {{
    worker_connections 64;
}}

http {{
    access_log off;
{temps}
{body}
}}
"""


@attrs.frozen
class NginxSite:
    """What :func:`nginx_site` wrote: paths, ports and the certificate of each name."""

    prefix: Path
    config: Path
    http_port: int
    tls_port: int
    tls_port2: int
    certs: dict[str, Issued]

    @property
    def pid_file(self) -> Path:
        return self.prefix / "logs" / "nginx.pid"

    def config_files(self) -> list[Path]:
        """Every configuration file (not certificates or logs), sorted."""
        return sorted(p for p in self.prefix.rglob("*.conf") if p.is_file())

    def snapshot(self) -> dict[Path, bytes]:
        """Every file under the prefix except logs and temp (to prove nothing changed)."""
        skip = {self.prefix / "logs", self.prefix / "temp"}
        return {
            p: p.read_bytes()
            for p in sorted(self.prefix.rglob("*"))
            if p.is_file() and not any(s in p.parents for s in skip)
        }


def nginx_site(root: Path, ca: TestCA) -> NginxSite:
    """Write the fixture configuration under ``root`` (the nginx prefix).

    Layout (ports are free ports, shown as HTTP, TLS, TLS2)::

        nginx.conf                 http { ssl_certificate certs/fallback...; include conf.d/*.conf;
                                          include "sites enabled/*.conf"; }
        conf.d/00-plain.conf       plain.test             listen 127.0.0.1:HTTP (http)
        conf.d/10-alpha.conf       alpha.test www.alpha.test   listen 127.0.0.1:TLS ssl default_server
        conf.d/20-beta.conf        beta.test              listen 127.0.0.1:TLS ssl http2 (quoted paths)
        sites enabled/gamma.conf   gamma.test             TLS and TLS2, inherits the http certificate
        conf.d/README              not included (no .conf)
    """
    root.mkdir(parents=True, exist_ok=True)
    for d in ("logs", "conf.d", "sites enabled", "certs", *(f"temp/{t}" for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))):
        (root / d).mkdir(parents=True, exist_ok=True)
    http_port, tls_port, tls_port2 = free_port(), free_port(), free_port()
    while len({http_port, tls_port, tls_port2}) < 3:
        tls_port2 = free_port()
    issued = {
        "alpha.test": ca.issue("alpha.test", "www.alpha.test"),
        "beta.test": ca.issue("beta.test"),
        "fallback": ca.issue("gamma.test", cn="fallback"),
    }
    for name, cert in issued.items():
        (root / "certs" / f"{name}.crt").write_bytes(cert.cert_pem + cert.chain_pem)
        key = root / "certs" / f"{name}.key"
        key.touch(mode=0o600)
        key.write_bytes(cert.key_pem)
    body = """
    # every server without its own certificate uses this pair
    ssl_certificate     certs/fallback.crt;
    ssl_certificate_key certs/fallback.key;
    ssl_session_cache   off;

    include conf.d/*.conf;
    include "sites enabled/*.conf";
"""
    (root / "nginx.conf").write_text(_main_conf(root, body))
    (root / "conf.d" / "00-plain.conf").write_text(
        f"""# plain http only
server {{
    listen 127.0.0.1:{http_port};
    server_name plain.test;
    location / {{ return 200 "plain\\n"; }}
}}
"""
    )
    (root / "conf.d" / "10-alpha.conf").write_text(
        f"""server {{
    listen      127.0.0.1:{tls_port} ssl default_server;   # the default on this port
    server_name alpha.test www.alpha.test;

    ssl_certificate     certs/alpha.test.crt;
    ssl_certificate_key certs/alpha.test.key;

    location / {{
        return 200 'alpha {{ ; }} # not a comment';
    }}
}}
"""
    )
    (root / "conf.d" / "20-beta.conf").write_text(
        f"""server {{
	listen 127.0.0.1:{tls_port}   ssl http2;
	server_name "beta.test";
	# quoted paths, tabs, a trailing comment
	ssl_certificate   "{root}/certs/beta.test.crt"  ;  # absolute
	ssl_certificate_key '{root}/certs/beta.test.key';
	location = /x {{ return 204; }}
}}
"""
    )
    (root / "conf.d" / "README").write_text("not a config file: include conf.d/*.conf skips it\n")
    (root / "sites enabled" / "gamma.conf").write_text(
        f"""server {{ # inherits ssl_certificate from http
    listen 127.0.0.1:{tls_port} ssl;
    listen 127.0.0.1:{tls_port2} ssl;
    server_name gamma.test;
    location / {{ return 200 "gamma\\n"; }}
}}
"""
    )
    return NginxSite(
        prefix=root,
        config=root / "nginx.conf",
        http_port=http_port,
        tls_port=tls_port,
        tls_port2=tls_port2,
        certs=issued,
    )


class NginxServer:
    """A running nginx on an :class:`NginxSite` (or any prefix/config)."""

    def __init__(self, prefix: Path, config: Path, pid_file: Path, ports: list[int]) -> None:
        self.prefix = prefix
        self.config = config
        self.pid_file = pid_file
        self.ports = ports
        self.binary = nginx_binary() or NGINX_BINARY

    def argv(self, *extra: str) -> list[str]:
        return [self.binary, "-p", str(self.prefix), "-e", str(self.prefix / "logs" / "error.log"),
                "-c", str(self.config), *extra]

    @property
    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def start(self) -> None:
        start_daemon(self.argv(), "nginx", self.ports)

    def workers(self) -> list[int]:
        pid = self.pid
        return children(pid) if pid is not None else []

    def reload(self, timeout: float = 15.0) -> None:
        """``nginx -s reload``, then wait until the old workers stopped accepting (they exit or
        show "is shutting down"), so the next handshake sees the new configuration."""
        old = self.workers()
        subprocess.run(self.argv("-s", "reload"), capture_output=True, timeout=30, check=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            busy = []
            for pid in old:
                try:
                    title = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if title and b"shutting down" not in title:
                    busy.append(pid)
            if not busy:
                return
            time.sleep(0.05)
        raise TimeoutError(f"nginx workers {old} still accept connections {timeout} s after a reload")

    def stop(self) -> None:
        """Kill this instance's master and its workers (found from its own pid file)."""
        kill_daemon(self.pid_file)


@pytest.fixture
def nginx_server(tmp_path: Path, test_ca: TestCA) -> Iterator[tuple[NginxSite, NginxServer]]:
    """A real nginx on :func:`nginx_site`'s configuration; stopped (by its pid file) at teardown."""
    with running_nginx(tmp_path / "nginx", test_ca) as pair:
        yield pair


@contextlib.contextmanager
def running_nginx(prefix: Path, ca: TestCA) -> Iterator[tuple[NginxSite, NginxServer]]:
    """:func:`nginx_site` under ``prefix``, started; stopped when the block ends."""
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    site = nginx_site(prefix, ca)
    with running(server_of(site)) as server:
        yield site, server


def server_of_generated(main: Path, ports: Sequence[int]) -> NginxServer:
    """The (not yet started) nginx of a ``generate_config(..., runnable=True)`` configuration."""
    return NginxServer(main.parent, main, main.parent / "logs" / "nginx.pid", list(ports))


def server_of(site: NginxSite) -> NginxServer:
    """The (not yet started) nginx of ``site``, listening on its three ports."""
    return NginxServer(site.prefix, site.config, site.pid_file, [site.http_port, site.tls_port, site.tls_port2])


# -- generated configurations (the benchmark and property tests) ------------------------------


def generate_config(
    root: Path,
    servers: int,
    *,
    per_file: int = 100,
    cert_pem: bytes,
    key_pem: bytes,
    distinct_files: bool = True,
    listens: Sequence[str] = ("443 ssl http2", "[::]:443 ssl http2"),
    runnable: bool = False,
) -> Path:
    """Write a configuration of ``servers`` TLS server blocks spread over include files of
    ``per_file`` blocks (``sites/site-NNNN.conf``, included by a glob) and return the main file.

    Each block has its own certificate and key file (copies of ``cert_pem``/``key_pem`` when
    ``distinct_files``; else all blocks share one pair), two listens, two names, comments and
    locations, roughly what a hosting box carries. ``listens``: the arguments of each block's
    listen directives (block ``i`` gets ``listens[i % len]`` when ``runnable``, else all of
    them); ``runnable``: a main file a real nginx starts with under ``root`` (pid, logs and temp
    paths there, see :func:`server_of_generated`).
    """
    root.mkdir(parents=True, exist_ok=True)
    sites, certs = root / "sites", root / "certs"
    sites.mkdir(exist_ok=True)
    certs.mkdir(exist_ok=True)
    (root / "snippets").mkdir(exist_ok=True)
    (root / "snippets" / "headers.conf").write_text('add_header X-Frame-Options "DENY" always;\n')
    shared_crt, shared_key = certs / "shared.crt", certs / "shared.key"
    shared_crt.write_bytes(cert_pem)
    shared_key.write_bytes(key_pem)
    for f in range((servers + per_file - 1) // per_file):
        parts = []
        for i in range(f * per_file, min(servers, (f + 1) * per_file)):
            crt, key = shared_crt, shared_key
            if distinct_files:
                crt, key = certs / f"site{i}.crt", certs / f"site{i}.key"
                crt.write_bytes(cert_pem)
                key.write_bytes(key_pem)
            mine = [listens[i % len(listens)]] if runnable else list(listens)
            listen_lines = "".join(f"    listen {x};\n" for x in mine)
            parts.append(
                f"""# site {i}
server {{
{listen_lines}    server_name site{i}.example.com www.site{i}.example.com;

    ssl_certificate     {crt};
    ssl_certificate_key {key};
    root /var/www/site{i};
    index index.html;
    include snippets/headers.conf;

    location / {{
        try_files $uri $uri/ =404;
    }}
    location ~ \\.php$ {{
        fastcgi_pass unix:/run/php/php-fpm.sock;
        fastcgi_param SCRIPT_FILENAME "$document_root$fastcgi_script_name";
    }}
}}
"""
            )
        (sites / f"site-{f:04d}.conf").write_text("".join(parts))
    main = root / "nginx.conf"
    if runnable:
        for d in ("logs", *(f"temp/{t}" for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))):
            (root / d).mkdir(parents=True, exist_ok=True)
        main.write_text(_main_conf(root, "    server_names_hash_max_size 65536;\n"
                                         "    server_names_hash_bucket_size 128;\n    include sites/*.conf;\n"))
        return main
    main.write_text(
        """user www-data;
worker_processes auto;
pid /run/nginx-bench.pid;
events { worker_connections 768; }
http {
    sendfile on;
    ssl_protocols TLSv1.2 TLSv1.3;  # comment
    include sites/*.conf;
}
"""
    )
    return main
