"""Reading Tomcat's ``conf/server.xml`` and editing it in place.

Parsing uses expat (a real XML parser), which also tells where each start tag begins in the
file's bytes; :func:`edit_start_tag` then changes or inserts only the attributes it is asked to
inside that one tag, so comments, formatting, entity spellings and every other byte survive.
An ElementTree round-trip would drop comments and rewrite quoting, which operators notice.

Commented-out connectors are invisible to the parser, so they are never reported or edited.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from xml.parsers import expat

from attrs import define, field, frozen
from tlsgate.plugin import ValidationError

#: Tomcat 9's Connector-level TLS attributes and the ``<Certificate>``/``<SSLHostConfig>``
#: attribute each one is an alias for (they configure the ``_default_`` host's first certificate).
LEGACY_CERTIFICATE_ATTRS = {
    "keystoreFile": "certificateKeystoreFile",
    "keystorePass": "certificateKeystorePassword",
    "keystoreType": "certificateKeystoreType",
    "keystoreProvider": "certificateKeystoreProvider",
    "keyAlias": "certificateKeyAlias",
    "keyPass": "certificateKeyPassword",
    "SSLCertificateFile": "certificateFile",
    "SSLCertificateKeyFile": "certificateKeyFile",
    "SSLCertificateChainFile": "certificateChainFile",
    "SSLPassword": "certificateKeyPassword",
}
DEFAULT_HOST = "_default_"


@define(eq=False)
class Element:
    """One element of server.xml with where its start tag sits in the file's bytes."""

    tag: str
    attrs: dict[str, str]
    start: int  # byte offset of "<"
    end: int = -1  # byte offset just after the start tag's ">"
    line: int = 0
    parent: Element | None = field(default=None, repr=False)
    children: list[Element] = field(factory=list, repr=False)

    def find_all(self, tag: str) -> list[Element]:
        return [c for c in self.children if c.tag == tag]

    def iter(self, tag: str) -> Iterator[Element]:
        for child in self.children:
            if child.tag == tag:
                yield child
            yield from child.iter(tag)


@frozen
class CertificateConfig:
    """A ``<Certificate>`` (or the legacy Connector attributes standing for one), normalised to
    the modern attribute names. ``element`` is the tag to edit; ``legacy`` says the names on
    that tag are the Tomcat 9 Connector spellings."""

    element: Element = field(eq=False)
    values: Mapping[str, str]
    legacy: bool = False

    def get(self, modern_name: str) -> str | None:
        return self.values.get(modern_name)

    @property
    def type(self) -> str:
        return self.values.get("type", "UNDEFINED").upper()

    @property
    def uses_pem(self) -> bool:
        return bool(self.values.get("certificateFile")) and not self.values.get("certificateKeystoreFile")

    def attribute_name(self, modern_name: str) -> str:
        """The spelling of ``modern_name`` on the element this configuration lives in."""
        if not self.legacy:
            return modern_name
        for legacy, modern in LEGACY_CERTIFICATE_ATTRS.items():
            if modern == modern_name and legacy in self.element.attrs:
                return legacy
        for legacy, modern in LEGACY_CERTIFICATE_ATTRS.items():
            if modern == modern_name:
                return legacy
        raise KeyError(modern_name)


@frozen
class HostConfig:
    """One TLS virtual host of one connector: the unit tlsgate reports as a node."""

    service: str
    connector: Element = field(eq=False)
    host_name: str
    element: Element | None = field(eq=False)  # None: legacy implicit _default_
    certificates: tuple[CertificateConfig, ...]

    @property
    def port(self) -> int | None:
        return _int(self.connector.attrs.get("port"))

    @property
    def address(self) -> str | None:
        return self.connector.attrs.get("address") or None

    @property
    def protocol(self) -> str:
        return self.connector.attrs.get("protocol", "HTTP/1.1")

    @property
    def is_default(self) -> bool:
        default = self.connector.attrs.get("defaultSSLHostConfigName", DEFAULT_HOST).lower()
        return self.host_name == default

    @property
    def locator(self) -> str:
        """Stable identity inside server.xml: service, address, port and host name."""
        return f"{self.service}/{self.address or '*'}:{self.port}/{self.host_name}"


@frozen
class ServerXml:
    data: bytes
    root: Element = field(eq=False)

    @property
    def shutdown_port(self) -> int | None:
        return _int(self.root.attrs.get("port")) if self.root.tag == "Server" else None

    def host_configs(self) -> list[HostConfig]:
        return list(_host_configs(self.root))

    def plain_connectors(self) -> list[tuple[str, str | None, int | None]]:
        """The plain HTTP connectors (service, address, port): no SSLEnabled, not AJP."""
        out = []
        for service in self.root.find_all("Service") if self.root.tag == "Server" else []:
            for c in service.find_all("Connector"):
                if c.attrs.get("SSLEnabled", "false").strip().lower() == "true":
                    continue
                if "AJP" in c.attrs.get("protocol", "HTTP/1.1").upper():
                    continue
                out.append((service.attrs.get("name", "Catalina"), c.attrs.get("address") or None,
                            _int(c.attrs.get("port"))))
        return out

    def find(self, locator: str) -> HostConfig | None:
        return next((h for h in self.host_configs() if h.locator == locator), None)

    @property
    def encoding(self) -> str:
        m = re.match(rb"^(?:\xef\xbb\xbf)?<\?xml[^>]*encoding=[\"']([A-Za-z0-9._-]+)[\"']", self.data)
        return m.group(1).decode() if m else "utf-8"


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse(data: bytes, *, properties: Mapping[str, str] | None = None, where: str = "server.xml") -> ServerXml:
    """Parse server.xml. ``${name}`` in attribute values is replaced from ``properties``
    (catalina.properties), as Tomcat's digester does; unknown names stay as written.
    Documents that declare entities are refused (entity expansion is an attack surface)."""
    props = dict(properties or {})
    parser = expat.ParserCreate()
    stack: list[Element] = []
    roots: list[Element] = []

    def start(tag: str, attributes: dict[str, str]) -> None:
        values = {k: _substitute(v, props) for k, v in attributes.items()}
        el = Element(tag=tag, attrs=values, start=parser.CurrentByteIndex, line=parser.CurrentLineNumber)
        el.end = _start_tag_end(data, el.start)
        if stack:
            el.parent = stack[-1]
            stack[-1].children.append(el)
        else:
            roots.append(el)
        stack.append(el)

    def end(tag: str) -> None:
        stack.pop()

    def entity_decl(*args: object) -> None:
        raise ValidationError("declares XML entities; refusing to expand them", option=where)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.EntityDeclHandler = entity_decl
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise ValidationError(f"is not well-formed XML: {exc}", option=where) from None
    if not roots:
        raise ValidationError("has no root element", option=where)
    return ServerXml(data=data, root=roots[0])


_PROP = re.compile(r"\$\{([^}]+)\}")


def _substitute(value: str, props: Mapping[str, str]) -> str:
    return _PROP.sub(lambda m: props.get(m.group(1), m.group(0)), value)


def parse_properties(text: str) -> dict[str, str]:
    """A good-enough reader of Java .properties (key=value / key: value, # and ! comments,
    backslash line continuations)."""
    out: dict[str, str] = {}
    logical = ""
    for raw in text.splitlines():
        line = raw.lstrip() if not logical else raw.strip()
        if not logical and (not line or line[0] in "#!"):
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            logical += line[:-1]
            continue
        logical += line
        m = re.match(r"((?:\\.|[^=:\s])+)\s*[=:\s]\s*(.*)$", logical)
        if m:
            out[m.group(1).replace("\\", "")] = m.group(2)
        logical = ""
    return out


def _host_configs(root: Element) -> Iterator[HostConfig]:
    services = root.find_all("Service") if root.tag == "Server" else []
    for service in services:
        service_name = service.attrs.get("name", "Catalina")
        for connector in service.find_all("Connector"):
            if connector.attrs.get("SSLEnabled", "false").strip().lower() != "true":
                continue  # SSLHostConfig children without SSLEnabled do not serve TLS
            legacy = {
                modern: connector.attrs[name]
                for name, modern in LEGACY_CERTIFICATE_ATTRS.items()
                if name in connector.attrs
            }
            explicit = connector.find_all("SSLHostConfig")
            seen_default = False
            for shc in explicit:
                host = shc.attrs.get("hostName", DEFAULT_HOST).lower()
                certs = [
                    CertificateConfig(element=c, values=dict(c.attrs)) for c in shc.find_all("Certificate")
                ]
                # SSLHostConfig-level attributes that Tomcat 8.5/9 also accept on the host itself
                if not certs and any(k.startswith("certificate") for k in shc.attrs):
                    certs = [CertificateConfig(element=shc, values=dict(shc.attrs))]
                if host == DEFAULT_HOST and legacy and not certs:
                    certs = [CertificateConfig(element=connector, values=legacy, legacy=True)]
                seen_default = seen_default or host == DEFAULT_HOST
                yield HostConfig(service_name, connector, host, shc, tuple(certs))
            if legacy and not seen_default:
                yield HostConfig(
                    service_name,
                    connector,
                    DEFAULT_HOST,
                    None,
                    (CertificateConfig(element=connector, values=legacy, legacy=True),),
                )


# -- byte-level editing -------------------------------------------------------------------------

_NAME = re.compile(rb"[A-Za-z_:][-A-Za-z0-9._:]*")


@frozen
class _AttrSpan:
    name: str
    name_start: int
    value_start: int  # just after the opening quote
    value_end: int  # the closing quote
    quote: bytes


def _start_tag_end(data: bytes, start: int) -> int:
    """Offset just after the ``>`` that closes the start tag at ``start`` (quotes respected)."""
    quote = 0
    i = start + 1
    n = len(data)
    while i < n:
        ch = data[i]
        if quote:
            if ch == quote:
                quote = 0
        elif ch in (0x22, 0x27):
            quote = ch
        elif ch == 0x3E:
            return i + 1
        i += 1
    raise ValueError("unterminated start tag")


def _attribute_spans(data: bytes, start: int, end: int) -> list[_AttrSpan]:
    m = _NAME.match(data, start + 1)
    if m is None:
        raise ValueError("not a start tag")
    i = m.end()
    spans: list[_AttrSpan] = []
    while True:
        while i < end and data[i : i + 1].isspace():
            i += 1
        m = _NAME.match(data, i)
        if m is None or i >= end:
            return spans
        name_start, i = i, m.end()
        while data[i : i + 1].isspace():
            i += 1
        if data[i : i + 1] != b"=":
            raise ValueError("attribute without value")
        i += 1
        while data[i : i + 1].isspace():
            i += 1
        quote = data[i : i + 1]
        close = data.index(quote, i + 1)
        spans.append(_AttrSpan(m.group().decode(), name_start, i + 1, close, quote))
        i = close + 1


def escape_attribute(value: str, quote: bytes = b'"', encoding: str = "utf-8") -> bytes:
    """``value`` as the text between ``quote`` characters in an XML attribute."""
    out = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    out = out.replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;")
    out = out.replace('"', "&quot;") if quote == b'"' else out.replace("'", "&apos;")
    return out.encode(encoding, errors="xmlcharrefreplace")


def edit_start_tag(
    data: bytes, element: Element, changes: Mapping[str, str | None], *, encoding: str = "utf-8"
) -> bytes:
    """Return ``data`` with only ``element``'s start tag changed: each attribute in ``changes``
    gets the new value (inserted after the last attribute when missing, on its own line with
    the same indentation when the tag spreads over several lines; ``None`` removes it)."""
    start, end = element.start, element.end
    spans = _attribute_spans(data, start, end)
    by_name = {s.name: s for s in spans}
    edits: list[tuple[int, int, bytes]] = []
    inserts: list[bytes] = []
    for name, value in changes.items():
        span = by_name.get(name)
        if span is None:
            if value is not None:
                inserts.append(name.encode() + b'="' + escape_attribute(value, b'"', encoding) + b'"')
        elif value is None:
            # remove the attribute and the whitespace before it
            lead = span.name_start
            while lead > start and data[lead - 1 : lead].isspace():
                lead -= 1
            edits.append((lead, span.value_end + 1, b""))
        else:
            edits.append((span.value_start, span.value_end, escape_attribute(value, span.quote, encoding)))
    if inserts:
        if spans:
            last = spans[-1]
            at = last.value_end + 1
            sep = _separator_before(data, start, last.name_start)
        else:
            at = _NAME.match(data, start + 1).end()  # type: ignore[union-attr]
            sep = b" "
        edits.append((at, at, b"".join(sep + item for item in inserts)))
    out = bytearray(data)
    for a, b, text in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        out[a:b] = text
    return bytes(out)


def _separator_before(data: bytes, tag_start: int, name_start: int) -> bytes:
    """The whitespace that precedes an attribute: a newline + indentation or a single space."""
    i = name_start
    while i > tag_start and data[i - 1 : i] in (b" ", b"\t"):
        i -= 1
    if data[i - 1 : i] in (b"\n", b"\r"):
        j = i
        while j > tag_start and data[j - 1 : j] in (b"\n", b"\r"):
            j -= 1
        return data[j:name_start]
    return b" "


def insert_child(data: bytes, element: Element, child: bytes) -> bytes:
    """Return ``data`` with ``child`` (one element's text) as the first child of ``element``,
    indented one level deeper than it; a self-closing ``<X .../>`` becomes ``<X ...>...</X>``."""
    line_start = data.rfind(b"\n", 0, element.start) + 1
    indent = data[line_start : element.start]
    if indent.strip():
        indent = b""
    step = b"\t" if indent.startswith(b"\t") else b"    "
    if data[element.end - 2 : element.end] == b"/>":
        cut = element.end - 2
        while data[cut - 1 : cut].isspace():
            cut -= 1
        closing = b"</" + element.tag.encode() + b">"
        text = b">\n" + indent + step + child + b"\n" + indent + closing
        return data[:cut] + text + data[element.end :]
    return data[: element.end] + b"\n" + indent + step + child + data[element.end :]
