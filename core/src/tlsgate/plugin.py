"""What a plugin author imports: everything a driver needs, and nothing else of tlsgate.

Quick start::

    import attrs
    from tlsgate.plugin import impl, option, EndpointType, Node, InstallResult

    PLUGIN_API = "1.0"  # the contract this plugin is written for (see below)

    @attrs.frozen
    class MyOptions:
        config: str = option(help="Path to the server's config.", required=True, max_len=4096)

    @impl
    def tlsgate_endpoint_types():
        return [EndpointType(name="myserver", description="My server",
                             connection_types=("local", "ssh"), local_platforms=("linux",),
                             options=MyOptions)]

    @impl
    def discover_nodes(endpoint, connection):
        text = connection.read_text(endpoint.options.config)
        return [Node(name="example.org", ip="0.0.0.0", port=443)]

Publish with ``[project.entry-points.tlsgate] myserver = "my_package.plugin"``. The hooks and
their contracts are documented in :mod:`tlsgate.hookspecs`; ``examples/plugin`` is a complete
third-party plugin with tests that use :mod:`tlsgate_testing`.

A plugin imports only this module (the bundled plugins are held to it by a ruff
``banned-api`` rule); anything else in ``tlsgate`` is internal and may change in any release.
What is here changes only with :data:`PLUGIN_API`: within a major version, names are only added.

**Declaring the contract version.** Put ``PLUGIN_API = "1.0"`` (the value of
:data:`tlsgate.plugin.PLUGIN_API` you wrote against) in the module your entry point names. The
registry refuses to load a plugin whose major version is newer than the core's (``"2.0"`` on a
core that speaks ``1.x``), naming the plugin and its distribution, instead of failing later in a
hook. A plugin that declares nothing is loaded as ``1.x``.

The exports, by what they are for:

* contract: :data:`impl` (the hook marker), :func:`delegate` (a hook that loads its driver module
  on first use), :data:`PLUGIN_API`, :func:`option`;
* models: :class:`EndpointType`, :class:`ConnectionType`, :class:`CredentialStoreType`,
  :class:`Endpoint`, :class:`ConnectionSpec`, :class:`Credentials`, :class:`Node`,
  :class:`Problem`, :class:`PlanStep`, :class:`InstallResult`, :class:`RestartResult`,
  :class:`ScriptResult`, :class:`CommandResult`, :class:`FileStat`;
* errors: :class:`ValidationError` (bad input, exit 2), :class:`OperationError` (exit 1),
  :class:`ConnectionFailed`, :class:`HostKeyError`, :class:`CommandFailed`,
  :class:`NotFoundError`, :class:`PluginError`, :class:`TlsgateError`;
* secrets: :class:`Secret`, :func:`reveal`;
* transports: :class:`Connection` (what every hook gets), :class:`WindowsConnection` and
  :data:`POWERSHELL_PREFIX` (a driver that runs PowerShell templates itself);
* install policy (``--apply-pending``, ``--allow-name-mismatch``, tlsgate's own earlier writes):
  :class:`InstallPolicy`, :func:`install_policy`, :func:`require_names_covered` (every web-server
  driver calls it on its chosen nodes), :func:`uncovered_names`, :func:`node_names`,
  :func:`refuse_pending` (configuration the running server has not loaded),
  :func:`process_start_time`; :func:`remove_superseded` (tlsgate's own files no configuration
  references any more, after a verified install), :func:`package_owner` (``dpkg -S`` / ``rpm -qf``),
  :func:`package_file_routes` / :class:`OwnCopy` (a package's conffile is not edited: an own copy
  the server's symbolic link points at, ``Transaction.relink``, or a refusal);
* installs: :class:`Transaction` (backup, atomic write, check, LIFO undo with ``tx.undo``,
  ``tx.save_backup``), :data:`Edit` / :func:`apply_edits` (in-place span edits of a config file);
* certificates: :class:`CertificateBundle`, :func:`key_matches`, :func:`order_chain`,
  :func:`key_kind`, :func:`fingerprint`, :func:`subject_text`, :func:`common_name`,
  :func:`dns_names`, :func:`covers`, :func:`not_after`, :func:`to_der`, :func:`to_pem`,
  :func:`pem_chain`, :func:`load_pem_certificates`, :func:`load_any_certificate`,
  :class:`CertFacts`, :func:`certificate_facts`, :func:`read_certificate`;
* probes (verification by TLS handshake): :class:`Target`, :func:`probe_host`, :func:`sni_for`,
  :data:`WILDCARDS`, :data:`PROXY_NOTE`, :func:`served_certificate`, :func:`try_served_fingerprint`,
  :func:`probe_many`, :func:`served_fingerprints`, :func:`node_as_served`, :func:`expect_served`,
  :func:`expect_fingerprints` (concurrent, bounded; each round retries only what is pending);
* ACME (the optional ``acme_http01`` and ``tlsgate_dns_providers`` hooks): :func:`http01_path`
  (the checked URL path of an answer), :func:`expect_http_answer` (wait until it is served),
  :func:`undo_later` (the cleanup to return), :class:`DnsProviderType`;
* :func:`gc_paused`: no cyclic garbage collection while a parse builds many acyclic objects;
* :func:`cache_dir`: tlsgate's cache directory (``TLSGATE_CACHE_DIR``, else the user's cache
  directory): what may be lost at any time, e.g. a driver's hints for reading ahead;
* :func:`offer_early_command` / :func:`take_early_command` (:class:`EarlyCommand`): a local
  discovery's slow first command, started by the next ``tls discover NAME`` before tlsgate has
  loaded (see :mod:`tlsgate.early` for what the driver must check).

Importing this module stays cheap (every CLI call imports every plugin's entry module): the
certificate, probe and Windows helpers load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pluggy

from . import PLUGIN_API
from .connection import Connection
from .edits import Edit, apply_edits
from .errors import (
    CommandFailed,
    ConnectionFailed,
    HostKeyError,
    NotFoundError,
    OperationError,
    PluginError,
    TlsgateError,
    ValidationError,
)
from .gcpause import gc_paused
from .hygiene import OwnCopy, package_file_route, package_file_routes, package_owner, remove_superseded
from .models import (
    CommandResult,
    ConnectionSpec,
    ConnectionType,
    Credentials,
    CredentialStoreType,
    Endpoint,
    EndpointType,
    FileStat,
    InstallResult,
    Node,
    PlanStep,
    Problem,
    RestartResult,
    ScriptResult,
)
from .options import option
from .policy import (
    InstallPolicy,
    install_policy,
    node_names,
    process_start_time,
    refuse_pending,
    require_names_covered,
    uncovered_names,
)
from .secret import Secret, reveal
from .transaction import Transaction

if TYPE_CHECKING:
    from .bundle import CertificateBundle, key_matches, order_chain
    from .certs import (
        CertFacts,
        certificate_facts,
        common_name,
        covers,
        dns_names,
        fingerprint,
        key_kind,
        load_any_certificate,
        load_pem_certificates,
        not_after,
        pem_chain,
        read_certificate,
        subject_text,
        to_der,
        to_pem,
    )
    from .declarations import cache_dir
    from .early import Early as EarlyCommand
    from .early import remember as offer_early_command
    from .early import take as take_early_command
    from .lifecycle.dns import DnsProviderType
    from .lifecycle.http01 import http01_path, undo_later
    from .probe import (
        PROXY_NOTE,
        WILDCARDS,
        Target,
        claimed_addresses,
        expect_fingerprints,
        expect_http_answer,
        expect_served,
        node_as_served,
        probe_host,
        probe_host_for,
        probe_many,
        served_certificate,
        served_fingerprints,
        sni_for,
        try_served_fingerprint,
    )
    from .transports.windows import OUT_JSON as PS_OUT_JSON
    from .transports.windows import POWERSHELL_PREFIX, WindowsConnection, ps_template
    from .transports.windows import error_detail as powershell_error_detail

#: Marks a hook implementation: ``@impl def install(endpoint, connection, bundle, ...): ...``
impl = pluggy.HookimplMarker("tlsgate")


def delegate(hook: str, target: str) -> Any:
    """A hook implementation that imports ``target`` (``"package.module:function"``) when the hook
    first runs, and calls it with the hook's arguments that it names (any subset, by name, as
    pluggy does)::

        discover_nodes = delegate("discover_nodes", "tlsgate_myserver.discovery:discover")
        install = delegate("install", "tlsgate_myserver.install:install")

    The entry module stays cheap to import (every CLI call imports every plugin's entry module),
    and the driver module, with cryptography and the rest, loads only when a hook of its type runs.
    """
    from . import hookspecs

    spec = getattr(hookspecs, hook)  # AttributeError for a misspelt hook, at import
    names = [n for n in spec.__code__.co_varnames[: spec.__code__.co_argcount]]
    module_name, _, func_name = target.partition(":")
    if not module_name or not func_name:
        raise ValueError(f"delegate target must be 'package.module:function', not {target!r}")
    resolved: list[tuple[Any, frozenset[str]]] = []

    def call(*args: Any, **kwargs: Any) -> Any:
        if not resolved:
            import inspect

            func = getattr(importlib.import_module(module_name), func_name)
            resolved.append((func, frozenset(inspect.signature(func).parameters)))
        func, accepts = resolved[0]
        given = {**dict(zip(names, args, strict=False)), **kwargs}
        return func(**{n: v for n, v in given.items() if n in accepts})

    call.__wrapped__ = spec  # type: ignore[attr-defined]  # pluggy reads the arguments to pass from here
    call.__name__ = call.__qualname__ = hook
    call.__doc__ = f"{hook}: delegated to {target}"
    return impl(call)

# Loaded on first use (they pull in cryptography, ssl or the Windows runner).
_LAZY = {
    **dict.fromkeys(("CertificateBundle", "key_matches", "order_chain"), "bundle"),
    "cache_dir": "declarations",
    "EarlyCommand": "early",
    **dict.fromkeys(("offer_early_command", "take_early_command"), "early"),
    **dict.fromkeys(
        (
            "CertFacts", "certificate_facts", "common_name", "covers", "dns_names", "fingerprint", "key_kind",
            "load_any_certificate", "load_pem_certificates", "not_after", "pem_chain", "read_certificate",
            "subject_text", "to_der", "to_pem",
        ),
        "certs",
    ),
    **dict.fromkeys(
        (
            "PROXY_NOTE", "WILDCARDS", "Target", "claimed_addresses", "expect_fingerprints", "expect_served", "node_as_served", "probe_host",
            "probe_host_for", "probe_many", "served_certificate",
            "served_fingerprints", "sni_for", "try_served_fingerprint", "expect_http_answer",
        ),
        "probe",
    ),
    "DnsProviderType": "lifecycle.dns",
    **dict.fromkeys(("http01_path", "undo_later"), "lifecycle.http01"),
    **dict.fromkeys(("POWERSHELL_PREFIX", "WindowsConnection"), "transports.windows"),
    # PowerShell templates of drivers that run their own (IIS): the scaffolding every template
    # shares and the one-line failure reason of a PowerShell command
    **dict.fromkeys(("PS_OUT_JSON", "powershell_error_detail", "ps_template"), "transports.windows"),
}
#: exported under another name than the module's own
_RENAMED = {"PS_OUT_JSON": "OUT_JSON", "powershell_error_detail": "error_detail", "EarlyCommand": "Early",
            "offer_early_command": "remember", "take_early_command": "take"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tlsgate.{module}"), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "PLUGIN_API",
    "POWERSHELL_PREFIX",
    "PROXY_NOTE",
    "PS_OUT_JSON",
    "WILDCARDS",
    "CertFacts",
    "CertificateBundle",
    "CommandFailed",
    "CommandResult",
    "Connection",
    "ConnectionFailed",
    "ConnectionSpec",
    "ConnectionType",
    "CredentialStoreType",
    "Credentials",
    "DnsProviderType",
    "EarlyCommand",
    "Edit",
    "Endpoint",
    "EndpointType",
    "FileStat",
    "HostKeyError",
    "InstallPolicy",
    "InstallResult",
    "Node",
    "NotFoundError",
    "OperationError",
    "OwnCopy",
    "PlanStep",
    "PluginError",
    "Problem",
    "RestartResult",
    "ScriptResult",
    "Secret",
    "Target",
    "TlsgateError",
    "Transaction",
    "ValidationError",
    "WindowsConnection",
    "apply_edits",
    "cache_dir",
    "certificate_facts",
    "claimed_addresses",
    "common_name",
    "covers",
    "delegate",
    "dns_names",
    "expect_fingerprints",
    "expect_http_answer",
    "expect_served",
    "fingerprint",
    "gc_paused",
    "http01_path",
    "impl",
    "install_policy",
    "key_kind",
    "key_matches",
    "load_any_certificate",
    "load_pem_certificates",
    "node_as_served",
    "node_names",
    "not_after",
    "offer_early_command",
    "option",
    "order_chain",
    "package_file_route",
    "package_file_routes",
    "package_owner",
    "pem_chain",
    "powershell_error_detail",
    "probe_host",
    "probe_host_for",
    "probe_many",
    "process_start_time",
    "ps_template",
    "read_certificate",
    "refuse_pending",
    "remove_superseded",
    "require_names_covered",
    "reveal",
    "served_certificate",
    "served_fingerprints",
    "sni_for",
    "subject_text",
    "take_early_command",
    "to_der",
    "to_pem",
    "try_served_fingerprint",
    "uncovered_names",
    "undo_later",
]

