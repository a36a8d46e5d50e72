"""A real BIND 9 (``named``, Debian ``bind9``) for tests: a private config under a temporary
directory, one primary zone (``test`` by default: every ``*.test`` name resolves to 127.0.0.1),
dynamic updates of TXT records allowed for one TSIG key, listening on a free loopback port.

It is both the authoritative server the ``rfc2136`` provider updates and the resolver Pebble
asks (``pebble -dnsserver``), so http-01 names resolve to 127.0.0.1 and dns-01 records are seen.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from .fixtures_core import free_port, wait_for_port

NAMED = os.environ.get("TLSGATE_TEST_NAMED", "/usr/sbin/named")


def named_binary() -> str | None:
    return NAMED if os.access(NAMED, os.X_OK) else shutil.which("named")


@attrs.frozen
class BindServer:
    root: Path
    port: int
    zone: str
    key_name: str
    key_secret: str  # base64
    algorithm: str
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def txt(self, name: str) -> list[str]:
        """The TXT values the server answers for ``name`` now (dnspython, straight to the server)."""
        import dns.message
        import dns.query
        import dns.rdatatype

        resp = dns.query.udp(dns.message.make_query(name, dns.rdatatype.TXT), "127.0.0.1", port=self.port, timeout=3)
        return [b"".join(r.strings).decode() for rrset in resp.answer if rrset.rdtype == dns.rdatatype.TXT
                for r in rrset]


def start_bind(root: Path, zone: str = "test") -> BindServer:
    binary = named_binary()
    if binary is None:
        pytest.skip("named (bind9) is not installed")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    key_name, algorithm = "tlsgate-test.", "hmac-sha256"
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    (root / f"{zone}.zone").write_text(
        f"""$TTL 60
@   IN SOA ns.{zone}. hostmaster.{zone}. 1 60 60 600 60
@   IN NS  ns.{zone}.
@   IN A   127.0.0.1
ns  IN A   127.0.0.1
*   IN A   127.0.0.1
"""
    )
    (root / "named.conf").write_text(
        f"""options {{
    directory "{root}";
    pid-file "{root}/named.pid";
    session-keyfile "{root}/session.key";
    managed-keys-directory "{root}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-query {{ any; }};
    dnssec-validation no;
    notify no;
}};
controls {{ }};
key "{key_name}" {{ algorithm {algorithm}; secret "{secret}"; }};
zone "{zone}" {{
    type primary;
    file "{root}/{zone}.zone";
    update-policy {{ grant {key_name} zonesub TXT; }};
}};
"""
    )
    argv = [binary, "-g", "-n", "1", "-c", str(root / "named.conf")]
    if os.geteuid() == 0:
        argv += ["-u", "root"]
    log = open(root / "named.log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, timeout=30)
        _wait_answers(port, zone)
    except TimeoutError:
        proc.kill()
        proc.wait(timeout=10)
        raise RuntimeError(f"named did not start: {(root / 'named.log').read_text(errors='replace')[-2000:]}") from None
    return BindServer(root, port, zone, key_name, secret, algorithm, proc)


def _wait_answers(port: int, zone: str, timeout: float = 20) -> None:
    import dns.exception
    import dns.message
    import dns.query

    end = time.monotonic() + timeout
    while True:
        try:
            resp = dns.query.udp(dns.message.make_query(zone, "SOA"), "127.0.0.1", port=port, timeout=1)
            if resp.answer:
                return
        except (dns.exception.DNSException, OSError):
            pass
        if time.monotonic() > end:
            raise TimeoutError(f"named on port {port} does not answer for {zone}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def bind_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BindServer]:
    """A real named on a loopback port, zone ``test`` (every name -> 127.0.0.1), TSIG key for
    TXT updates; shared by the session (dns-01 tests remove their records again)."""
    server = start_bind(tmp_path_factory.mktemp("bind"))
    try:
        yield server
    finally:
        server.stop()
