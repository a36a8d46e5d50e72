"""The Manager client's parsers and validators (the in-place reload itself runs against the real
Tomcat in test_stock_debian.py): ObjectName quoting, the JMX proxy's listing, which MBean is a
host's, the --manager_url rule, when a change cannot be reloaded in place."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlsgate_tomcat import manager
from tlsgate_tomcat.discovery import load_config
from tlsgate_tomcat.plugin import TomcatOptions

LISTING = """OK - Number of results: 3

Name: Catalina:type=SSLHostConfigCertificate,ThreadPool="https-jsse-nio-127.0.0.1-8443",Host="_default_",name=RSA
modelerType: org.apache.tomcat.util.modeler.BaseModelMBean
certificateKeystoreFile: conf/localhost-rsa.jks
certificateKeystorePassword: changeit

Name: Catalina:type=SSLHostConfigCertificate,ThreadPool="https-jsse-nio-127.0.0.1-8443",Host="b.test",name=EC
certificateKeystoreFile: conf/b.p12

Name: Catalina:type=SSLHostConfigCertificate,ThreadPool="https-jsse-nio-9443",Host="_default_",name=UNDEFINED
certificateFile: conf/pem.crt
"""


def test_listing_parses_into_beans_and_the_host_bean_is_found() -> None:
    beans = manager.parse_beans(LISTING)
    assert [b["Name"].rsplit("name=", 1)[1] for b in beans] == ["RSA", "EC", "UNDEFINED"]
    assert beans[0]["certificateKeystoreFile"] == "conf/localhost-rsa.jks"
    assert manager._find_bean(beans, "_default_", "127.0.0.1", 8443, "RSA") is beans[0]
    assert manager._find_bean(beans, "B.test", None, 8443, "EC") is beans[1]  # host names: case-insensitive
    assert manager._find_bean(beans, "_default_", None, 9443, "UNDEFINED") is beans[2]
    assert manager._find_bean(beans, "_default_", "127.0.0.2", 8443, "RSA") is None  # another address
    assert manager._find_bean(beans, "c.test", None, 8443, "RSA") is None
    domain, props = manager.object_properties(beans[0]["Name"])
    assert domain == "Catalina" and props["ThreadPool"] == "https-jsse-nio-127.0.0.1-8443"


@settings(max_examples=150)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_object_name_quoting_round_trips(value: str) -> None:
    name = f"Catalina:type=ThreadPool,name={manager.quote_value(value)},extra=x"
    domain, props = manager.object_properties(name)
    assert domain == "Catalina" and props["name"] == value and props["extra"] == "x"


@given(st.sampled_from(["https", "ftp", "file", ""]), st.from_regex(r"[a-z0-9.]{1,20}", fullmatch=True))
def test_manager_url_must_be_plain_http(scheme: str, host: str) -> None:
    url = f"{scheme}://{host}/manager" if scheme else f"{host}/manager"
    assert manager.check_url(url) is not None


@given(st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True), st.integers(1, 65535),
       st.from_regex(r"(/[a-z0-9_-]{1,10}){0,3}", fullmatch=True))
def test_http_urls_without_query_or_credentials_are_accepted(host: str, port: int, path: str) -> None:
    assert manager.check_url(f"http://{host}:{port}{path}") is None
    assert manager.check_url(f"http://{host}:{port}{path}?x=1") is not None
    assert manager.check_url(f"http://u:p@{host}:{port}{path}") is not None


def test_options_go_together_and_the_url_is_checked() -> None:
    from tlsgate.plugin import Secret

    assert manager.check_options(TomcatOptions(tomcat_dir="/t", manager_user="u")) == [
        ("--manager_password", "--manager_user and --manager_password go together")]
    assert manager.check_options(TomcatOptions(tomcat_dir="/t", manager_password=Secret("p")))[0][0] == "--manager_user"
    assert manager.check_options(TomcatOptions(tomcat_dir="/t", manager_user="u", manager_password=Secret("p"),
                                               manager_url="https://h/manager"))[0][0] == "--manager_url"
    assert manager.check_options(TomcatOptions(tomcat_dir="/t")) == []


def test_default_url_is_the_first_plain_connector(tmp_path: Path) -> None:
    from tlsgate import ConnectionSpec, Endpoint
    from tlsgate_testing.connections import LocalConnection

    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "server.xml").write_text(
        '<Server port="-1"><Service name="Catalina">'
        '<Connector port="8443" SSLEnabled="true"><SSLHostConfig><Certificate certificateFile="a.crt"/>'
        '</SSLHostConfig></Connector>'
        '<Connector port="8009" protocol="AJP/1.3"/>'
        '<Connector port="8080" address="0.0.0.0" protocol="HTTP/1.1"/>'
        '<Connector port="8081" address="127.0.0.2" protocol="HTTP/1.1"/>'
        '<Engine name="Catalina" defaultHost="localhost"/></Service></Server>')
    config = load_config(LocalConnection(), str(tmp_path))
    endpoint = Endpoint(name="t", type="tomcat", connection=ConnectionSpec(type="local"),
                        options=TomcatOptions(tomcat_dir=str(tmp_path)))
    assert manager.manager_url(endpoint, config) == "http://127.0.0.1:8080/manager"
    endpoint = Endpoint(name="t", type="tomcat", connection=ConnectionSpec(type="local"),
                        options=TomcatOptions(tomcat_dir=str(tmp_path), manager_url="http://127.0.0.1:9/m"))
    assert manager.manager_url(endpoint, config) == "http://127.0.0.1:9/m"


@pytest.mark.parametrize(("attribute", "value", "why"), [
    ("certificateKeystorePassword", "new", "new password"),
    ("certificateChainFile", None, "only a restart applies"),
    ("type", "EC", "only a restart applies"),
])
def test_changes_a_reload_cannot_apply(attribute: str, value: str | None, why: str, tmp_path: Path) -> None:
    from tlsgate_testing.connections import LocalConnection
    from tlsgate_tomcat.install import HostChange

    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "server.xml").write_text(
        '<Server port="-1"><Service name="Catalina"><Connector port="8443" SSLEnabled="true"><SSLHostConfig>'
        '<Certificate certificateKeystoreFile="a.p12" certificateKeystorePassword="p"/></SSLHostConfig>'
        '</Connector><Engine name="Catalina" defaultHost="localhost"/></Service></Server>')
    hc = load_config(LocalConnection(), str(tmp_path)).host_configs()[0]
    fine = HostChange(hc, hc.certificates[0], (), {"certificateKeystoreFile": "conf/tlsgate/x.p12"})
    assert manager._unreloadable([fine]) == ""
    change = HostChange(hc, hc.certificates[0], (), {"certificateKeystoreFile": "conf/tlsgate/x.p12", attribute: value})
    assert why in manager._unreloadable([change])
