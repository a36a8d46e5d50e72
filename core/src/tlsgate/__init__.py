"""tlsgate: certificate orchestration gateway.

Three ways in: the ``tlsgate`` command line; this package as a library (:class:`tlsgate.Gateway`,
:mod:`tlsgate.api`); and plugins (:mod:`tlsgate.plugin`, contract in :mod:`tlsgate.hookspecs`).
Importing tlsgate loads no plugin (:func:`tlsgate.registry.get_registry` does, on first use) and
imports nothing heavy: the names below load on first use (``from tlsgate import
CertificateBundle`` imports cryptography then, not ``import tlsgate``).
"""

# ruff: noqa: F405  (__all__ names the lazy exports; type checkers get them from the star import)
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Version of the plugin contract (hookspecs and :mod:`tlsgate.plugin`). Within a major version
#: hooks only gain arguments and :mod:`tlsgate.plugin` only gains names; a plugin declaring a
#: newer major (``PLUGIN_API = "2.0"`` in its entry module) is refused at load.
PLUGIN_API = "1.1"  # 1.1: the optional hooks acme_http01 and tlsgate_dns_providers

if TYPE_CHECKING:  # the names below, for type checkers (tlsgate.plugin exports each of them)
    from .api import Gateway
    from .plugin import *  # noqa: F403

_LAZY = {
    "Gateway": "api",
    "CertificateBundle": "bundle",
    "Connection": "connection",
    **dict.fromkeys(
        ("CommandFailed", "ConnectionFailed", "HostKeyError", "NotFoundError", "OperationError", "PluginError",
         "TlsgateError", "ValidationError"),
        "errors",
    ),
    **dict.fromkeys(
        ("CommandResult", "ConnectionSpec", "ConnectionType", "Credentials", "CredentialStoreType", "Endpoint",
         "EndpointType", "FileStat", "InstallResult", "Node", "PlanStep", "Problem", "RestartResult",
         "ScriptResult"),
        "models",
    ),
    "option": "options",
    "Secret": "secret",
    "Transaction": "transaction",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "PLUGIN_API",
    "CertificateBundle",
    "CommandFailed",
    "CommandResult",
    "Connection",
    "ConnectionFailed",
    "ConnectionSpec",
    "ConnectionType",
    "CredentialStoreType",
    "Credentials",
    "Endpoint",
    "EndpointType",
    "FileStat",
    "Gateway",
    "HostKeyError",
    "InstallResult",
    "Node",
    "NotFoundError",
    "OperationError",
    "PlanStep",
    "PluginError",
    "Problem",
    "RestartResult",
    "ScriptResult",
    "Secret",
    "TlsgateError",
    "Transaction",
    "ValidationError",
    "__version__",
    "option",
]
