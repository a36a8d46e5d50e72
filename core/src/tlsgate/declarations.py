"""What the installed plugins declare (endpoint types, connection types, credential stores, DNS
provider kinds, their options and help), without importing the plugins when nothing changed.

Building ``tlsgate tls add nginx --help`` (or checking ``tls add X``'s type, or ``tls list``'s
"insecure" column) needs only these declarations, but loading them means ``importlib.metadata``
plus every plugin's modules (their drivers, attrs classes, templates): about half of such a
command's start-up. So the declarations are kept as JSON in the user cache directory
(platformdirs; ``TLSGATE_CACHE_DIR`` overrides it), one file per interpreter, ``sys.path`` and
plugin filter (``TLSGATE_LOAD_PLUGINS`` / ``TLSGATE_DISABLE_PLUGINS``), together with what they
were built from:

* the modification time of every ``sys.path`` directory (a distribution installed, removed,
  upgraded or reinstalled adds or removes an entry there, which changes the directory's mtime),
* size and mtime of every ``entry_points.txt`` of every distribution on ``sys.path`` (an edit in
  place),
* size and mtime of every module file of tlsgate and of the plugins' packages, and of any other
  module outside the interpreter's prefixes, loaded when the declarations were built (a plugin's
  source edited in place, in an editable install or in site-packages).

A cache whose recorded facts differ in any way from the files' current ones is rebuilt by loading
the plugins (:func:`load_registry`). The cache also holds the table of plugins (entry point,
distribution, version, what each declares): with it, :func:`tlsgate.registry.get_registry`
imports a plugin only when it is used (:func:`deferred_registry`). A cache is not written while any of those
files changed in the last :data:`RACY_SECONDS` (a change within the file system's timestamp
granularity after they were read would otherwise go unseen, git's "racy clean" case), nor when a
declaration holds a value JSON cannot carry exactly. When the process already loaded the
registry (or a test set one), its declarations are used and no cache is read.
"""

from __future__ import annotations

import binascii
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .secret import Secret

if TYPE_CHECKING:
    from .registry import Registry

FORMAT = 3
RACY_SECONDS = 2.0
_FILTER_VARS = ("TLSGATE_LOAD_PLUGINS", "TLSGATE_DISABLE_PLUGINS")
_TYPES: dict[str, type] = {"str": str, "int": int, "bool": bool, "Secret": Secret}
_SPEC_FIELDS = ("name", "help", "required", "default", "secret", "min_len", "max_len", "min", "max", "choices",
                "metavar", "repeat")


def join_repeated(separator: str | None, values: str | Sequence[str] | None) -> str | None:
    """The stored value of a repeatable flag's values (None when it was not given): joined with
    the option's ``repeat`` separator. Shared by :class:`Spec` and
    :class:`tlsgate.options.OptionSpec` (this module stays free of attrs for start-up)."""
    if values is None or isinstance(values, str):
        return values
    return separator.join(values) if values and separator is not None else None


class Spec:
    """One declared option as the command line needs it (the fields of
    :class:`tlsgate.options.OptionSpec`, without its validation)."""

    __slots__ = ("choices", "default", "help", "max", "max_len", "metavar", "min", "min_len", "name", "repeat",
                 "required", "secret", "type")

    def __init__(self, data: Mapping[str, Any]) -> None:
        for field in _SPEC_FIELDS:
            setattr(self, field, data.get(field))
        self.type = _TYPES[data["type"]]
        if self.choices is not None:
            self.choices = tuple(self.choices)

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    def joined(self, values: str | Sequence[str] | None) -> str | None:
        return join_repeated(self.repeat, values)


class Declared:
    """One declared endpoint type, connection type, credential store or DNS provider kind: its
    ``name``, ``description``, ``options`` (:class:`Spec`), and for an endpoint type its
    ``connection_types``, for a connection type ``insecure``."""

    __slots__ = ("connection_types", "description", "insecure", "name", "options")

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.name: str = data["name"]
        self.description: str = data.get("description", "")
        self.connection_types: tuple[str, ...] = tuple(data.get("connection_types", ()))
        self.insecure: bool = bool(data.get("insecure", False))
        self.options: tuple[Spec, ...] = tuple(Spec(s) for s in data.get("options", ()))


class Declarations:
    """Everything declared, by kind and name."""

    KINDS = ("endpoint_types", "connection_types", "credential_stores", "dns_providers")

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.endpoint_types: dict[str, Declared] = _table(data["endpoint_types"])
        self.connection_types: dict[str, Declared] = _table(data["connection_types"])
        self.credential_stores: dict[str, Declared] = _table(data["credential_stores"])
        self.dns_providers: dict[str, Declared] = _table(data["dns_providers"])


def _table(items: Iterable[Mapping[str, Any]]) -> dict[str, Declared]:
    return {item["name"]: Declared(item) for item in items}


class _Unrepresentable(Exception):
    """A declaration holds a value the JSON cache cannot carry exactly."""


def _json_value(value: Any) -> Any:
    if value is None or type(value) in (str, int, bool, float):
        return value
    if type(value) in (tuple, list) and all(type(v) is str for v in value):
        return list(value)
    raise _Unrepresentable(repr(value))


def _spec_data(spec: Any) -> dict[str, Any]:
    type_name = next((n for n, t in _TYPES.items() if t is spec.type), None)
    if type_name is None:
        raise _Unrepresentable(repr(spec.type))
    return {"type": type_name, **{f: _json_value(getattr(spec, f)) for f in _SPEC_FIELDS}}


def _data_from_registry(registry: Registry) -> dict[str, Any]:
    """The registry's declarations as plain JSON data (raises :class:`_Unrepresentable`)."""
    from .options import option_specs

    def entry(item: Any, **extra: Any) -> dict[str, Any]:
        return {"name": item.name, "description": _json_value(item.description),
                "options": [_spec_data(s) for s in option_specs(item.options)], **extra}

    return {
        "endpoint_types": [entry(t, connection_types=list(t.connection_types))
                           for t in registry.endpoint_types.values()],
        "connection_types": [entry(c, insecure=bool(c.insecure)) for c in registry.connection_types.values()],
        "credential_stores": [entry(s) for s in registry.credential_stores.values()],
        "dns_providers": [entry(d) for d in registry.dns_providers.values()],
    }


def _loose(registry: Registry) -> Declarations:
    """Declarations read straight from a loaded registry (any value allowed: not cached)."""
    from .options import option_specs

    class _Item(Declared):
        __slots__ = ()

        def __init__(self, item: Any) -> None:
            self.name = item.name
            self.description = item.description
            self.connection_types = tuple(getattr(item, "connection_types", ()))
            self.insecure = bool(getattr(item, "insecure", False))
            self.options = option_specs(item.options)  # type: ignore[assignment]

    decl = Declarations({k: [] for k in Declarations.KINDS})
    for kind in Declarations.KINDS:
        setattr(decl, kind, {name: _Item(item) for name, item in getattr(registry, kind).items()})
    return decl


# -- the cache ------------------------------------------------------------------------------------
def cache_dir() -> Path:
    env = os.environ.get("TLSGATE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    if sys.platform.startswith("linux"):
        # platformdirs' rule on Linux (XDG), written out: importing platformdirs costs ~3 ms
        # of a command that starts in ~50 ms
        xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
        return Path(xdg if os.path.isabs(xdg) else os.path.expanduser("~/.cache")) / "tlsgate"
    import platformdirs

    return Path(platformdirs.user_cache_dir("tlsgate", appauthor=False))


def _paths() -> list[str]:
    return [os.path.abspath(p or os.curdir) for p in sys.path]


def _ident() -> str:
    """What a cache file is for: this interpreter, ``sys.path`` and plugin filter."""
    return json.dumps([FORMAT, sys.executable, sys.version, _paths(), [os.environ.get(v, "") for v in _FILTER_VARS]])


def cache_file(ident: str | None = None) -> Path:
    """The cache file of :func:`_ident` (named by a CRC: the file holds the whole ident, and one
    for another ident is not used; hashlib would load OpenSSL, ~10 ms of start-up)."""
    crc = binascii.crc32((ident or _ident()).encode())
    return cache_dir() / f"plugins-{crc:08x}.json"


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


def _distribution_files(paths: list[str]) -> list[str]:
    """The ``entry_points.txt`` path of every distribution's metadata directory on ``paths``."""
    files = []
    for entry in paths:
        try:
            names = os.listdir(entry)
        except OSError:
            continue
        files += [os.path.join(entry, n, "entry_points.txt") for n in sorted(names)
                  if n.endswith((".dist-info", ".egg-info"))]
    return files


def _module_files(packages: set[str]) -> list[str]:
    """Files of the loaded modules outside the interpreter's prefixes (editable sources), and of
    every module of ``packages`` (tlsgate's and the plugins', wherever they are installed)."""
    prefixes = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix})
    files = set()
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and (not path.startswith(prefixes) or name.split(".", 1)[0] in packages):
            files.add(path)
    return sorted(files)


def _unchanged(recorded: Mapping[str, Any]) -> bool:
    return all(_stat(path) == facts for path, facts in recorded.items())


def _read_cache() -> tuple[Declarations, list[dict[str, Any]]] | None:
    """The cached declarations and plugin table, when nothing they were built from changed
    (checked once per process: the answer is kept)."""
    global _valid
    ident = _ident()
    if _valid is not None and _valid[0] == ident:
        return _valid[1]
    try:
        data = json.loads(cache_file(ident).read_bytes())
        if data.get("ident") != ident or not _unchanged(data["files"]):
            return None
        table = data["plugins"]
        if not (isinstance(table, list) and all(isinstance(e, dict) for e in table)):
            return None
        _valid = (ident, (Declarations(data["declarations"]), table))
        return _valid[1]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # absent, unreadable or not ours: rebuilt from the plugins


_valid: tuple[str, tuple[Declarations, list[dict[str, Any]]]] | None = None


def deferred_registry() -> Registry | None:
    """A registry that imports each plugin on first use (:meth:`Registry.deferred`), from the
    cache; None when there is no valid cache."""
    cached = _read_cache()
    if cached is None:
        return None
    from .registry import Registry

    return Registry.deferred(cached[1], cached[0])


def load_registry() -> Registry:
    """A registry of every plugin, loaded from the entry points; writes the cache from it (the
    facts are taken before the plugins load: a change while they load shows next time)."""
    from .registry import Registry, plugin_table

    started = time.time()
    paths = _paths()
    files = {p: _stat(p) for p in [*paths, *_distribution_files(paths)]}
    registry = Registry()
    registry.load_entry_points()
    try:
        data = _data_from_registry(registry)
        table = plugin_table(registry)
    except _Unrepresentable:
        return registry  # its declarations are read from it, uncached
    packages = {__package__, *(info.module.split(".", 1)[0] for info in registry.plugins.values())}
    files.update({p: _stat(p) for p in _module_files(packages) if p not in files})
    _write_cache(files, data, table, started)
    return registry


def _write_cache(files: dict[str, Any], data: dict[str, Any], table: list[dict[str, Any]], started: float) -> None:
    newest = max((facts[0] for facts in files.values() if facts), default=0)
    if newest >= (started - RACY_SECONDS) * 1e9:
        return  # something changed a moment ago: not trusted yet (see the module's docstring)
    ident = _ident()
    target = cache_file(ident)
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"ident": ident, "files": files, "declarations": data, "plugins": table}))
        os.replace(tmp, target)
    except OSError:
        pass  # a read-only cache directory only costs the next command the plugin load


_current: tuple[Any, Declarations] | None = None


def declarations() -> Declarations:
    """What the installed plugins declare: from the process's registry when it is loaded, else
    from the cache when nothing it was built from changed, else by loading the plugins."""
    global _current
    reg = sys.modules.get(f"{__package__}.registry")  # not imported for nothing (pluggy, models)
    loaded = getattr(reg, "_registry", None)
    if loaded is not None:
        if getattr(loaded, "declared", None) is not None:  # a registry from the cache: its declarations, no plugin loaded
            return loaded.declared  # type: ignore[no-any-return]
        if _current is None or _current[0] is not loaded:
            try:
                _current = (loaded, Declarations(_data_from_registry(loaded)))
            except _Unrepresentable:
                _current = (loaded, _loose(loaded))
        return _current[1]
    if _current is not None and _current[0] is None:
        return _current[1]
    cached = _read_cache()
    if cached is not None:
        _current = (None, cached[0])
        return cached[0]
    from . import registry as reg

    reg.get_registry()  # no valid cache: every plugin loaded (load_registry), the cache written
    return declarations()  # from the loaded registry
