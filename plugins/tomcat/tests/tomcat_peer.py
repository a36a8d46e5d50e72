"""A real Tomcat 10 (Debian ``tomcat10``, openjdk-17) on 127.0.0.1 free ports, from a private
CATALINA_BASE, for the whole test session (a Tomcat start costs seconds).

Layout of the private CATALINA_BASE (like Debian's: no ``bin/`` scripts of its own, so drivers
must use CATALINA_HOME's with CATALINA_BASE set; ``bin/setenv.sh`` only sets a pid file and a
small heap)::

    conf/server.xml      shutdown port + two HTTPS connectors:
                         "jks": one SSLHostConfig (_default_), JKS keystore conf/jks-default.jks
                         "p12": _default_ (PKCS12 conf/p12-default.p12), b.test (PKCS12
                         conf/b.p12, alias "Tomcat"), pem.test (PEM conf/pem.crt/.key/-chain.crt)
                         and a commented-out connector that must stay invisible
    conf/*.properties, web.xml, ... copied from /usr/share/tomcat10/etc
    logs/ temp/ work/ webapps/

When the tests run as root, the tree is owned like Debian's (conf root:tomcat 0640, logs/temp/
work owned by ``tomcat``) and Tomcat runs as ``tomcat``, so a file mode really can keep Tomcat
from reading a keystore. Tests that change the server use ``tomcat10`` (function scope), which
puts the original files back and restarts only when something changed.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from tlsgate_testing.certs import Issued, TestCA
from tlsgate_testing.fixtures_core import free_port

CATALINA_HOME = Path("/usr/share/tomcat10")
CONF_SOURCES = (Path("/usr/share/tomcat10/etc"), Path("/etc/tomcat10"))
CONF_FILES = ("catalina.properties", "context.xml", "logging.properties", "web.xml", "tomcat-users.xml",
              "jaspic-providers.xml")
RUN_USER = "tomcat"
JKS_PASSWORD = "jks-Secret 1"
P12_PASSWORD = "p12&<secret>"
B_PASSWORD = "b'secret\""

SERVER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!--
  tlsgate test server (Tomcat 10.1). Comments and formatting here must survive every edit.
-->
<Server port="{shutdown}" shutdown="SHUTDOWN">
  <Listener className="org.apache.catalina.startup.VersionLoggerListener" />
  <Service name="Catalina">

    <!-- JKS connector: one default host -->
    <Connector port="{jks}" address="127.0.0.1" protocol="org.apache.coyote.http11.Http11NioProtocol"
               maxThreads="8" SSLEnabled="true">
        <SSLHostConfig>
            <Certificate certificateKeystoreFile="conf/jks-default.jks"
                         certificateKeystorePassword="jks-Secret 1"
                         certificateKeystoreType="JKS"
                         certificateKeyAlias="tomcat" type="EC" />
        </SSLHostConfig>
    </Connector>

    <!--
    <Connector port="{commented}" protocol="org.apache.coyote.http11.Http11NioProtocol" SSLEnabled="true">
        <SSLHostConfig hostName="ghost.test">
            <Certificate certificateKeystoreFile="conf/ghost.p12" type="RSA" />
        </SSLHostConfig>
    </Connector>
    -->

    <!-- PKCS12 connector: a default host, an SNI host and a PEM host -->
    <Connector port="{p12}" address="127.0.0.1"
               protocol="org.apache.coyote.http11.Http11NioProtocol" maxThreads="8"
               SSLEnabled="true" defaultSSLHostConfigName="_default_">
        <SSLHostConfig>
            <Certificate certificateKeystoreFile="${{catalina.base}}/conf/p12-default.p12"
                         certificateKeystorePassword="p12&amp;&lt;secret&gt;"
                         certificateKeystoreType="PKCS12" type="EC" />
        </SSLHostConfig>
        <SSLHostConfig hostName="b.test" protocols="TLSv1.2+TLSv1.3">
            <Certificate certificateKeystoreFile="conf/b.p12" certificateKeystorePassword='b&apos;secret"'
                         certificateKeystoreType="PKCS12" certificateKeyAlias="Tomcat" type="EC"/>
        </SSLHostConfig>
        <SSLHostConfig hostName="pem.test">
            <Certificate certificateFile="conf/pem.crt" certificateKeyFile="conf/pem.key"
                         certificateChainFile="conf/pem-chain.crt" type="EC" />
        </SSLHostConfig>
    </Connector>

    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false" />
    </Engine>
  </Service>
</Server>
"""

SETENV = """# written by the tomcat plugin tests (tomcat_peer.py)
CATALINA_PID="$CATALINA_BASE/temp/tomcat.pid"
CATALINA_OPTS="-Xmx256m -Xss512k -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.security.egd=file:/dev/./urandom"
"""


def _keytool_jks(p12: Path, p12_password: str, jks: Path, jks_password: str) -> None:
    """A JKS written by keytool itself (not by the code under test)."""
    subprocess.run(
        ["keytool", "-importkeystore", "-noprompt", "-srckeystore", str(p12), "-srcstoretype", "PKCS12",
         "-srcstorepass:env", "SRCPW", "-destkeystore", str(jks), "-deststoretype", "JKS",
         "-deststorepass:env", "DSTPW", "-destkeypass:env", "DSTPW"],
        check=True, capture_output=True, env={**os.environ, "SRCPW": p12_password, "DSTPW": jks_password},
    )


@attrs.define
class TomcatServer:
    """The running test Tomcat. ``nodes`` maps (port, host name) to the certificate it serves."""

    base: Path
    home: Path
    shutdown_port: int
    jks_port: int
    p12_port: int
    certs: dict[str, Issued]
    user: str | None
    original: dict[str, tuple[bytes, int, int, int]] = attrs.field(factory=dict)

    # -- what is served -----------------------------------------------------------------------
    @property
    def server_xml(self) -> Path:
        return self.base / "conf" / "server.xml"

    def expected(self) -> dict[tuple[int, str | None], str]:
        """(port, SNI) -> fingerprint of the original configuration."""
        return {
            (self.jks_port, None): self.certs["jks"].fingerprint,
            (self.p12_port, None): self.certs["p12"].fingerprint,
            (self.p12_port, "b.test"): self.certs["b"].fingerprint,
            (self.p12_port, "pem.test"): self.certs["pem"].fingerprint,
        }

    def served(self, port: int, sni: str | None = None, timeout: float = 3.0) -> str | None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
                with ctx.wrap_socket(sock, server_hostname=sni) as tls:
                    der = tls.getpeercert(binary_form=True)
        except (OSError, ssl.SSLError):
            return None
        return hashlib.sha256(der).hexdigest() if der else None

    def serving_original(self) -> bool:
        return all(self.served(port, sni) == fp for (port, sni), fp in self.expected().items())

    # -- lifecycle ----------------------------------------------------------------------------
    def _argv(self, *argv: str) -> list[str]:
        env = ["env", f"CATALINA_BASE={self.base}", f"CATALINA_HOME={self.home}"]
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        return [*prefix, *env, *argv]

    def pids(self) -> list[int]:
        out = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
        pids = []
        for line in out.splitlines():
            pid, _, args = line.strip().partition(" ")
            if f"-Dcatalina.base={self.base} " in args + " " and "org.apache.catalina.startup.Bootstrap" in args:
                pids.append(int(pid))
        return pids

    def start(self, timeout: float = 90.0, *, wait: bool = True) -> None:
        """Start Tomcat; with ``wait``, until it serves the original certificates."""
        res = subprocess.run(self._argv("sh", str(self.home / "bin" / "startup.sh")), capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"startup.sh failed ({res.returncode}): {res.stdout}{res.stderr}")
        if wait:
            self.wait_serving(timeout)

    def wait_serving(self, timeout: float = 90.0) -> None:
        end = time.monotonic() + timeout
        while not self.serving_original():
            if time.monotonic() > end:
                raise RuntimeError(f"test Tomcat did not come up; see {self.base / 'logs'}:\n" + self.log_tail())
            time.sleep(0.3)

    def stop(self) -> None:
        """Stop the Tomcat of this private CATALINA_BASE (only processes started from it):
        SIGTERM runs Tomcat's shutdown hook, whatever its shutdown port; SIGKILL after 20 s."""
        started = self.pids()
        for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + wait
            while self.pids() and time.monotonic() < end:
                time.sleep(0.1)
        # An exited JVM stays a zombie until its parent (init here) reaps it, and catalina.sh
        # refuses to start while the pid in its pid file exists: wait, then drop the stale file.
        end = time.monotonic() + 15
        while any(Path(f"/proc/{pid}").exists() for pid in started) and time.monotonic() < end:
            time.sleep(0.1)
        pid_file = self.base / "temp" / "tomcat.pid"
        if not self.pids() and pid_file.exists():
            pid_file.unlink()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for log in sorted((self.base / "logs").glob("catalina*")):
            out += log.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out[-lines:])

    # -- state between tests ------------------------------------------------------------------
    def snapshot(self) -> None:
        for path in sorted((self.base / "conf").rglob("*")):
            if path.is_file():
                st = path.stat()
                self.original[str(path.relative_to(self.base))] = (path.read_bytes(), st.st_mode & 0o7777,
                                                                    st.st_uid, st.st_gid)

    def reset(self) -> None:
        """Put the original conf/ back (dropping files tests added) and make sure the server
        serves the original certificates again, restarting only when needed."""
        changed = False
        for path in sorted((self.base / "conf").rglob("*"), reverse=True):
            rel = str(path.relative_to(self.base))
            if path.is_file() and rel not in self.original:
                path.unlink()
                changed = True
            elif path.is_dir() and not any(path.iterdir()) and path.name != "Catalina":
                path.rmdir()
        for rel, (data, mode, uid, gid) in self.original.items():
            path = self.base / rel
            if not path.exists() or path.read_bytes() != data or (path.stat().st_mode & 0o7777) != mode:
                path.write_bytes(data)
                changed = True
            os.chmod(path, mode)
            if os.geteuid() == 0:
                os.chown(path, uid, gid)
        if changed or not self.pids() or not self.serving_original():
            self.restart()


def _build(base: Path, ca: TestCA) -> TomcatServer:
    user = RUN_USER if os.geteuid() == 0 else None
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            user = None
    certs = {
        "jks": ca.issue("a.test", "localhost"),
        "p12": ca.issue("default.test"),
        "b": ca.issue("b.test"),
        "pem": ca.issue("pem.test"),
    }
    server = TomcatServer(
        base=base, home=CATALINA_HOME, shutdown_port=free_port(), jks_port=free_port(), p12_port=free_port(),
        certs=certs, user=user,
    )
    conf = base / "conf"
    for d in ("conf", "bin", "logs", "temp", "work", "webapps"):
        (base / d).mkdir(mode=0o755)
    for name in CONF_FILES:
        src = next((s / name for s in CONF_SOURCES if (s / name).exists()), None)
        if src is not None:
            shutil.copyfile(src, conf / name)
    (base / "bin" / "setenv.sh").write_text(SETENV)
    (conf / "server.xml").write_text(SERVER_XML.format(
        shutdown=server.shutdown_port, jks=server.jks_port, p12=server.p12_port, commented=free_port(),
    ))
    tmp_p12 = base / "temp" / "jks-src.p12"
    tmp_p12.write_bytes(certs["jks"].pfx("transfer", alias="tomcat", chain_len=1))
    _keytool_jks(tmp_p12, "transfer", conf / "jks-default.jks", JKS_PASSWORD)
    tmp_p12.unlink()
    (conf / "p12-default.p12").write_bytes(certs["p12"].pfx(P12_PASSWORD, alias="default", chain_len=1))
    (conf / "b.p12").write_bytes(certs["b"].pfx(B_PASSWORD, alias="Tomcat", chain_len=1))
    pem = certs["pem"]
    (conf / "pem.crt").write_bytes(pem.cert_pem)
    (conf / "pem.key").write_bytes(pem.key_pem)
    (conf / "pem-chain.crt").write_bytes(pem.chain[0].public_bytes(Encoding.PEM))  # intermediate only
    # ownership and modes like Debian's package: conf root:tomcat 0640, runtime dirs tomcat's
    gid = pwd.getpwnam(user).pw_gid if user else -1
    for path in conf.iterdir():
        os.chmod(path, 0o640)
        if user:
            os.chown(path, 0, gid)
    (conf / "Catalina").mkdir()
    os.chmod(conf / "Catalina", 0o775)  # noqa: S103 - Tomcat creates conf/Catalina/localhost, as Debian allows
    if user:
        uid = pwd.getpwnam(user).pw_uid
        for d in ("logs", "temp", "work", "webapps"):
            os.chown(base / d, uid, gid)
        os.chown(conf / "Catalina", 0, gid)
    server.snapshot()
    return server


def tomcat_available() -> bool:
    return (CATALINA_HOME / "bin" / "catalina.sh").exists() and shutil.which("java") is not None


@pytest.fixture(scope="session")
def tomcat10_server(test_ca: TestCA) -> Iterator[TomcatServer]:
    """The session's Tomcat 10, started once. Prefer :func:`tomcat10`, which resets it."""
    if not tomcat_available():
        pytest.skip("Debian tomcat10 and java are not installed")
    base = Path(tempfile.mkdtemp(prefix="tlsgate-tomcat-"))
    os.chmod(base, 0o755)  # noqa: S103 - the tomcat user must reach it; nothing secret lives at this level
    server = _build(base, test_ca)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def tomcat10(tomcat10_server: TomcatServer) -> TomcatServer:
    """The session's Tomcat 10 with its original configuration, serving its original certificates."""
    tomcat10_server.reset()
    return tomcat10_server


__all__ = ["TomcatServer", "tomcat10", "tomcat10_server", "tomcat_available"]
