"""Tomcat as Debian ships it: a private CATALINA_BASE laid out like /var/lib/tomcat10 (conf
copied from /etc/tomcat10, the stock server.xml with its HTTP connector and the package's
commented-out JKS connector enabled, on 127.0.0.1 free ports), started the way the tomcat10 unit
starts it (``/usr/libexec/tomcat10/tomcat-start.sh``, which reads /etc/default/tomcat10; no
systemd), as the ``tomcat`` user. One instance for the module: Tomcat starts are slow.

The package's Manager (Debian ``tomcat10-admin``: conf/Catalina/localhost/manager.xml, copied
with the rest of /etc/tomcat10) is deployed, with a ``manager-jmx`` user in tomcat-users.xml.

Issue 14: JKS stays JKS in a new file, restarts keep the package's environment, configuration
the JVM has not loaded is refused, configtest runs before the stop, a start that fails is
noticed at once with the JVM's reason, names coverage, and with Manager credentials the TLS host
is reloaded in place (no restart; the handshake decides). Through the ``tlsgate`` command line,
locally and over the real sshd."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tlsgate_testing.cli import ok, pem_files, settle, tg
from tlsgate_testing.fixtures_core import free_port
from tlsgate_testing.sshd import SshdServer
from tlsgate_tomcat.keystore import JKS_MAGIC
from tlsgate_tomcat.restart import SERVICE_PATH

pytestmark = pytest.mark.slow

HOME = Path("/usr/share/tomcat10")
START = Path("/usr/libexec/tomcat10/tomcat-start.sh")
ETC = Path("/etc/tomcat10")
JKS_PASSWORD = "changeit"
MANAGER_USER = "tlsgate-mgr"
MANAGER_PASSWORD = "m&n<ager> 'pw\""
MANAGER_XML = ETC / "Catalina" / "localhost" / "manager.xml"  # Debian's tomcat10-admin




class Stock:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.http, self.https = free_port(), free_port()

    @property
    def server_xml(self) -> Path:
        return self.base / "conf" / "server.xml"

    def pids(self) -> list[int]:
        out = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
        return [int(line.split(None, 1)[0]) for line in out.splitlines()
                if f"-Dcatalina.base={self.base} " in line + " " and "catalina.startup.Bootstrap" in line]

    def served(self) -> str | None:
        from tlsgate.probe import try_served_fingerprint

        return try_served_fingerprint("127.0.0.1", self.https, None, timeout=3)

    def start(self) -> None:
        """As the tomcat10 unit does: its Environment=, a clean environment, tomcat-start.sh."""
        env = {"PATH": SERVICE_PATH, "CATALINA_HOME": str(HOME), "CATALINA_BASE": str(self.base),
               "CATALINA_TMPDIR": "/tmp", "JAVA_OPTS": "-Djava.awt.headless=true"}
        out = self.base / "logs" / "catalina.out"
        out.touch()
        tomcat = pwd.getpwnam("tomcat")
        os.chown(out, tomcat.pw_uid, tomcat.pw_gid)  # the service's user appends to it after a restart
        with out.open("ab") as log:
            subprocess.Popen(["runuser", "-u", "tomcat", "--", "sh", str(START)], cwd=self.base, env=env,
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait()

    def wait(self, timeout: float = 180) -> None:
        end = time.monotonic() + timeout
        while self.served() is None:
            assert time.monotonic() < end, (self.base / "logs" / "catalina.out").read_text()[-3000:]
            time.sleep(0.5)

    def stop(self) -> None:
        for pid in self.pids():
            os.kill(pid, 15)
        end = time.monotonic() + 30
        while self.pids() and time.monotonic() < end:
            time.sleep(0.2)
        for pid in self.pids():
            os.kill(pid, 9)


def build(base: Path) -> Stock:
    s = Stock(base)
    shutil.copytree(ETC, base / "conf", symlinks=True)
    for d in ("logs", "work", "temp", "webapps", "lib"):
        (base / d).mkdir(exist_ok=True)
    shutil.copytree("/var/lib/tomcat10/webapps/ROOT", base / "webapps" / "ROOT")
    xml = s.server_xml.read_text()
    xml = xml.replace('<Connector port="8080" protocol="HTTP/1.1"',
                      f'<Connector port="{s.http}" address="127.0.0.1" protocol="HTTP/1.1"', 1)
    xml = xml.replace('redirectPort="8443"', f'redirectPort="{s.https}"')
    # the package's commented-out JKS connector, enabled as an operator would
    m = re.search(r'<!--\s*(<Connector port="8443".*?</Connector>)\s*-->', xml, re.S)
    assert m, "the stock server.xml has its example TLS connector"
    connector = m.group(1).replace('port="8443"', f'port="{s.https}" address="127.0.0.1"')
    xml = xml[:m.start()] + connector + xml[m.end():]
    s.server_xml.write_text(xml)
    # a Manager user for the in-place reload (the JMX proxy's role), as an operator adds one
    from xml.sax.saxutils import quoteattr

    users = base / "conf" / "tomcat-users.xml"
    users.write_text(users.read_text().replace(
        "</tomcat-users>", f'  <role rolename="manager-jmx"/>\n  <user username="{MANAGER_USER}" '
        f'password={quoteattr(MANAGER_PASSWORD)} roles="manager-jmx"/>\n</tomcat-users>'))
    subprocess.run(["keytool", "-genkeypair", "-alias", "tomcat", "-keyalg", "RSA", "-keysize", "2048",
                    "-dname", "CN=localhost", "-validity", "30", "-storetype", "JKS",
                    "-keystore", str(base / "conf" / "localhost-rsa.jks"), "-storepass:env", "PW", "-keypass:env", "PW"],
                   check=True, capture_output=True, env={**os.environ, "PW": JKS_PASSWORD})
    tomcat = pwd.getpwnam("tomcat")
    for p in [base / "conf", *(base / "conf").rglob("*")]:
        os.chown(p, 0, tomcat.pw_gid)
        p.chmod(0o750 if p.is_dir() else 0o640)
    for d in ("logs", "work", "temp", "webapps"):
        for p in [base / d, *(base / d).rglob("*")]:
            os.chown(p, tomcat.pw_uid, tomcat.pw_gid)
    return s


@pytest.fixture(scope="module")
def stock() -> Iterator[Stock]:
    if not (START.exists() and (HOME / "bin" / "catalina.sh").exists() and Path("/etc/default/tomcat10").exists()):
        pytest.fail("Debian's tomcat10 package is required (scripts/bootstrap.sh installs it)")
    if not MANAGER_XML.exists():
        pytest.fail("Debian's tomcat10-admin package is required (scripts/bootstrap.sh installs it)")
    base = Path(tempfile.mkdtemp(prefix="tlsgate-stock-tomcat-"))  # /tmp/pytest-of-root is 0700: tomcat must enter
    base.chmod(0o755)
    s = build(base)
    s.start()
    try:
        yield s
    finally:
        s.stop()
        shutil.rmtree(base, ignore_errors=True)


def jvm(pid: int) -> tuple[list[str], dict[str, str], int]:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    env = dict(e.partition("=")[::2] for e in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if e)
    return argv, env, os.stat(f"/proc/{pid}").st_uid




def flow(name: str, s: Stock, test_ca, tmp_path: Path, *first: str):  # type: ignore[no-untyped-def]
    """Items 1, 2, 3 (without credentials), 5, 8 on the stock layout; returns the certificate
    the first install put in place (``first``: more options for that install)."""
    ok("org", "add", "Acme")
    ok("tls", "delegate", name, "--org", "Acme")
    ok("tls", "discover", name)
    nodes = json.loads(ok("tls", "nodes", name, "--json").stdout)
    assert [(n["name"], n["port"]) for n in nodes if n["protocol"] == "https"] == [("_default_", s.https)]
    # 8: the stock plain HTTP connector is a node too, as nginx's and Apache's plain listeners are
    assert [(n["name"], n["ip"], n["port"]) for n in nodes if n["protocol"] == "http"] == [
        ("_default_", "127.0.0.1", s.http)]

    # 4: a TLS host whose name the leaf does not cover is refused (exit 2, the name listed) before
    # anything is checked or changed; server.xml is put back as it was (content and mtime)
    st = s.server_xml.stat()
    original = s.server_xml.read_bytes()
    s.server_xml.write_bytes(original.replace(b"</SSLHostConfig>", b"""</SSLHostConfig>
        <SSLHostConfig hostName="www.stock.test">
            <Certificate certificateKeystoreFile="conf/localhost-rsa.jks" certificateKeystorePassword="changeit"
                         type="RSA" />
        </SSLHostConfig>""", 1))
    ok("tls", "discover", name)
    narrow = tg("tls", "install", name, *pem_files(tmp_path / f"{name}-narrow", test_ca.issue("other.test")),
                "--node", "www.stock.test")
    assert narrow.returncode == 2 and "www.stock.test" in narrow.stderr and "--allow_name_mismatch" in narrow.stderr
    s.server_xml.write_bytes(original)
    os.utime(s.server_xml, ns=(st.st_atime_ns, st.st_mtime_ns))
    ok("tls", "discover", name)

    # 5: the JKS connector (no certificateKeystoreType: Tomcat's default, JKS) stays JKS, in a new file
    new = test_ca.issue("localhost")
    pid = s.pids()[0]
    done = ok("tls", "install", name, *pem_files(tmp_path / f"{name}-1", new), "--node", "_default_", *first)
    assert "verified" in done.stdout
    # 3: without Manager credentials the install restarts Tomcat, and says so (and why)
    assert "restarted Tomcat" in done.stdout and "no Manager credentials" in done.stdout, done.stdout
    served_from = re.search(r"now serves from (\S+)", done.stdout)
    assert served_from, done.stdout
    path = Path(served_from.group(1))
    assert path.parent == s.base / "conf" / "tlsgate" and path.suffix == ".jks"
    assert path.read_bytes().startswith(JKS_MAGIC)
    assert (s.base / "conf" / "localhost-rsa.jks").exists()  # the file in use was not overwritten
    assert f'certificateKeystoreFile="conf/tlsgate/{path.name}"' in s.server_xml.read_text()
    assert s.served() == new.fingerprint

    # 2: restarted as the service starts it: the package's JAVA_OPTS, the unit's PATH, user tomcat
    [new_pid] = s.pids()
    assert new_pid != pid
    argv, env, uid = jvm(new_pid)
    assert "-Djava.awt.headless=true" in argv
    assert env["PATH"] == SERVICE_PATH and env.get("CATALINA_TMPDIR") == "/tmp"
    assert uid == pwd.getpwnam("tomcat").pw_uid

    # 1: an unrelated pending change (a Listener whose class does not exist) is refused, naming
    # server.xml; Tomcat keeps running
    settle()
    original = s.server_xml.read_bytes()
    s.server_xml.write_bytes(original.replace(
        b"<Service ", b'<Listener className="org.example.NoSuchListener" />\n  <Service ', 1))
    newer = test_ca.issue("localhost")
    files = pem_files(tmp_path / f"{name}-2", newer)
    refused = tg("tls", "install", name, *files, "--node", "_default_")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert str(s.server_xml) in refused.stderr and "--apply-pending" in refused.stderr
    assert s.pids() == [new_pid] and s.served() == new.fingerprint

    # --apply-pending goes ahead, and configtest stops it before Tomcat is stopped
    applied = tg("tls", "install", name, *files, "--node", "_default_", "--apply-pending")
    assert applied.returncode == 1 and "configtest" in applied.stderr, applied.stdout + applied.stderr
    assert s.pids() == [new_pid] and s.served() == new.fingerprint
    s.server_xml.write_bytes(original)

    # 2: a start that fails (the shutdown port is taken: configtest passes, the JVM exits at once)
    # is noticed at once with the JVM's own reason; everything is restored and Tomcat runs again
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        settle()
        s.server_xml.write_bytes(original.replace(b'<Server port="-1"', f'<Server port="{taken}"'.encode(), 1))
        t0 = time.monotonic()
        failed = tg("tls", "install", name, *files, "--node", "_default_", "--apply_pending")
        took = time.monotonic() - t0
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "exited during its start" in failed.stderr and "Address already in use" in failed.stderr, failed.stderr
    assert took < 150  # not 2 x 120 s of waiting for ports
    # the restore put the operator's pending change back too: Tomcat stays down until it is fixed
    assert not s.pids()
    s.server_xml.write_bytes(original)
    s.start()
    return new


class HttpPoller:
    """GET / on the plain HTTP connector every 50 ms while an install runs: a restart shows as
    refused connections."""

    def __init__(self, port: int) -> None:
        self.port, self.answers, self.failures = port, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import http.client

        while not self._stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=3)
            try:
                conn.request("GET", "/")
                self.answers += conn.getresponse().status == 200
            except OSError:
                self.failures += 1
            finally:
                conn.close()
            self._stop.wait(0.05)

    def __enter__(self) -> HttpPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def in_place(name: str, s: Stock, test_ca, tmp_path: Path, tlsgate_home: Path, *conn: str) -> None:  # type: ignore[no-untyped-def]
    """3: an endpoint holding Manager credentials: the install reloads the TLS host in place."""
    ok("tls", "add", "tomcat", "--name", name, *conn, "--tomcat_dir", str(s.base),
       "--manager_user", MANAGER_USER, "--manager_password", "-", input=MANAGER_PASSWORD + "\n")
    if "ssh" in conn:
        ok("tls", "trust", name, "--yes")
    ok("tls", "delegate", name, "--org", "Acme")
    ok("tls", "discover", name)
    [pid] = s.pids()
    new = test_ca.issue("localhost")
    plan = ok("tls", "install", name, *pem_files(tmp_path / f"{name}-in-place", new), "--node", "_default_",
              "--dry-run").stdout
    assert "reloadSslHostConfig" in plan and "tomcat-start.sh" not in plan, plan
    with HttpPoller(s.http) as poll:
        done = ok("tls", "install", name, *pem_files(tmp_path / f"{name}-in-place", new), "--node", "_default_")
    assert "reloaded in place, Tomcat not restarted" in done.stdout and "restarted Tomcat" not in done.stdout, done.stdout
    assert "verified" in done.stdout and s.served() == new.fingerprint
    # no restart: the same JVM, and the plain HTTP connector answered all along
    assert s.pids() == [pid]
    assert poll.failures == 0 and poll.answers > 0, (poll.failures, poll.answers)
    # server.xml names the new keystore too (a later restart serves the same)
    path = Path(re.search(r"now serves from (\S+)", done.stdout).group(1))  # type: ignore[union-attr]
    assert f'certificateKeystoreFile="conf/tlsgate/{path.name}"' in s.server_xml.read_text()
    # the audit log says which was done
    entries = [e for e in json.loads(ok("log", "--json").stdout) if e["action"] == "tls install" and e["endpoint"] == name]
    assert any("reloaded in place" in m for m in entries[-1]["details"]["messages"]), entries[-1]
    # the Manager password is stored encrypted: nowhere in clear under the gateway's home
    for f in (p for p in tlsgate_home.rglob("*") if p.is_file()):
        assert MANAGER_PASSWORD.encode() not in f.read_bytes(), f
    assert MANAGER_PASSWORD not in ok("tls", "show", name, "--json").stdout


@pytest.mark.timeout(900)  # several Tomcat starts on a loaded 2-core machine
def test_stock_local(stock: Stock, test_ca, tlsgate_home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ok("tls", "add", "tomcat", "--name", "cat", "--connection_type", "local", "--tomcat_dir", str(stock.base))
    flow("cat", stock, test_ca, tmp_path)
    in_place("cat-mgr", stock, test_ca, tmp_path, tlsgate_home, "--connection_type", "local")


def test_in_place_mismatch_fails_and_restores(stock: Stock, test_ca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """3: the in-place reload answers OK whatever the new keystore holds; the handshake is the
    test. A keystore broken on disk after tlsgate checked it (another certificate in it): the
    install fails and the host reloads its old keystore in place again; still no restart."""
    from tlsgate import CertificateBundle, ConnectionSpec, Endpoint
    from tlsgate.plugin import InstallPolicy, Node, OperationError, Secret
    from tlsgate.policy import policy
    from tlsgate_testing.connections import LocalConnection
    from tlsgate_tomcat import install as install_mod
    from tlsgate_tomcat.keystore import write_keystore
    from tlsgate_tomcat.plugin import TomcatOptions

    if not stock.pids():
        stock.start()
    stock.wait()
    [pid] = stock.pids()
    before, xml = stock.served(), stock.server_xml.read_bytes()
    def bundle_of(issued) -> CertificateBundle:  # type: ignore[no-untyped-def]
        return CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)

    # the key type server.xml declares (a changed type is a restart, not an in-place reload)
    kind = "rsa" if 'type="RSA"' in xml.decode() else "ec"
    other = bundle_of(test_ca.issue("localhost", key_type=kind))

    def swap(connection, changes) -> None:  # type: ignore[no-untyped-def]
        path, password, alias = changes[0].keystore
        Path(path).write_bytes(write_keystore("JKS", other, alias, password))

    endpoint = Endpoint(name="cat-lib", type="tomcat", connection=ConnectionSpec(type="local"),
                        options=TomcatOptions(tomcat_dir=str(stock.base), manager_user=MANAGER_USER,
                                              manager_password=Secret(MANAGER_PASSWORD)))
    install_mod.after_validate_hook = swap
    try:
        with policy(InstallPolicy(apply_pending=True)), pytest.raises(OperationError, match="handshake disagrees"):
            install_mod.install(endpoint, LocalConnection(), bundle_of(test_ca.issue("localhost", key_type=kind)),
                                [Node(name="_default_", port=stock.https)], False)
    finally:
        install_mod.after_validate_hook = None
    assert stock.pids() == [pid] and stock.served() == before
    assert stock.server_xml.read_bytes() == xml


@pytest.mark.timeout(900)
def test_stock_over_ssh(stock: Stock, sshd: SshdServer, test_ca, tlsgate_home: Path, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    if not stock.pids():
        stock.start()
    stock.wait()
    ok("tls", "add", "tomcat", "--name", "cat-ssh", "--connection_type", "ssh", "--host", sshd.host,
       "--port", str(sshd.port), "--user", "root", "--ssh_key_path", str(sshd.root_key.path),
       "--tomcat_dir", str(stock.base))
    ok("tls", "trust", "cat-ssh", "--yes")
    # the local tests' in-place installs changed server.xml after the JVM started: pending for
    # this gateway (another one wrote it), applied on purpose by the first install
    new = flow("cat-ssh", stock, test_ca, tmp_path, "--apply-pending")
    # 6: the keystores that install superseded (tlsgate's own, in conf/tlsgate/) are gone; the
    # package-era keystore outside it stays
    own = sorted(p.name for p in (stock.base / "conf" / "tlsgate").iterdir())
    assert len(own) == 1 and new.fingerprint[:12] in own[0], own
    assert (stock.base / "conf" / "localhost-rsa.jks").exists()
    # 3 over ssh: the Manager is reached on the host's loopback through sshd's forwarding
    in_place("cat-ssh-mgr", stock, test_ca, tmp_path, tlsgate_home, "--connection_type", "ssh", "--host", sshd.host,
             "--port", str(sshd.port), "--user", "root", "--ssh_key_path", str(sshd.root_key.path))
