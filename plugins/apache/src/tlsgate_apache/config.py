"""The effective configuration: httpd's own view (``-S``, ``DUMP_INCLUDES``, ``DUMP_MODULES``)
joined with the files it names, parsed byte-exactly.

httpd tells us which vhosts exist, on which addresses, under which names, and where each
``<VirtualHost>`` starts (file:line); it does not say which certificate files a vhost reads. For
that we walk the same files from the main config, following ``Include``/``IncludeOptional``
(globs, directories, paths relative to ServerRoot) and evaluating ``<IfModule>`` /
``<IfDefine>`` with the modules and defines httpd reported, and only ever include a file that
httpd's own ``DUMP_INCLUDES`` lists.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable

import attrs
from tlsgate.plugin import Connection, OperationError

from .control import RunConfig
from .lexer import ConfigSyntaxError, Directive, parse

SSL_DIRECTIVES = {
    "sslengine",
    "sslcertificatefile",
    "sslcertificatekeyfile",
    "sslcertificatechainfile",
}
#: the directives the walk reads (sections are always kept)
_WALKED = frozenset({"include", "includeoptional", "servername", "serveralias", *SSL_DIRECTIVES})
_VAR = re.compile(r"\$\{([A-Za-z0-9_.]+)\}")
_MAX_DEPTH = 64


@attrs.define(eq=False)
class VHostSection:
    """One ``<VirtualHost>`` section and the SSL directives active inside it (Includes and
    IfModule blocks flattened, in order)."""

    directive: Directive
    directives: list[Directive] = attrs.field(factory=list)
    #: a ServerName of its own (without one httpd shows its fallback name)
    server_name: bool = False
    #: its ServerAlias names, ``${VAR}`` expanded (httpd's dump lists them only for a vhost that
    #: shares its address with another)
    aliases: list[str] = attrs.field(factory=list)

    @property
    def file(self) -> str:
        return self.directive.file

    @property
    def line(self) -> int:
        return self.directive.line

    @property
    def locator(self) -> str:
        return f"{self.file}:{self.line}"

    def named(self, lname: str) -> list[Directive]:
        return [d for d in self.directives if d.lname == lname]

    @property
    def ssl_engine(self) -> bool | None:
        engines = self.named("sslengine")
        if not engines:
            return None
        return engines[-1].args[:1] != [] and engines[-1].args[0].lower() in ("on", "optional")


@attrs.define(eq=False)
class ApacheConfig:
    """What httpd and its files say, for discovery and install."""

    run: RunConfig
    files: dict[str, bytes] = attrs.field(factory=dict)
    vhosts: dict[tuple[str, int], VHostSection] = attrs.field(factory=dict)
    server_level: list[Directive] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)
    #: files read ahead, taken by the walk as it reaches them (empty after :func:`load`)
    read_ahead: dict[str, tuple[bytes, list[Directive]]] = attrs.field(factory=dict, repr=False)
    #: the certificate files discovery read (resolved paths, in order of first use)
    certificate_paths: list[str] = attrs.field(factory=list, repr=False)
    #: the directories an Include's glob or directory argument listed
    listed_dirs: set[str] = attrs.field(factory=set, repr=False)

    def inputs(self) -> set[str]:
        """Every file and directory (POSIX paths) the walk's result depends on: the files read,
        the directories holding them, the directories a glob or directory Include listed."""
        return {*self.files, *(p.rsplit("/", 1)[0] or "/" for p in self.files), *self.listed_dirs}

    @property
    def server_ssl_engine(self) -> bool:
        engines = [d for d in self.server_level if d.lname == "sslengine"]
        return bool(engines) and engines[-1].args[:1] != [] and engines[-1].args[0].lower() in ("on", "optional")

    def server_named(self, lname: str) -> list[Directive]:
        return [d for d in self.server_level if d.lname == lname]

    def expand(self, value: str) -> str | None:
        """``${VAR}`` replaced from httpd's defines; None when one is unknown."""
        if "${" not in value:
            return value
        missing = False

        def sub(m: re.Match[str]) -> str:
            nonlocal missing
            if m.group(1) in self.run.defines:
                return self.run.defines[m.group(1)]
            missing = True
            return m.group(0)

        out = _VAR.sub(sub, value)
        return None if missing else out

    def resolve(self, connection: Connection, value: str) -> str | None:
        """A file argument as an absolute path (relative ones are against ServerRoot)."""
        expanded = self.expand(value) if "${" in value else value
        if expanded is None:
            return None
        path = connection.path
        if path is posixpath:  # posixpath.isabs and join, inline (once per certificate path)
            if expanded.startswith("/"):
                return expanded
            root = self.run.server_root
            return root + expanded if not root or root.endswith("/") else f"{root}/{expanded}"
        if path.isabs(expanded):
            return expanded
        return path.join(self.run.server_root, expanded)

    def line_at(self, file: str, offset: int) -> int:
        return self.files[file].count(b"\n", 0, offset) + 1


def _active(d: Directive, config: ApacheConfig, connection: Connection) -> bool:
    """Whether a conditional section's body is read by httpd."""
    arg = d.args[0] if d.args else ""
    negate = arg.startswith("!")
    arg = arg[1:] if negate else arg
    if d.lname == "ifmodule":
        modules = config.run.modules
        m = re.fullmatch(r"(?:mod_)?(.+?)\.c", arg)
        name = f"{m.group(1)}_module" if m else arg
        result = name in modules if modules else True
    elif d.lname == "ifdefine":
        result = arg in config.run.defines
    elif d.lname == "iffile":
        path = config.resolve(connection, arg)
        result = bool(path and connection.exists(path))
    else:  # IfVersion, IfDirective, IfSection: httpd 2.4 has all we edit
        return True
    return result != negate


def _include_targets(d: Directive, config: ApacheConfig, connection: Connection) -> list[str]:
    out: list[str] = []
    for arg in d.args:
        path = config.resolve(connection, arg)
        if path is None:
            config.notes.append(f"{d.where()}: {d.name} {arg}: unknown variable, not followed")
            continue
        if any(ch in path for ch in "*?["):
            head = path.split("/")
            wild = next(i for i, part in enumerate(head) if any(ch in part for ch in "*?["))
            config.listed_dirs.add("/".join(head[:wild]) or "/")
            if config.run.includes:  # httpd lists the files it read (never a directory): no stat each
                out += [p for p in connection.glob(path) if p in config.run.includes]
            else:
                out += [p for p in connection.glob(path) if not (connection.stat(p) or _DIR).is_dir]
            continue
        st = connection.stat(path)
        if st is not None and st.is_dir:
            out += _dir_files(connection, path, config.listed_dirs)
        elif st is not None:
            out.append(path)
    return out


class _Dir:
    is_dir = True


_DIR = _Dir()


def _dir_files(connection: Connection, directory: str, listed: set[str]) -> list[str]:
    listed.add(directory)
    out: list[str] = []
    for name in connection.listdir(directory):
        if name.startswith("."):
            continue
        p = connection.path.join(directory, name)
        st = connection.stat(p)
        if st is not None and st.is_dir:
            out += _dir_files(connection, p, listed)
        elif st is not None:
            out.append(p)
    return out


def _read(config: ApacheConfig, connection: Connection, path: str, trees: dict[str, list[Directive]]) -> list[Directive]:
    if path not in trees:
        ahead = config.read_ahead.pop(path, None)
        if ahead is not None:  # read and lexed while httpd ran (see speculate.py)
            config.files[path], trees[path] = ahead
            return trees[path]
        data = connection.read_file(path)
        config.files[path] = data
        try:
            trees[path] = parse(data, path, keep=_WALKED)
        except ConfigSyntaxError as exc:
            raise OperationError(f"cannot parse {exc}") from None
    return trees[path]


def _walk(
    directives: Iterable[Directive],
    config: ApacheConfig,
    connection: Connection,
    trees: dict[str, list[Directive]],
    vhost: VHostSection | None,
    depth: int,
) -> None:
    if depth > _MAX_DEPTH:
        raise OperationError("Include nesting deeper than 64 levels (a loop?)")
    for d in directives:
        name = d.lname
        if d.children is not None:  # a section (d.is_section, without the property call)
            if name in ("ifmodule", "ifdefine", "iffile", "ifversion", "ifdirective", "ifsection"):
                if _active(d, config, connection):
                    _walk(d.children or (), config, connection, trees, vhost, depth)
            elif name == "virtualhost" and vhost is None:
                section = VHostSection(d)
                config.vhosts[(d.file, d.line)] = section
                _walk(d.children or (), config, connection, trees, section, depth)
            continue  # <Directory>, <Location>, <If>...: no certificate directives live there
        if name in ("include", "includeoptional"):
            for path in _include_targets(d, config, connection):
                if config.run.includes and path not in config.run.includes:
                    continue  # httpd did not read it (a condition we evaluate differently): neither do we
                _walk(_read(config, connection, path, trees), config, connection, trees, vhost, depth + 1)
        elif name in SSL_DIRECTIVES:
            (vhost.directives if vhost is not None else config.server_level).append(d)
        elif name == "servername" and vhost is not None:
            vhost.server_name = True  # the vhost names itself (else: it is its address's default)
        elif name == "serveralias" and vhost is not None:
            vhost.aliases += [a for a in map(config.expand, d.args) if a]


def load(connection: Connection, run: RunConfig,
         read_ahead: dict[str, tuple[bytes, list[Directive]]] | None = None) -> ApacheConfig:
    """Parse every file httpd reads, from its main config file down. ``read_ahead``: files
    already read and lexed (path: bytes and tree), used when the walk reaches that path."""
    config = ApacheConfig(run=run, read_ahead=dict(read_ahead or {}))
    trees: dict[str, list[Directive]] = {}
    _walk(_read(config, connection, run.main_file, trees), config, connection, trees, None, 0)
    config.read_ahead = {}  # what the walk did not reach is not httpd's configuration
    return config
