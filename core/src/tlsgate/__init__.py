"""tlsgate: certificate orchestration gateway.

Three ways in: the ``tlsgate`` command line; this package as a library (:mod:`tlsgate.api`);
and plugins (:mod:`tlsgate.plugin`, contract in :mod:`tlsgate.hookspecs`).
Importing tlsgate loads no plugin: :func:`tlsgate.registry.get_registry` does, on first use.
"""

from __future__ import annotations

from .bundle import CertificateBundle
from .connection import Connection
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
from .secret import Secret
from .transaction import Transaction

__version__ = "0.1.0"

#: Version of the plugin contract (hookspecs). Hooks only ever gain arguments within a major.
PLUGIN_API = "1.1"  # 1.1: acme_http01, tlsgate_dns_providers (optional hooks)

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
