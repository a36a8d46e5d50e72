"""Discovery and edits against the Tomcat 9 (legacy Connector attributes) and Tomcat 11
server.xml fixtures. Debian ships only tomcat10, so these two versions are covered here; the
edits are checked byte for byte and by reading back what Tomcat would load."""

from __future__ import annotations

import difflib

import pytest
from tlsgate import CertificateBundle, Node, ValidationError
from tlsgate.plugin import fingerprint
from tlsgate_testing.certs import TestCA
from tlsgate_testing.connections import LocalConnection
from tlsgate_tomcat import discovery, install, keystore

from .conftest import endpoint_for


def bundle_of(issued) -> CertificateBundle:  # type: ignore[no-untyped-def]
    return CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)


def summary(nodes: list[Node]) -> list[tuple]:
    return [(n.name, n.ip, n.port, n.fingerprint, n.subject, n.state, n.locator) for n in nodes]


def https_nodes(d):  # type: ignore[no-untyped-def]
    return [n for n in discovery.discover(endpoint_for(d.base), LocalConnection()) if n.protocol == "https"]


def test_tomcat9_discovery_reads_legacy_connector_attributes(tomcat9_dir, make_endpoint) -> None:
    d = tomcat9_dir
    every = discovery.discover(make_endpoint(d.base), LocalConnection())
    # the plain HTTP connector is a node too (no certificate), as nginx's and Apache's plain listeners
    assert [(n.name, n.port, n.fingerprint) for n in every if n.protocol == "http"] == [
        ("_default_", 8080, None), ("_default_", 9999, None)]  # 9999: an SSLHostConfig without SSLEnabled
    nodes = [n for n in every if n.protocol == "https"]
    p = d.ports
    assert summary(nodes) == [
        ("_default_", None, p["legacy_jks"], d.certs["legacy"].fingerprint, "CN=legacy.example.test", "down",
         f"Catalina/*:{p['legacy_jks']}/_default_"),
        ("_default_", "127.0.0.1", p["legacy_pem"], d.certs["apr"].fingerprint, "CN=apr.example.test", "down",
         f"Catalina/127.0.0.1:{p['legacy_pem']}/_default_"),
        ("www.example.test", None, p["modern"], d.certs["www"].fingerprint, "CN=www.example.test", "down",
         f"Catalina/*:{p['modern']}/www.example.test"),
    ]
    assert all(n.vendor == "Apache Tomcat" and n.protocol == "https" for n in nodes)
    assert nodes[0].certificate is not None and fingerprint(nodes[0].certificate) == nodes[0].fingerprint


def test_tomcat11_discovery(tomcat11_dir, make_endpoint) -> None:
    d = tomcat11_dir
    nodes = https_nodes(d)
    p = d.ports
    assert summary(nodes) == [
        # several Certificates on one host: the node reports the first (RSA) one
        ("_default_", None, p["main"], d.certs["rsa"].fingerprint, "CN=main.example.test", "down",
         f"Catalina/*:{p['main']}/_default_"),
        ("api.example.test", None, p["main"], d.certs["api"].fingerprint, "CN=api.example.test", "down",
         f"Catalina/*:{p['main']}/api.example.test"),
        ("_default_", "127.0.0.1", p["plain"], d.certs["default"].fingerprint, "CN=plain.example.test", "down",
         f"Catalina/127.0.0.1:{p['plain']}/_default_"),
    ]


def only_tag_changed(old: bytes, new: bytes, tag_start: int) -> None:
    """Every byte outside the one start tag at ``tag_start`` is unchanged."""
    tag_end_old = old.index(b">", tag_start)
    prefix, suffix = old[:tag_start], old[old.index(b">", tag_start) + 1:]
    assert new.startswith(prefix)
    assert new.endswith(suffix)
    assert len(new) - len(suffix) > tag_start
    del tag_end_old


def edit(d, make_endpoint, locator: str, issued):  # type: ignore[no-untyped-def]
    conn = LocalConnection()
    config = discovery.load_config(conn, str(d.base))
    hc = config.xml.find(locator)
    assert hc is not None
    b = bundle_of(issued)
    change = install.plan_change(conn, config, hc, b, 0o600)
    new_xml = install.edit_server_xml(config, [change])
    for path, data, mode in change.files:
        conn.makedirs(conn.path.dirname(path))
        conn.write_file(path, data, mode=mode)
    install.validate_before_restart(conn, str(d.base), new_xml, [change], b)
    return config, change, new_xml


def test_tomcat9_legacy_jks_edit_keeps_legacy_spelling(tomcat9_dir, make_endpoint, test_ca: TestCA) -> None:
    d = tomcat9_dir
    locator = f"Catalina/*:{d.ports['legacy_jks']}/_default_"
    new = test_ca.issue("legacy.example.test")
    config, change, new_xml = edit(d, make_endpoint, locator, new)
    old = config.xml.data
    assert change.changes == {"keystoreFile": f"conf/tlsgate/{d.ports['legacy_jks']}__default_-{new.fingerprint[:12]}.jks"}
    only_tag_changed(old, new_xml, change.certificate.element.start)
    assert old.replace(b'keystoreFile="conf/legacy.jks"',
                       f'keystoreFile="conf/tlsgate/{d.ports["legacy_jks"]}__default_-{new.fingerprint[:12]}.jks"'.encode()) == new_xml
    path = change.files[0][0]
    assert keystore.find_entry(keystore.read_entries(open(path, "rb").read(), "legacy-pass"), "tomcat") is not None
    # what discovery now reads through the edited file
    d.server_xml.write_bytes(new_xml)
    nodes = https_nodes(d)
    assert [n.fingerprint for n in nodes] == [new.fingerprint, d.certs["apr"].fingerprint, d.certs["www"].fingerprint]


def test_tomcat9_legacy_pem_edit(tomcat9_dir, make_endpoint, test_ca: TestCA) -> None:
    d = tomcat9_dir
    locator = f"Catalina/127.0.0.1:{d.ports['legacy_pem']}/_default_"
    new = test_ca.issue("apr.example.test")
    config, change, new_xml = edit(d, make_endpoint, locator, new)
    stem = f"127.0.0.1_{d.ports['legacy_pem']}__default_-{new.fingerprint[:12]}"
    assert change.changes == {
        "SSLCertificateFile": f"conf/tlsgate/{stem}.crt",
        "SSLCertificateKeyFile": f"conf/tlsgate/{stem}.key",
        "SSLCertificateChainFile": f"conf/tlsgate/{stem}.chain.crt",
    }
    only_tag_changed(config.xml.data, new_xml, change.certificate.element.start)
    modes = {p.rsplit(".", 1)[-1]: m for p, _, m in change.files}
    assert modes["key"] == 0o600


def test_tomcat11_ec_bundle_replaces_the_ec_certificate_only(tomcat11_dir, make_endpoint, test_ca: TestCA) -> None:
    d = tomcat11_dir
    locator = f"Catalina/*:{d.ports['main']}/_default_"
    new = test_ca.issue("main.example.test")  # EC
    config, change, new_xml = edit(d, make_endpoint, locator, new)
    assert change.certificate.get("certificateKeyAlias") == "ec"
    assert change.changes == {"certificateKeystoreFile": f"conf/tlsgate/{d.ports['main']}__default_-{new.fingerprint[:12]}.p12"}
    only_tag_changed(config.xml.data, new_xml, change.certificate.element.start)
    assert b'certificateKeystoreFile="conf/rsa.p12"' in new_xml


def test_tomcat11_new_keystore_gets_generated_password_alias_and_keeps_jks(
    tomcat11_dir, make_endpoint, test_ca: TestCA
) -> None:
    """The connector declares no keystore type and its file is JKS (Tomcat's default type): the
    new keystore is JKS too, not silently converted to PKCS12 (issue 14 item 5)."""
    d = tomcat11_dir
    locator = f"Catalina/127.0.0.1:{d.ports['plain']}/_default_"
    new = test_ca.issue("plain.example.test")
    config, change, new_xml = edit(d, make_endpoint, locator, new)
    password = change.changes["certificateKeystorePassword"]
    assert password and len(password) >= 32 and password != "changeit"
    assert change.changes["certificateKeystoreType"] == "JKS"
    assert change.changes["certificateKeyAlias"] == "tomcat"
    assert open(change.files[0][0], "rb").read().startswith(keystore.JKS_MAGIC)
    # the one-line tag got the new attributes on the same line, after the last one
    assert (
        f'<Certificate certificateKeystoreFile="conf/tlsgate/127.0.0.1_{d.ports["plain"]}__default_-{new.fingerprint[:12]}.jks" '
        f'certificateKeystoreType="JKS" certificateKeystorePassword="{password}" '
        'certificateKeyAlias="tomcat"/>'
    ).encode() in new_xml
    only_tag_changed(config.xml.data, new_xml, change.certificate.element.start)
    # a second install generates another password
    _, change2, _ = edit(d, make_endpoint, locator, new)
    assert change2.changes["certificateKeystorePassword"] != password


def test_tomcat11_pem_with_key_password(tomcat11_dir, make_endpoint, test_ca: TestCA) -> None:
    d = tomcat11_dir
    new = test_ca.issue("api.example.test")
    _config, change, _new_xml = edit(d, make_endpoint, f"Catalina/*:{d.ports['main']}/api.example.test", new)
    key_path = next(p for p, _, _ in change.files if p.endswith(".key"))
    assert b"ENCRYPTED PRIVATE KEY" in open(key_path, "rb").read()
    assert "certificateKeyPassword" not in change.changes


def test_no_covered_host_asks_for_node(tomcat11_dir, make_endpoint, test_ca: TestCA) -> None:
    d = tomcat11_dir
    b = bundle_of(test_ca.issue("elsewhere.test"))
    with pytest.raises(ValidationError, match="--node"):
        install.select_hosts(discovery.load_config(LocalConnection(), str(d.base)).host_configs(), [], b)
    hcs = discovery.load_config(LocalConnection(), str(d.base)).host_configs()
    b2 = bundle_of(test_ca.issue("api.example.test"))
    assert [h.host_name for h in install.select_hosts(hcs, [], b2)] == ["api.example.test"]


def test_diff_is_limited_to_changed_attributes(tomcat9_dir, make_endpoint, test_ca: TestCA) -> None:
    d = tomcat9_dir
    new = test_ca.issue("www.example.test")
    config, _change, new_xml = edit(d, make_endpoint, f"Catalina/*:{d.ports['modern']}/www.example.test", new)
    old_lines = config.xml.data.decode().splitlines()
    new_lines = new_xml.decode().splitlines()
    diff = [line for line in difflib.unified_diff(old_lines, new_lines, lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert diff == [
        '-        <Certificate certificateKeystoreFile="conf/www.p12" certificateKeystorePassword="www-pass"',
        '-                     certificateKeystoreType="PKCS12" type="EC"/>',
        f'+        <Certificate certificateKeystoreFile="conf/tlsgate/{d.ports["modern"]}_www.example.test-{new.fingerprint[:12]}.p12"'
        ' certificateKeystorePassword="www-pass"',
        '+                     certificateKeystoreType="PKCS12" type="EC" certificateKeyAlias="tomcat"/>',
    ]


def test_password_from_catalina_properties_is_used_and_unresolved_one_refused(
    tomcat9_dir, make_endpoint, test_ca: TestCA
) -> None:
    d = tomcat9_dir
    xml = d.server_xml.read_bytes().replace(b'keystorePass="legacy-pass"', b'keystorePass="${ks.pass}"')
    d.server_xml.write_bytes(xml)
    locator = f"Catalina/*:{d.ports['legacy_jks']}/_default_"
    with pytest.raises(ValidationError, match="property reference"):
        edit(d, make_endpoint, locator, test_ca.issue("legacy.example.test"))
    (d.base / "conf" / "catalina.properties").write_text("# site\nks.pass=legacy-pass\n")
    nodes = discovery.discover(make_endpoint(d.base), LocalConnection())
    assert nodes[0].fingerprint == d.certs["legacy"].fingerprint
    _, change, new_xml = edit(d, make_endpoint, locator, test_ca.issue("legacy.example.test"))
    assert "keystorePass" not in change.changes and b'keystorePass="${ks.pass}"' in new_xml


@pytest.mark.parametrize("form", ["self-closing", "open"])
def test_sslhostconfig_without_certificate_gets_one(tomcat11_dir, make_endpoint, test_ca: TestCA, form: str) -> None:
    d = tomcat11_dir
    empty = ('<SSLHostConfig hostName="new.example.test" protocols="TLSv1.3" />' if form == "self-closing"
             else '<SSLHostConfig hostName="new.example.test" protocols="TLSv1.3">\n        </SSLHostConfig>')
    xml = d.server_xml.read_bytes().replace(
        b'        <SSLHostConfig hostName="api.example.test">',
        b"        " + empty.encode() + b'\n        <SSLHostConfig hostName="api.example.test">')
    d.server_xml.write_bytes(xml)
    new = test_ca.issue("new.example.test")
    _config, change, new_xml = edit(d, make_endpoint, f"Catalina/*:{d.ports['main']}/new.example.test", new)
    password = change.changes["certificateKeystorePassword"]
    cert_line = (f'<Certificate certificateKeystoreFile="conf/tlsgate/{d.ports["main"]}_new.example.test-{new.fingerprint[:12]}.p12" '
                 f'certificateKeystorePassword="{password}" certificateKeystoreType="PKCS12" '
                 'certificateKeyAlias="tomcat" type="EC" />')
    # both forms end up the same: the new element one level in, the closing tag at the host's indent
    expected = ('<SSLHostConfig hostName="new.example.test" protocols="TLSv1.3">\n'
                f'            {cert_line}\n        </SSLHostConfig>')
    assert new_xml == xml.replace(empty.encode(), expected.encode())
    d.server_xml.write_bytes(new_xml)
    nodes = {n.name: n for n in https_nodes(d)}
    assert nodes["new.example.test"].fingerprint == new.fingerprint
    assert nodes["api.example.test"].fingerprint == d.certs["api"].fingerprint
