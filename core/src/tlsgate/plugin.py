"""What a plugin author imports. Quick start::

    import attrs
    from tlsgate.plugin import impl, option, EndpointType, Node, InstallResult

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
"""

from __future__ import annotations

import pluggy

from .bundle import CertificateBundle, key_matches
from .connection import Connection
from .errors import CommandFailed, ConnectionFailed, OperationError, ValidationError
from .lifecycle.dns import DnsProviderType
from .lifecycle.http01 import http01_path, undo_later
from .models import (
    CommandResult,
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
from .probe import expect_http_answer, probe_host
from .secret import Secret
from .transaction import Transaction

#: Marks a hook implementation: ``@impl def install(endpoint, connection, bundle, ...): ...``
impl = pluggy.HookimplMarker("tlsgate")

__all__ = [
    "CertificateBundle",
    "CommandFailed",
    "CommandResult",
    "Connection",
    "ConnectionFailed",
    "ConnectionType",
    "CredentialStoreType",
    "Credentials",
    "DnsProviderType",
    "Endpoint",
    "EndpointType",
    "FileStat",
    "InstallResult",
    "Node",
    "OperationError",
    "PlanStep",
    "Problem",
    "RestartResult",
    "ScriptResult",
    "Secret",
    "Transaction",
    "ValidationError",
    "expect_http_answer",
    "http01_path",
    "impl",
    "key_matches",
    "option",
    "probe_host",
    "undo_later",
]
