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
from .secret import Secret

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
    "ValidationError",
    "impl",
    "key_matches",
    "option",
]

# -- exports the HAProxy example plugin and the kit's contract tests need (boundary-kit);
# -- kept as a separate block so the plugin-boundary work's fuller list can replace it.
from .certs import (  # noqa: E402
    common_name,
    dns_names,
    fingerprint,
    load_any_certificate,
    load_pem_certificates,
    not_after,
    subject_text,
    to_der,
)
from .models import ConnectionSpec  # noqa: E402
from .probe import Target, expect_served, served_certificate, try_served_fingerprint  # noqa: E402
from .transaction import Transaction  # noqa: E402

__all__ += [
    "ConnectionSpec",
    "Target",
    "Transaction",
    "common_name",
    "dns_names",
    "expect_served",
    "fingerprint",
    "load_any_certificate",
    "load_pem_certificates",
    "not_after",
    "served_certificate",
    "subject_text",
    "to_der",
    "try_served_fingerprint",
]
