"""server.xml parsing and in-place attribute edits (example-based and property-based)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlsgate import ValidationError
from tlsgate_tomcat import serverxml

DOC = b"""<?xml version="1.0" encoding="UTF-8"?>
<!-- <Connector port="1" SSLEnabled="true"/> in a comment -->
<Server port="8005" shutdown="SHUTDOWN">
  <Service name="S1">
    <Connector port="8443" SSLEnabled="true"
               keystoreFile="${catalina.base}/k.jks"  keystorePass='a"b'>
      <SSLHostConfig hostName="B.Example" ><Certificate certificateFile="x.crt" /></SSLHostConfig>
    </Connector>
    <Connector port="8444" SSLEnabled="false"><SSLHostConfig><Certificate certificateFile="y"/></SSLHostConfig></Connector>
  </Service>
</Server>
"""


def test_parse_finds_tls_hosts_with_legacy_default_and_lowercased_names() -> None:
    xml = serverxml.parse(DOC, properties={"catalina.base": "/srv/tc"})
    hosts = xml.host_configs()
    assert [(h.service, h.port, h.host_name) for h in hosts] == [("S1", 8443, "b.example"), ("S1", 8443, "_default_")]
    legacy = hosts[1].certificates[0]
    assert legacy.legacy and legacy.values == {
        "certificateKeystoreFile": "/srv/tc/k.jks", "certificateKeystorePassword": 'a"b'}
    assert legacy.attribute_name("certificateKeystoreFile") == "keystoreFile"
    assert legacy.attribute_name("certificateKeyAlias") == "keyAlias"
    assert xml.shutdown_port == 8005


def test_start_tag_offsets_point_at_the_tag() -> None:
    xml = serverxml.parse(DOC)
    for hc in xml.host_configs():
        el = hc.certificates[0].element
        assert DOC[el.start:el.end].startswith(b"<" + el.tag.encode())
        assert DOC[el.start:el.end].endswith(b">")


def test_entities_and_bad_xml_are_refused() -> None:
    evil = b'<?xml version="1.0"?><!DOCTYPE Server [<!ENTITY a "x">]><Server/>'
    with pytest.raises(ValidationError, match="entities"):
        serverxml.parse(evil)
    with pytest.raises(ValidationError, match="well-formed"):
        serverxml.parse(b"<Server><Service></Server>")


def test_edit_replaces_inserts_and_removes_only_named_attributes() -> None:
    xml = serverxml.parse(DOC)
    connector = xml.host_configs()[1].connector
    out = serverxml.edit_start_tag(DOC, connector, {"keystorePass": "n&<'\"", "keyAlias": "tc", "port": None})
    assert out.replace(b' keyAlias="tc"', b"") == DOC.replace(
        b"keystorePass='a\"b'", b"keystorePass='n&amp;&lt;&apos;\"'").replace(b' port="8443"', b"")
    again = serverxml.parse(out).host_configs()[1].certificates[0]
    assert again.values["certificateKeystorePassword"] == "n&<'\""
    assert again.values["certificateKeyAlias"] == "tc"


def test_insert_on_own_line_when_the_last_attribute_starts_a_line() -> None:
    doc = b'<Server>\n  <Certificate a="1"\n               b="2"/>\n</Server>'
    el = serverxml.parse(doc).root.children[0]
    assert serverxml.edit_start_tag(doc, el, {"c": "3"}) == (
        b'<Server>\n  <Certificate a="1"\n               b="2"\n               c="3"/>\n</Server>')


def test_properties_reader() -> None:
    props = serverxml.parse_properties("# c\n! c\na=1\nb : two words\nlong=x\\\n   y\n")
    assert props == {"a": "1", "b": "two words", "long": "xy"}


values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40).filter(
    lambda s: all(ch in "\t\n\r" or ord(ch) >= 0x20 for ch in s) and "\ufffe" not in s and "\uffff" not in s)
names = st.sampled_from(["certificateKeystoreFile", "certificateKeystorePassword", "certificateKeyAlias", "x"])


@settings(max_examples=150, deadline=None)
@given(changes=st.dictionaries(names, st.one_of(st.none(), values), max_size=4), quote=st.sampled_from(["'", '"']))
def test_edit_round_trips_through_the_parser(changes: dict[str, str | None], quote: str) -> None:
    doc = (f'<?xml version="1.0"?>\n<!-- keep -->\n<Server>\n <Certificate certificateKeystoreFile={quote}a.p12{quote}\n'
           f'    type="RSA" certificateKeystorePassword={quote}p{quote}/>\n <!-- keep 2 -->\n</Server>\n').encode()
    el = serverxml.parse(doc).root.children[0]
    out = serverxml.edit_start_tag(doc, el, changes)
    got = serverxml.parse(out).root.children[0]
    expected = dict(el.attrs)
    for k, v in changes.items():
        if v is None:
            expected.pop(k, None)
        else:
            expected[k] = v
    assert got.attrs == expected
    assert out[: el.start] == doc[: el.start]
    assert out[got.end:] == doc[el.end:]


# -- property: whatever the formatting, the TLS hosts found are the ones the document holds -------

hostnames = st.sampled_from(["a.test", "B.Test", "*.wild.test", "_default_"])
spaces = st.sampled_from([" ", "\n    ", "\t", "  \n\t "])


@st.composite
def documents(draw):  # type: ignore[no-untyped-def]
    """(server.xml bytes, expected [(port, host name)]) with random quoting, spacing, comments,
    commented-out connectors and non-TLS connectors."""
    quote = draw(st.sampled_from(["'", '"']))
    sp = draw(spaces)
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<!-- head -->\n<Server port="-1">\n<Service name="S">\n']
    expected = []
    for i in range(draw(st.integers(1, 4))):
        port = 8000 + i
        kind = draw(st.sampled_from(["tls", "plain", "commented", "disabled"]))
        hosts = draw(st.lists(hostnames, min_size=1, max_size=3, unique_by=str.lower))
        inner = "".join(
            f"<SSLHostConfig{sp}hostName={quote}{h}{quote}>{sp}<Certificate{sp}certificateKeystoreFile="
            f"{quote}conf/{i}.p12{quote}{sp}type={quote}RSA{quote}/></SSLHostConfig><!-- c -->"
            for h in hosts)
        enabled = {"tls": "true", "plain": None, "commented": "true", "disabled": "false"}[kind]
        attr = f"{sp}SSLEnabled={quote}{enabled}{quote}" if enabled else ""
        connector = f"<Connector{sp}port={quote}{port}{quote}{attr}>{inner}</Connector>\n"
        if kind == "commented":
            connector = "<!--\n" + connector.replace("<!-- c -->", "") + "-->\n"  # comments do not nest
        elif kind == "tls":
            expected += [(port, h.lower()) for h in hosts]
        parts.append(connector)
    parts.append("</Service>\n</Server>\n")
    return "".join(parts).encode(), expected


@settings(max_examples=100, deadline=None)
@given(doc=documents())
def test_parse_finds_exactly_the_tls_hosts(doc) -> None:  # type: ignore[no-untyped-def]
    data, expected = doc
    hosts = serverxml.parse(data).host_configs()
    assert [(h.port, h.host_name) for h in hosts] == expected
    for h in hosts:  # and every reported tag is where the bytes say it is
        el = h.certificates[0].element
        assert data[el.start:el.end].startswith(b"<Certificate") and data[el.end - 2:el.end] == b"/>"
