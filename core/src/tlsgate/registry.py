"""Loading plugins and dispatching hooks to the plugin that owns an endpoint's type.

Nothing loads at import time: :func:`get_registry` builds a :class:`Registry` on first call.
Plugins come only from the ``tlsgate`` entry-point group (the core's own transports included),
loaded in sorted order; ``TLSGATE_DISABLE_PLUGINS`` (a blocklist) and ``TLSGATE_LOAD_PLUGINS``
(an allowlist: a production gateway that holds private keys should run only the plugins it names)
take comma-separated entry-point or distribution names. Under an allowlist the core's own
plugins (distribution ``tlsgate``) still load unless blocklisted.

**Loading on first use.** Scanning the entry points (``importlib.metadata``, ~25 ms) and
importing and registering every plugin (~90 ms with the bundled ones) is most of the fixed cost
of a command that works on one endpoint, which needs one endpoint type's plugin and one
connection type's. So when :mod:`tlsgate.declarations` holds a valid cache (nothing it was built
from changed: see there), :func:`get_registry` builds the registry from the cached table of
plugins (name, entry point, distribution, version, what each declares) and imports a plugin only
when something of it is used: an endpoint type, connection type, credential store or DNS
provider it declares, or a hook dispatched to it. What it dispatches is what a full load
dispatches: a hook goes to the owner plus every plugin that declares nothing (when there is such
a plugin, every plugin loads with the first use, in a full load's order), and
:meth:`Registry.validate` loads every plugin and calls them in a full load's order. Loading is
under a lock (fleet threads look up types concurrently). A plugin that, once
loaded, declares other names than the cache says (declarations that depend on something the
cache does not watch) makes the registry load every plugin afresh from the entry points.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs
import pluggy

from . import PLUGIN_API, hookspecs
from .errors import PluginError, TlsgateError
from .lifecycle.dns import DnsProviderType
from .models import (
    ConnectionType,
    Credentials,
    CredentialStoreType,
    Endpoint,
    EndpointType,
    InstallResult,
    Node,
    Problem,
    RestartResult,
    ScriptResult,
)

if TYPE_CHECKING:
    from .bundle import CertificateBundle
    from .connection import Connection

ENTRY_POINT_GROUP = "tlsgate"
CORE_DISTRIBUTION = "tlsgate"
#: what each plugin declares, by kind: the registry's attribute and the declaration hook
KINDS = (("endpoint_types", "tlsgate_endpoint_types"), ("connection_types", "tlsgate_connection_types"),
         ("credential_stores", "tlsgate_credential_stores"), ("dns_providers", "tlsgate_dns_providers"))

T = TypeVar("T")


class Declared(Mapping[str, T], Generic[T]):
    """The declared items of one kind (endpoint types, ...) by name, in load order. Under a
    registry built from the cache (:meth:`Registry.deferred`) the names are known before their
    plugin is imported: looking one up imports its owner; ``in``, ``len`` and iterating over the
    names import nothing."""

    def __init__(self, registry: Registry, owners: dict[str, str]) -> None:
        self._registry = registry
        self._owners = owners  # name -> plugin, the registry's own table (filled as plugins load)
        self._items: dict[str, T] = {}

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            pass
        with self._registry._loading:  # another thread may be loading its plugin right now
            owner = self._owners.get(name)
            if owner is not None:
                self._registry._ensure((owner,))
            return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._owners

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._owners))

    def __len__(self) -> int:
        return len(self._owners)

    def __repr__(self) -> str:
        return f"Declared({list(self._owners)})"

    def loaded(self, name: str) -> bool:
        """Whether ``name``'s item is here (its plugin loaded and registered)."""
        return name in self._items

    def put(self, name: str, item: T) -> None:
        self._items[name] = item


@attrs.frozen
class PluginInfo:
    name: str
    distribution: str
    version: str
    module: str
    endpoint_types: tuple[str, ...] = ()
    connection_types: tuple[str, ...] = ()
    credential_stores: tuple[str, ...] = ()
    dns_providers: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _major(version: str) -> int | None:
    head = version.split(".", 1)[0].strip()
    return int(head) if head.isdigit() else None


def check_plugin_api(obj: Any, name: str, distribution: str, version: str = "?") -> None:
    """Refuse a plugin whose declared ``PLUGIN_API`` (in its entry module) has a newer major
    version than this core's: its hooks may expect arguments or exports this core lacks."""
    declared = getattr(obj, "PLUGIN_API", None)
    if declared is None:
        return
    core = _major(PLUGIN_API)
    theirs = _major(declared) if isinstance(declared, str) else None
    where = f"plugin {name!r} (distribution {distribution} {version})"
    if theirs is None:
        raise PluginError(f"{where} declares PLUGIN_API = {declared!r}; it must be a version string such as \"1.0\"")
    if core is not None and theirs > core:
        raise PluginError(
            f"{where} needs plugin API {declared}, but this tlsgate provides {PLUGIN_API}; "
            f"upgrade tlsgate or install a release of {distribution} written for plugin API {core}.x"
        )


def _names_from_env(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None or not raw.strip():
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


class Registry:
    """The loaded plugins, what they declare, and one typed method per hook."""

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm or pluggy.PluginManager("tlsgate")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._objects: dict[str, Any] = {}
        self._type_owner: dict[str, str] = {}
        self._conn_owner: dict[str, str] = {}
        self._store_owner: dict[str, str] = {}
        self._dns_owner: dict[str, str] = {}
        self.endpoint_types: Declared[EndpointType] = Declared(self, self._type_owner)
        self.connection_types: Declared[ConnectionType] = Declared(self, self._conn_owner)
        self.credential_stores: Declared[CredentialStoreType] = Declared(self, self._store_owner)
        self.dns_providers: Declared[DnsProviderType] = Declared(self, self._dns_owner)
        #: the entry point (``module:attr``) of each plugin loaded from one, by name
        self.entry_points: dict[str, str] = {}
        #: a registry from the cache: the plugins not imported yet (name -> their cached entry),
        #: every plugin's name in load order, and the cache's declarations
        self._pending: dict[str, Mapping[str, Any]] = {}
        self._order: list[str] = []
        self._loading = threading.RLock()  # fleet threads look types up concurrently
        self.declared: Any = None  # tlsgate.declarations.Declarations, for a registry from the cache

    # -- loading ------------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        blocked = _names_from_env("TLSGATE_DISABLE_PLUGINS") or set()
        allowed = _names_from_env("TLSGATE_LOAD_PLUGINS")
        import importlib.metadata as md  # ~15 ms: only when the plugins load

        eps = sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value))
        seen: dict[str, str] = {}
        for ep in eps:
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            if ep.name in blocked or dist in blocked:
                continue
            if allowed is not None and not (
                ep.name in allowed or dist in allowed or dist == CORE_DISTRIBUTION
            ):
                continue
            if ep.name in seen:
                raise PluginError(
                    f"two plugins are named {ep.name!r}: {seen[ep.name]} and {dist}; "
                    "uninstall one or block one with TLSGATE_DISABLE_PLUGINS"
                )
            seen[ep.name] = dist
            try:
                obj = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} (distribution {dist} {version}) failed to load: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            self.register(obj, name=ep.name, distribution=dist, version=version)
            self.entry_points[ep.name] = ep.value
        self.finish()

    @classmethod
    def deferred(cls, table: Sequence[Mapping[str, Any]], declared: Any = None) -> Registry:
        """A registry of the plugins in ``table`` (:func:`plugin_table` of a full load, in its
        order), each imported on first use. ``declared``: the declarations cached with it."""
        registry = cls()
        registry.declared = declared
        owners = dict(zip((k for k, _ in KINDS), (registry._type_owner, registry._conn_owner,
                                                  registry._store_owner, registry._dns_owner), strict=True))
        for entry in table:
            name = entry["name"]
            registry._pending[name] = entry
            registry._order.append(name)
            registry.plugins[name] = PluginInfo(
                name=name, distribution=entry["distribution"], version=entry["version"], module=entry["module"],
                **{kind: tuple(entry[kind]) for kind, _ in KINDS})
            for kind, _ in KINDS:
                for item in entry[kind]:
                    owners[kind].setdefault(item, name)
        return registry

    def _ensure(self, names: Sequence[str]) -> None:
        """Import and register the named pending plugins, in a full load's order. When some
        plugin declares nothing (it takes part in every hook, so the order of registration,
        pluggy's call order, matters), every pending plugin loads at once: as a full load."""
        with self._loading:
            wanted = {n for n in names if n in self._pending}
            if not wanted:
                return
            if any(not any(e[kind] for kind, _ in KINDS) for e in self._pending.values()):
                wanted = set(self._pending)
            for name in [n for n in self._order if n in wanted]:
                entry = self._pending[name]
                try:
                    obj = _load_entry_point(entry["value"])
                except Exception as exc:
                    raise PluginError(
                        f"plugin {name!r} (distribution {entry['distribution']} {entry['version']}) failed to load: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                self.register(obj, name=name, distribution=entry["distribution"], version=entry["version"])
                del self._pending[name]
                self.entry_points[name] = entry["value"]
                info = self.plugins[name]
                if info.module != entry["module"] or any(tuple(entry[kind]) != getattr(info, kind)
                                                         for kind, _ in KINDS):
                    self._reload()  # it declares other names than when the cache was made
                    return
            try:
                self.pm.check_pending()
            except pluggy.PluginValidationError:
                self._reload()  # as a full load does, which names the plugin

    def _load_all(self) -> None:
        self._ensure(list(self._pending))

    def _full_load_order(self, impls: Sequence[Any]) -> list[Any]:
        """``impls`` (one hook's, as pluggy lists them: trylast, plain, tryfirst, each group in
        registration order) in the order a full load registers them (plugins loaded on first
        use registered in another)."""
        if not self._order:
            return list(impls)
        rank = {n: i for i, n in enumerate(self._order)}
        return sorted(impls, key=lambda i: (2 if i.tryfirst else 0 if i.trylast else 1,
                                            rank.get(i.plugin_name, len(rank))))

    def _reload(self) -> None:
        """Forget the cached table: every plugin loaded from the entry points, as without a cache
        (the mappings already handed out stay this registry's)."""
        fresh = Registry()
        fresh.load_entry_points()
        tables = {kind: getattr(self, kind) for kind, _ in KINDS}
        fresh._loading = self._loading
        self.__dict__.update(fresh.__dict__)
        for kind, table in tables.items():
            new = getattr(fresh, kind)
            table._owners, table._items, table._registry = new._owners, new._items, self
            setattr(self, kind, table)

    def register(
        self, obj: Any, *, name: str, distribution: str = "?", version: str = "?"
    ) -> None:
        """Register one plugin object (module or instance) and collect its declarations."""
        check_plugin_api(obj, name, distribution, version)
        try:
            self.pm.register(obj, name=name)
        except ValueError as exc:
            raise PluginError(f"plugin {name!r} ({distribution}) cannot register: {exc}") from exc
        self._objects[name] = obj
        types = self._declared(obj, name, distribution, "tlsgate_endpoint_types", EndpointType)
        conns = self._declared(obj, name, distribution, "tlsgate_connection_types", ConnectionType)
        stores = self._declared(obj, name, distribution, "tlsgate_credential_stores", CredentialStoreType)
        dns = self._declared(obj, name, distribution, "tlsgate_dns_providers", DnsProviderType)
        for what, items, table, owners in (
            ("endpoint type", types, self.endpoint_types, self._type_owner),
            ("connection type", conns, self.connection_types, self._conn_owner),
            ("credential store", stores, self.credential_stores, self._store_owner),
            ("DNS provider kind", dns, self.dns_providers, self._dns_owner),
        ):
            for item in items:
                if table.loaded(item.name) or owners.get(item.name, name) != name:
                    other = self.plugins[owners[item.name]]
                    raise PluginError(
                        f"{what} {item.name!r} is declared by two plugins: "
                        f"{other.name} ({other.distribution}) and {name} ({distribution})"
                    )
                table.put(item.name, item)
                owners[item.name] = name
        module = getattr(obj, "__name__", type(obj).__name__)
        self.plugins[name] = PluginInfo(
            name=name,
            distribution=distribution,
            version=version,
            module=module,
            endpoint_types=tuple(t.name for t in types),
            connection_types=tuple(c.name for c in conns),
            credential_stores=tuple(s.name for s in stores),
            dns_providers=tuple(d.name for d in dns),
        )

    def _declared(self, obj: Any, name: str, dist: str, hook: str, kind: type) -> list[Any]:
        """What ``obj`` answers to a declaration hook, read through pluggy (its registered
        implementation, whatever the function is called in the module), checked for type."""
        impls = [i for i in getattr(self.pm.hook, hook).get_hookimpls() if i.plugin is obj]
        items: list[Any] = []
        for hookimpl in impls:
            try:
                items += list(hookimpl.function() or [])
            except Exception as exc:
                raise PluginError(f"plugin {name!r} ({dist}) failed in {hook}: {type(exc).__name__}: {exc}") from exc
        for item in items:
            if not isinstance(item, kind):
                raise PluginError(f"plugin {name!r} ({dist}) {hook} returned {item!r}, not a {kind.__name__}")
        return items

    def finish(self) -> None:
        """Fail loudly on a misspelt hook implementation, then check declared types."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.pm.get_name(exc.plugin) or "?"
            info = self.plugins.get(name)
            where = f" ({info.distribution} {info.version})" if info else ""
            raise PluginError(f"plugin {name!r}{where}: {exc}") from exc
        for etype in self.endpoint_types.values():
            for ctype in etype.connection_types:
                if ctype not in self.connection_types:
                    # A transport plugin may be blocked or missing; the type still loads, and
                    # using that connection type reports what is missing.
                    continue

    # -- dispatch -----------------------------------------------------------------------------
    def owner_of_type(self, type_name: str) -> str:
        try:
            return self._type_owner[type_name]
        except KeyError:
            raise PluginError(f"no installed plugin serves endpoint type {type_name!r}") from None

    def owner_of_connection(self, conn_type: str) -> str:
        try:
            return self._conn_owner[conn_type]
        except KeyError:
            raise PluginError(
                f"no installed plugin provides connection type {conn_type!r}"
            ) from None

    def _caller(self, hook: str, owner: str) -> Callable[..., Any]:
        self._ensure((owner,))
        declaring = {*self._type_owner.values(), *self._conn_owner.values(), *self._store_owner.values(),
                     *self._dns_owner.values()}
        remove = [self._objects[n] for n in declaring if n != owner and n in self._objects]
        return self.pm.subset_hook_caller(hook, remove_plugins=remove)

    def _call(self, hook: str, owner: str, **kwargs: Any) -> Any:
        caller = self._caller(hook, owner)
        try:
            result = caller(**kwargs)
        except TlsgateError:
            raise
        except Exception as exc:
            info = self.plugins[owner]
            raise PluginError(
                f"plugin {owner!r} ({info.distribution} {info.version}) failed in {hook}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if result is None:
            info = self.plugins[owner]
            raise PluginError(f"plugin {owner!r} ({info.distribution}) did not answer {hook}")
        return result

    # -- typed facade: one method per hook ----------------------------------------------------
    def validate(self, endpoint: Endpoint) -> list[Problem]:
        """Every plugin's problems with ``endpoint``. Each implementation is called on its own,
        so that one that crashes is named (a PluginError), like in the other hooks."""
        self._load_all()
        kwargs = {"endpoint": endpoint}
        problems: list[Problem] = []
        for hookimpl in reversed(self._full_load_order(self.pm.hook.validate.get_hookimpls())):  # pluggy's call order
            if hookimpl.hookwrapper or getattr(hookimpl, "wrapper", False):
                continue
            try:
                answer = hookimpl.function(*(kwargs[a] for a in hookimpl.argnames))
            except TlsgateError:
                raise
            except Exception as exc:
                name = self.pm.get_name(hookimpl.plugin) or "?"
                info = self.plugins.get(name)
                where = f" ({info.distribution} {info.version})" if info else ""
                raise PluginError(
                    f"plugin {name!r}{where} failed in validate: {type(exc).__name__}: {exc}"
                ) from exc
            for problem in answer or []:
                if not isinstance(problem, Problem):
                    raise PluginError(f"plugin {self.pm.get_name(hookimpl.plugin)!r} validate returned "
                                      f"{problem!r}, not a Problem")
                problems.append(problem)
        return problems

    def connect(self, endpoint: Endpoint, credentials: Credentials) -> Connection:
        owner = self.owner_of_connection(endpoint.connection.type)
        return self._call("connect", owner, endpoint=endpoint, credentials=credentials)  # type: ignore[no-any-return]

    def discover_nodes(self, endpoint: Endpoint, connection: Connection) -> list[Node]:
        owner = self.owner_of_type(endpoint.type)
        return list(self._call("discover_nodes", owner, endpoint=endpoint, connection=connection))

    def install(
        self,
        endpoint: Endpoint,
        connection: Connection,
        bundle: CertificateBundle,
        nodes: Sequence[Node],
        dry_run: bool,
        alias: str | None,
    ) -> InstallResult:
        owner = self.owner_of_type(endpoint.type)
        return self._call(  # type: ignore[no-any-return]
            "install", owner, endpoint=endpoint, connection=connection, bundle=bundle,
            nodes=list(nodes), dry_run=dry_run, alias=alias,
        )

    def restart(self, endpoint: Endpoint, connection: Connection) -> RestartResult:
        owner = self.owner_of_type(endpoint.type)
        return self._call("restart", owner, endpoint=endpoint, connection=connection)  # type: ignore[no-any-return]

    def run_script(
        self, endpoint: Endpoint, connection: Connection, script: str, args: Sequence[str]
    ) -> ScriptResult:
        owner = self.owner_of_type(endpoint.type)
        return self._call(  # type: ignore[no-any-return]
            "run_script", owner, endpoint=endpoint, connection=connection, script=script, args=list(args)
        )

    def acme_http01(
        self, endpoint: Endpoint, connection: Connection, domain: str, token: str, key_authorization: str,
        http_port: int,
    ) -> Callable[[], None] | None:
        """The endpoint type's http-01 answer (its cleanup), or None when the type has none."""
        owner = self.owner_of_type(endpoint.type)
        caller = self._caller("acme_http01", owner)
        try:
            return caller(endpoint=endpoint, connection=connection, domain=domain, token=token,  # type: ignore[no-any-return]
                          key_authorization=key_authorization, http_port=http_port)
        except TlsgateError:
            raise
        except Exception as exc:
            info = self.plugins[owner]
            raise PluginError(f"plugin {owner!r} ({info.distribution} {info.version}) failed in acme_http01: "
                              f"{type(exc).__name__}: {exc}") from exc

    def answers_http01(self, type_name: str) -> bool:
        """Whether the plugin owning ``type_name`` implements :func:`hookspecs.acme_http01`."""
        name = self.owner_of_type(type_name)
        self._ensure((name,))
        owner = self._objects.get(name)
        return callable(getattr(owner, "acme_http01", None))

    def dns_provider(self, kind: str) -> DnsProviderType:
        try:
            return self.dns_providers[kind]
        except KeyError:
            known = ", ".join(sorted(self.dns_providers)) or "none"
            raise PluginError(f"no installed plugin provides DNS provider kind {kind!r} (installed: {known})") from None

    def credential_store(self, kind: str) -> CredentialStoreType:
        try:
            return self.credential_stores[kind]
        except KeyError:
            known = ", ".join(sorted(self.credential_stores)) or "none"
            raise PluginError(
                f"no installed plugin provides credential store kind {kind!r} (installed: {known})"
            ) from None


def _load_entry_point(value: str) -> Any:
    """What an entry point's ``module:attr.attr`` names (as ``EntryPoint.load``, without
    importing ``importlib.metadata``)."""
    import importlib

    module, _, attrs_ = value.split("[", 1)[0].partition(":")
    obj = importlib.import_module(module.strip())
    for attr in filter(None, attrs_.strip().split(".")):
        obj = getattr(obj, attr)
    return obj


def plugin_table(registry: Registry) -> list[dict[str, Any]]:
    """What :meth:`Registry.deferred` needs of a registry loaded from the entry points: each
    plugin's entry point, distribution, version, module and declared names, in load order."""
    return [{"name": info.name, "value": registry.entry_points[info.name], "distribution": info.distribution,
             "version": info.version, "module": info.module, **{kind: list(getattr(info, kind)) for kind, _ in KINDS}}
            for info in registry.plugins.values()]


_registry: Registry | None = None


def get_registry(*, reload: bool = False) -> Registry:
    """The process-wide registry: from the plugin declarations' cache when it is valid (each
    plugin imported on first use), else loaded from the entry points (and the cache written)."""
    global _registry
    if _registry is None or reload:
        from . import declarations

        _registry = (None if reload else declarations.deferred_registry()) or declarations.load_registry()
    return _registry


def set_registry(registry: Registry | None) -> None:
    """Replace the process-wide registry (tests and embedding applications)."""
    global _registry
    _registry = registry
