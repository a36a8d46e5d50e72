"""A real HAProxy for the tests (the Debian ``haproxy`` binary), on 127.0.0.1 free ports, its state
under the test's tmp_path; only the processes it started are stopped.

Layout (``site.dir``)::

    haproxy.cfg        global: crt-base certs/, pidfile; frontend web:
                         bind 127.0.0.1:TLS ssl crt alpha.pem crt-list lists/sni.list
                         bind 127.0.0.1:TLS2 ssl crt "certs/dir with space/"
                       frontend plain: bind 127.0.0.1:HTTP
    certs/alpha.pem            alpha.test + www.alpha.test (the default certificate of TLS)
    certs/beta.pem             beta.test (crt-list line 2, [alpn h2])
    certs/gamma.pem            gamma.test and gamma2.test, crt-list line 3 names only gamma.test
    certs/dir with space/delta.pem   delta.test
    lists/sni.list

``mode`` "master" starts ``haproxy -W -D`` (master-worker), "daemon" ``haproxy -D`` (reloads
with -sf).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from tlsgate.plugin import try_served_fingerprint
from tlsgate_testing.certs import Issued, TestCA
from tlsgate_testing.fixtures_core import free_port

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


@attrs.define
class HaproxySite:
    dir: Path
    mode: str
    tls_port: int
    tls_port2: int
    http_port: int
    certs: dict[str, Issued]
    started: list[int] = attrs.field(factory=list)

    @property
    def config(self) -> Path:
        return self.dir / "haproxy.cfg"

    @property
    def pidfile(self) -> Path:
        return self.dir / "run" / "haproxy.pid"

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in self.pidfile.read_text().split()]
        except (OSError, ValueError):
            return []

    def served(self, name: str, port: int | None = None) -> str | None:
        return try_served_fingerprint("127.0.0.1", port or self.tls_port, name)

    def served_map(self) -> dict[str, str | None]:
        return {"alpha": self.served("alpha.test"), "www.alpha": self.served("www.alpha.test"),
                "beta": self.served("beta.test"), "gamma": self.served("gamma.test"),
                "delta": self.served("delta.test", self.tls_port2)}

    def snapshot(self) -> dict[str, bytes]:
        """Every file but run state (to prove nothing changed)."""
        return {str(p): p.read_bytes() for p in sorted(self.dir.rglob("*"))
                if p.is_file() and "run" not in p.relative_to(self.dir).parts}


def _pem(issued: Issued) -> bytes:
    return issued.cert_pem + issued.chain_pem + issued.key_pem


def haproxy_site(root: Path, ca: TestCA, mode: str = "master") -> HaproxySite:
    ports = set()
    while len(ports) < 3:
        ports.add(free_port())
    tls, tls2, http = sorted(ports)
    certs = {"alpha": ca.issue("alpha.test", "www.alpha.test"), "beta": ca.issue("beta.test"),
             "gamma": ca.issue("gamma.test", "gamma2.test"), "delta": ca.issue("delta.test")}
    (root / "certs" / "dir with space").mkdir(parents=True)
    (root / "lists").mkdir()
    (root / "run").mkdir()
    for name in ("alpha", "beta", "gamma"):
        path = root / "certs" / f"{name}.pem"
        path.write_bytes(_pem(certs[name]))
        path.chmod(0o600)
    (root / "certs" / "dir with space" / "delta.pem").write_bytes(_pem(certs["delta"]))
    (root / "lists" / "sni.list").write_text(
        "# SNI routing\nbeta.pem [alpn h2,http/1.1] beta.test\ngamma.pem gamma.test\n")
    (root / "haproxy.cfg").write_text(f"""# written by the tlsgate-haproxy tests
global
    crt-base {root}/certs
    pidfile {root}/run/haproxy.pid
    log stderr format raw local0 emerg

defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s

frontend web
    bind 127.0.0.1:{tls} ssl crt alpha.pem crt-list {root}/lists/sni.list
    bind 127.0.0.1:{tls2} ssl crt "{root}/certs/dir with space/"
    http-request return status 200 content-type text/plain string ok

frontend plain
    bind 127.0.0.1:{http}
    http-request return status 200 content-type text/plain string plain
""")
    return HaproxySite(root, mode, tls, tls2, http, certs)


def start(site: HaproxySite) -> None:
    argv = [HAPROXY, "-D", "-f", str(site.config), "-p", str(site.pidfile)]
    if site.mode == "master":
        argv.insert(1, "-W")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"haproxy did not start: {proc.stderr}")
    end = time.monotonic() + 10
    while not (site.pids() and site.served("alpha.test")):
        if time.monotonic() > end:
            raise RuntimeError("haproxy started but does not answer TLS")
        time.sleep(0.05)
    site.started += site.pids()


def family(site: HaproxySite) -> list[int]:
    """Every process of this site: the pids it wrote and their children."""
    pids = set(site.pids()) | set(site.started)
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        pid, ppid, args = line.split(None, 2)
        if int(ppid) in pids or (str(site.config) in args and "haproxy" in args):
            pids.add(int(pid))
    return sorted(pids)


def stop(site: HaproxySite) -> None:
    for pid in family(site):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


@pytest.fixture
def haproxy(tmp_path: Path, test_ca: TestCA, request: pytest.FixtureRequest) -> Iterator[HaproxySite]:
    """A running private HAProxy (master-worker; parametrize indirectly with "daemon" for -sf)."""
    if not os.path.exists(HAPROXY):
        pytest.fail("haproxy is required (apt-get install haproxy; scripts/bootstrap.sh lists it)")
    site = haproxy_site(tmp_path / "haproxy", test_ca, getattr(request, "param", "master"))
    start(site)
    yield site
    stop(site)
