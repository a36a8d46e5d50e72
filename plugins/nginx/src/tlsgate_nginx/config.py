"""Reading an nginx configuration through a Connection and finding its server blocks.

Every byte comes through ``connection.read_file`` / ``connection.glob``, so discovery works the
same over ``local`` and ``ssh``. Paths follow nginx's rules: ``include`` and ``ssl_certificate``
paths that are relative resolve against the directory of the main file (nginx's
``conf_prefix``); ``include`` with a glob matches in sorted order, skipping dot files, and may
match nothing; an include without a glob must exist.
"""

from __future__ import annotations

import attrs
from tlsgate.plugin import Connection, OperationError, gc_paused

from .lexer import Directive, LineIndex, parse

_MAX_INCLUDE_DEPTH = 100  # levels of include (a few Python frames each: well under the default limit of 1000)
_GLOB_CHARS = frozenset("*?[")


@attrs.define
class Listen:
    """One ``listen`` of a server block, as nginx reads it."""

    ip: str  # "0.0.0.0" for a bare port or "*", "::" for "[::]", "unix:PATH" for a socket, else as written
    port: int | None  # None for a unix socket
    ssl: bool
    quic: bool = False
    default_server: bool = False
    directive: Directive | None = None
    proxy_protocol: bool = False  # the PROXY protocol header comes before the TLS handshake


@attrs.define(eq=False)
class ServerBlock:
    """An ``http { server { ... } }`` block with what tlsgate needs from it.

    ``cert_directives`` / ``key_directives`` are the block's own ``ssl_certificate`` /
    ``ssl_certificate_key`` (empty when it inherits them from ``http``; then ``inherited`` is
    True and the values come from the http block's directives).
    """

    directive: Directive
    ordinal: int  # index among the server blocks of its file
    names: list[str]
    listens: list[Listen]
    cert_directives: list[Directive]
    key_directives: list[Directive]
    inherited: bool
    ssl_on: bool

    @property
    def file(self) -> str:
        return self.directive.file

    @property
    def locator(self) -> str:
        return f"{self.file}:server[{self.ordinal}]"

    @property
    def certificates(self) -> list[str]:
        return [d.args[0] for d in self.cert_directives if d.args]

    @property
    def keys(self) -> list[str]:
        return [d.args[0] for d in self.key_directives if d.args]


@attrs.define
class NginxConfig:
    """The parsed configuration: every file read (path -> bytes) and the server blocks."""

    main: str
    conf_dir: str
    files: dict[str, bytes]
    tree: list[Directive]
    servers: list[ServerBlock] = attrs.field(factory=list)
    _lines: dict[str, LineIndex] = attrs.field(factory=dict)

    def line(self, directive: Directive) -> int:
        return self.line_at(directive.file, directive.start)

    def line_at(self, file: str, offset: int) -> int:
        index = self._lines.get(file)
        if index is None:
            index = self._lines[file] = LineIndex(self.files[file])
        return index.line(offset)

    def where(self, directive: Directive) -> str:
        return f"{directive.file}:{self.line(directive)}"

    def main_directive(self, name: str) -> Directive | None:
        return next((d for d in self.tree if d.name == name), None)


def load(connection: Connection, main: str) -> NginxConfig:
    """Read ``main`` and every file it includes; collect the http server blocks."""
    with gc_paused():
        return _load(connection, main)


def _load(connection: Connection, main: str) -> NginxConfig:
    path = connection.path
    conf_dir = path.dirname(main) or "."
    files: dict[str, bytes] = {}
    # A file included from several places (a snippet) is parsed once and its directives are
    # shared: edits address directives by (file, offset), so sharing is safe and cheap.
    expanded: dict[str, list[Directive]] = {}
    words: dict[bytes, str] = {}

    def read(file: str) -> bytes:
        data = files.get(file)
        if data is None:
            data = files[file] = connection.read_file(file)
        return data

    chain: list[str] = [main]  # the files being expanded, outermost first

    def expand(directives: list[Directive], depth: int) -> list[Directive]:
        # Splice each include's directives in place of the include, as nginx does.
        out: list[Directive] = []
        for d in directives:
            if d.name == "include" and d.block is None:
                out.extend(include(d, depth))
                continue
            if d.block:
                d.block = expand(d.block, depth)
            out.append(d)
        return out

    def include(d: Directive, depth: int) -> list[Directive]:
        # nginx itself has no limit (a loop overflows its stack); a loop is a file that includes
        # itself through the chain, and only a chain deeper than the parser's own recursion
        # budget is refused (an operator's tree may well nest more than a few dozen levels)
        if depth >= _MAX_INCLUDE_DEPTH:
            raise OperationError(f"{d.file}: includes nest deeper than {_MAX_INCLUDE_DEPTH} levels")
        if len(d.args) != 1:
            raise OperationError(f"{d.file}: include takes one argument")
        pattern = d.args[0]
        if not path.isabs(pattern):
            pattern = path.join(conf_dir, pattern)
        if _GLOB_CHARS.isdisjoint(pattern):
            matches = [pattern]
        else:
            matches = connection.glob(pattern)
        out: list[Directive] = []
        for file in matches:
            st = connection.stat(file)
            if st is None:
                raise OperationError(f"{d.file}: include {file}: no such file", host=connection.host)
            if st.is_dir:
                continue
            if file in chain:
                loop = " -> ".join([*chain[chain.index(file):], file])
                raise OperationError(f"{d.file}: include loop: {loop}")
            tree = expanded.get(file)
            if tree is None:
                chain.append(file)
                try:
                    tree = expanded[file] = expand(parse(read(file), file, words), depth + 1)
                finally:
                    chain.pop()
            out.extend(tree)
        return out

    tree = expand(parse(read(main), main, words), 0)
    config = NginxConfig(main=main, conf_dir=conf_dir, files=files, tree=tree)
    config.servers = find_servers(config)
    return config


def find_servers(config: NginxConfig) -> list[ServerBlock]:
    """The server blocks of every ``http`` block, with inherited certificate directives."""
    servers: list[ServerBlock] = []
    ordinals: dict[str, int] = {}
    for http in config.tree:
        if http.name != "http" or http.block is None:
            continue
        http_certs = [d for d in http.block if d.name == "ssl_certificate"]
        http_keys = [d for d in http.block if d.name == "ssl_certificate_key"]
        http_ssl_on = any(d.name == "ssl" and d.args[:1] == ["on"] for d in http.block)
        for d in http.block:
            if d.name != "server" or d.block is None:
                continue
            ordinal = ordinals.get(d.file, 0)
            ordinals[d.file] = ordinal + 1
            servers.append(_server(d, ordinal, http_certs, http_keys, http_ssl_on))
    _mark_ssl_addresses(servers)
    return servers


def _server(
    d: Directive, ordinal: int, http_certs: list[Directive], http_keys: list[Directive], http_ssl_on: bool
) -> ServerBlock:
    names: list[str] = []
    listens: list[Listen] = []
    certs: list[Directive] = []
    keys: list[Directive] = []
    ssl_on = http_ssl_on
    for child in d.block or ():
        name = child.name
        if name == "listen":
            listen = parse_listen(child)
            if listen is not None:
                listens.append(listen)
        elif name == "server_name":
            names.extend(child.args)
        elif name == "ssl_certificate":
            certs.append(child)
        elif name == "ssl_certificate_key":
            keys.append(child)
        elif name == "ssl" and child.args:
            ssl_on = child.args[0] == "on"
    if not any(child.name == "listen" for child in d.block or ()):
        listens.append(Listen(ip="0.0.0.0", port=80, ssl=False))  # nginx's default (as root)  # noqa: S104
    inherited = not certs and bool(http_certs)
    if inherited:
        certs, keys = http_certs, http_keys
    if ssl_on:
        for listen in listens:
            listen.ssl = True
    return ServerBlock(
        directive=d,
        ordinal=ordinal,
        names=[n for n in names if n != ""],
        listens=listens,
        cert_directives=certs,
        key_directives=keys,
        inherited=inherited,
        ssl_on=ssl_on,
    )


def parse_listen(d: Directive) -> Listen | None:
    """A ``listen`` directive as address + flags (a unix socket: ``ip`` ``unix:PATH``, no port)."""
    if not d.args:
        return None
    addr = d.args[0]
    flags = set(d.args[1:])
    if addr.startswith("unix:"):
        # a block behind a local proxy (HAProxy, a sidecar) that reaches it over a socket still
        # serves its certificate there: discovered and installed like any other, not probed
        return Listen(ip=addr, port=None, ssl="ssl" in flags,
                      default_server="default_server" in flags or "default" in flags, directive=d,
                      proxy_protocol="proxy_protocol" in flags)
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "80"
    elif addr.isdigit():
        host, port = "*", addr
    elif ":" in addr:
        host, _, port = addr.rpartition(":")
    else:
        host, port = addr, "80"
    if not port.isdigit():
        return None
    if host in ("*", ""):
        host = "0.0.0.0"  # noqa: S104 - a listen wildcard, reported as such
    return Listen(
        ip=host,
        port=int(port),
        ssl="ssl" in flags,
        quic="quic" in flags,
        default_server="default_server" in flags or "default" in flags,
        directive=d,
        proxy_protocol="proxy_protocol" in flags,
    )


def _mark_ssl_addresses(servers: list[ServerBlock]) -> None:
    # nginx keeps one set of options per listen address: "ssl" on any server's listen makes
    # the address TLS for every server on it (certbot's _update_vhosts_addrs_ssl does the same).
    # The same holds for proxy_protocol.
    ssl_addresses = {(listen.ip, listen.port) for s in servers for listen in s.listens if listen.ssl}
    proxied = {(listen.ip, listen.port) for s in servers for listen in s.listens if listen.proxy_protocol}
    for s in servers:
        for listen in s.listens:
            if not listen.quic and (listen.ip, listen.port) in ssl_addresses:
                listen.ssl = True
            if not listen.quic and (listen.ip, listen.port) in proxied:
                listen.proxy_protocol = True
