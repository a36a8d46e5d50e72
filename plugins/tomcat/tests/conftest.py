"""Helpers for the Tomcat plugin tests: Tomcat directories built from the server.xml fixtures
(Tomcat 9 legacy attributes, Tomcat 11) with real keystores, and endpoints for them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from cryptography.hazmat.primitives import serialization
from tlsgate import ConnectionSpec, Endpoint
from tlsgate_testing.certs import Issued, TestCA
from tlsgate_testing.fixtures_core import free_port
from tlsgate_tomcat.plugin import TomcatOptions

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(Path(__file__).parent))  # tomcat_peer (the real Tomcat 10 fixture) imports by name


def p12_bytes(issued: Issued, alias: str, password: str) -> bytes:
    return issued.pfx(password, alias=alias, chain_len=1)


def keytool_jks(path: Path, issued: Issued, alias: str, password: str) -> None:
    """A JKS made by keytool (independent of the code under test)."""
    src = path.with_suffix(".src.p12")
    src.write_bytes(p12_bytes(issued, alias, "transfer"))
    subprocess.run(
        ["keytool", "-importkeystore", "-noprompt", "-srckeystore", str(src), "-srcstoretype", "PKCS12",
         "-srcstorepass:env", "S", "-destkeystore", str(path), "-deststoretype", "JKS",
         "-deststorepass:env", "D", "-destkeypass:env", "D"],
        check=True, capture_output=True, env={**os.environ, "S": "transfer", "D": password},
    )
    src.unlink()


def endpoint_for(base: Path | str, conn_type: str = "local", **conn: object) -> Endpoint:
    return Endpoint(name="tc", type="tomcat", connection=ConnectionSpec(type=conn_type, **conn),  # type: ignore[arg-type]
                    options=TomcatOptions(tomcat_dir=str(base)))


@attrs.define
class FixtureDir:
    base: Path
    ports: dict[str, int]
    certs: dict[str, Issued]

    @property
    def server_xml(self) -> Path:
        return self.base / "conf" / "server.xml"


def _materialise(template: str, base: Path, port_names: list[str]) -> dict[str, int]:
    text = (FIXTURES / template).read_text()
    ports = {name: free_port() for name in port_names}  # nothing listens: discovery reports "down"
    for name, port in ports.items():
        text = text.replace("{" + name + "}", str(port))
    (base / "conf").mkdir(parents=True)
    (base / "conf" / "server.xml").write_text(text)
    os.chmod(base / "conf" / "server.xml", 0o640)
    return ports


@pytest.fixture
def tomcat9_dir(tmp_path: Path, test_ca: TestCA) -> FixtureDir:
    base = tmp_path / "tomcat9"
    ports = _materialise("tomcat9-server.xml", base, ["legacy_jks", "legacy_pem", "modern"])
    conf = base / "conf"
    certs = {"legacy": test_ca.issue("legacy.example.test"), "apr": test_ca.issue("apr.example.test"),
             "www": test_ca.issue("www.example.test")}
    keytool_jks(conf / "legacy.jks", certs["legacy"], "tomcat", "legacy-pass")
    (conf / "apr.crt").write_bytes(certs["apr"].cert_pem)
    (conf / "apr.key").write_bytes(certs["apr"].key_pem)
    (conf / "apr-chain.crt").write_bytes(certs["apr"].chain[0].public_bytes(serialization.Encoding.PEM))
    (conf / "www.p12").write_bytes(p12_bytes(certs["www"], "www", "www-pass"))
    return FixtureDir(base, ports, certs)


@pytest.fixture
def tomcat11_dir(tmp_path: Path, test_ca: TestCA) -> FixtureDir:
    base = tmp_path / "tomcat11"
    ports = _materialise("tomcat11-server.xml", base, ["main", "plain"])
    conf = base / "conf"
    certs = {"rsa": test_ca.issue("main.example.test", key_type="rsa"), "ec": test_ca.issue("main.example.test"),
             "api": test_ca.issue("api.example.test"), "default": test_ca.issue("plain.example.test")}
    (conf / "rsa.p12").write_bytes(p12_bytes(certs["rsa"], "rsa", "rsa-pass"))
    (conf / "ec.p12").write_bytes(p12_bytes(certs["ec"], "ec", "ec-pass"))
    (conf / "api.crt").write_bytes(certs["api"].cert_pem)
    (conf / "api.key").write_bytes(certs["api"].key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"key-pass")))
    keytool_jks(conf / "default.jks", certs["default"], "mykey", "changeit")
    return FixtureDir(base, ports, certs)


@pytest.fixture
def make_endpoint() -> Callable[..., Endpoint]:
    return endpoint_for


#: The opt-in test kit (test_ca, tlsgate_home, sshd, OpenBao, WinRM peer) and this plugin's own
#: real Tomcat 10 fixture (tomcat10, tomcat10_server).
pytest_plugins = ["tlsgate_testing", "tomcat_peer"]
