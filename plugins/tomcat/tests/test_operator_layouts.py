"""Layouts real operators' Tomcat servers have, through the ``tlsgate`` command with stdout piped:
an SSLHostConfig with an RSA and an EC <Certificate> (PKCS12, paths relative to
CATALINA_BASE and through ${catalina.base}), each installed and verified on its own."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tlsgate.plugin import try_served_fingerprint
from tlsgate_testing.certs import TestCA
from tlsgate_testing.cli import cli_runner
from tlsgate_testing.fixtures_core import free_port
from tomcat_peer import CATALINA_HOME, CONF_FILES, CONF_SOURCES, RUN_USER, SETENV, TomcatServer, tomcat_available

pytestmark = pytest.mark.slow


SERVER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Server port="{shutdown}" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="{tls}" address="127.0.0.1" protocol="org.apache.coyote.http11.Http11NioProtocol"
               SSLEnabled="true" maxThreads="8">
        <SSLHostConfig>
            <Certificate certificateKeystoreFile="${{catalina.base}}/conf/default.p12"
                         certificateKeystorePassword="default-pw" certificateKeystoreType="PKCS12" type="EC"/>
        </SSLHostConfig>
        <!-- RSA for old clients, EC for the rest -->
        <SSLHostConfig hostName="dual.test">
            <Certificate certificateKeystoreFile="conf/dual-rsa.p12" certificateKeystorePassword="rsa-pw"
                         certificateKeystoreType="PKCS12" type="RSA"/>
            <Certificate certificateKeystoreFile="conf/dual-ec.p12" certificateKeystorePassword="ec-pw"
                         certificateKeystoreType="PKCS12" type="EC"/>
        </SSLHostConfig>
    </Connector>
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false" />
    </Engine>
  </Service>
</Server>
"""


@pytest.fixture
def dual_tomcat(test_ca: TestCA) -> Iterator[tuple[TomcatServer, dict[str, str]]]:
    """A private Tomcat 10 with the dual host; (server, fingerprint per key kind)."""
    if not tomcat_available():
        pytest.skip("Debian tomcat10 and java are not installed")
    base = Path(tempfile.mkdtemp(prefix="tlsgate-tomcat-dual-"))
    os.chmod(base, 0o755)  # noqa: S103 - the tomcat user must reach it; nothing secret lives at this level
    user = RUN_USER if os.geteuid() == 0 else None
    certs = {"default": test_ca.issue("default.test"), "rsa": test_ca.issue("dual.test", key_type="rsa"),
             "ec": test_ca.issue("dual.test")}
    server = TomcatServer(base=base, home=CATALINA_HOME, shutdown_port=free_port(), jks_port=0,
                          p12_port=free_port(), certs=certs, user=user)
    conf = base / "conf"
    for d in ("conf", "bin", "logs", "temp", "work", "webapps"):
        (base / d).mkdir(mode=0o755)
    for name in CONF_FILES:
        src = next((s / name for s in CONF_SOURCES if (s / name).exists()), None)
        if src is not None:
            shutil.copyfile(src, conf / name)
    (base / "bin" / "setenv.sh").write_text(SETENV)
    (conf / "server.xml").write_text(SERVER_XML.format(shutdown=server.shutdown_port, tls=server.p12_port))
    (conf / "default.p12").write_bytes(certs["default"].pfx("default-pw", alias="d", chain_len=1))
    (conf / "dual-rsa.p12").write_bytes(certs["rsa"].pfx("rsa-pw", alias="rsa", chain_len=1))
    (conf / "dual-ec.p12").write_bytes(certs["ec"].pfx("ec-pw", alias="ec", chain_len=1))
    if user:
        entry = pwd.getpwnam(user)
        for path in conf.iterdir():
            os.chmod(path, 0o640)
            os.chown(path, 0, entry.pw_gid)
        for d in ("logs", "temp", "work", "webapps"):
            os.chown(base / d, entry.pw_uid, entry.pw_gid)
    server.start(wait=False)
    try:
        end = time.monotonic() + 90
        while try_served_fingerprint("127.0.0.1", server.p12_port, "dual.test", key_kind="rsa") != certs["rsa"].fingerprint:
            if time.monotonic() > end:
                raise RuntimeError("the dual Tomcat did not come up:\n" + server.log_tail())
            time.sleep(0.3)
        yield server, {k: certs[k].fingerprint for k in ("rsa", "ec")}
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def cli(tmp_path: Path):
    return cli_runner(tmp_path, timeout=300)


def test_rsa_and_ec_certificates_of_one_host(dual_tomcat, cli, test_ca: TestCA, tmp_path: Path) -> None:
    server, current = dual_tomcat
    assert cli("tls", "add", "tomcat", "--name", "tc", "--connection_type", "local",
               "--tomcat_dir", str(server.base)).returncode == 0
    assert cli("org", "add", "acme").returncode == 0
    assert cli("tls", "delegate", "tc", "--org", "acme").returncode == 0
    assert cli("tls", "discover", "tc").returncode == 0
    nodes = {n["name"]: n for n in json.loads(cli("tls", "nodes", "tc", "--json").stdout)}
    assert nodes["dual.test"]["state"] == "active" and nodes["dual.test"]["fingerprint"] in current.values()
    for kind in ("rsa", "ec"):
        new = test_ca.issue("dual.test", key_type=kind)
        crt, key, chain = new.write(tmp_path / f"in-{kind}", "new")
        done = cli("tls", "install", "tc", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
                   "--node", "dual.test")
        assert done.returncode == 0, done.stderr
        assert "verified" in done.stdout
        current[kind] = new.fingerprint
        # that <Certificate> replaced, the other one still served
        assert {k: try_served_fingerprint("127.0.0.1", server.p12_port, "dual.test", key_kind=k)
                for k in current} == current
