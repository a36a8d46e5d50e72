"""tlsgate-f5: the ``f5`` endpoint type (F5 BIG-IP 15.1, 16.1, 17.1) and its transports
``rest`` and ``rest_insecure`` (iControl REST over HTTPS).

``rest`` verifies the BIG-IP's certificate against the gateway's system trust store, or against
the CA bundle the endpoint names with ``--ca_bundle``; ``rest_insecure`` does not verify it and
says so in every result. The user needs the Administrator role with CLI enabled
(:meth:`tlsgate_f5.rest.F5Connection.check_role`). This module imports only tlsgate and attrs;
``requests`` is loaded when a job connects.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs
from tlsgate.plugin import ConnectionType, EndpointType, OperationError, Problem, RestartResult, impl, option

if TYPE_CHECKING:
    from tlsgate.plugin import CertificateBundle, Connection, Credentials, Endpoint, InstallResult, Node, ScriptResult

    from .rest import F5Connection

#: The plugin contract this plugin is written for (checked by the registry at load).
PLUGIN_API = "1.0"

TYPE = "f5"
CONNECTION_TYPES = ("rest", "rest_insecure")
DEFAULT_PORT = 443


@attrs.frozen
class RestOptions:
    """Transport flags of ``rest`` (stored in ``ConnectionSpec.extra``)."""

    ca_bundle: str | None = option(
        help="PEM file of the CA certificate(s) that issued the BIG-IP's management certificate "
        "(default: the gateway's system trust store).",
        min_len=1, max_len=4096, metavar="FILE",
    )


@impl
def tlsgate_endpoint_types() -> list[EndpointType]:
    return [
        EndpointType(
            name=TYPE,
            description="F5 BIG-IP 15.1, 16.1, 17.1 (client-ssl profiles of virtual servers, over iControl REST)",
            connection_types=CONNECTION_TYPES,
            local_platforms=(),
            options=None,
            needs_restart=False,
            vendor="F5 BIG-IP",
        )
    ]


@impl
def tlsgate_connection_types() -> list[ConnectionType]:
    return [
        ConnectionType(
            "rest", "iControl REST over HTTPS; the BIG-IP's certificate is verified (system store or --ca_bundle).",
            default_port=DEFAULT_PORT, platform="bigip", options=RestOptions, node_addresses=True,
        ),
        ConnectionType(
            "rest_insecure", "iControl REST over HTTPS WITHOUT verifying the BIG-IP's certificate.",
            default_port=DEFAULT_PORT, insecure=True, platform="bigip", node_addresses=True,
        ),
    ]


@impl
def validate(endpoint: Endpoint) -> list[Problem]:
    conn = endpoint.connection
    problems: list[Problem] = []
    if conn.type in CONNECTION_TYPES and endpoint.type != TYPE:
        problems.append(Problem(f"connection type {conn.type} serves only F5 BIG-IP endpoints", "--connection_type"))
    if endpoint.type != TYPE:
        return problems
    if conn.type not in CONNECTION_TYPES:
        problems.append(Problem(f"must be one of: {', '.join(CONNECTION_TYPES)}", "--connection_type"))
        return problems
    if not conn.host:
        problems.append(Problem("is required for F5 BIG-IP endpoints", "--host"))
    if not conn.user and not conn.store:
        problems.append(Problem("is required for F5 BIG-IP endpoints (an Administrator account), unless a "
                                "credential store supplies it (--store, --store_cred_id)", "--user"))
    if conn.ssh_key_path or conn.ssh_key_password:
        flag = "--ssh_key_path" if conn.ssh_key_path else "--ssh_key_password"
        problems.append(Problem("is not used: F5 BIG-IP endpoints are managed over iControl REST", flag))
    ca_bundle = conn.extra.get("ca_bundle")
    if ca_bundle:
        if conn.type == "rest_insecure":
            problems.append(Problem("has no effect with rest_insecure, which does not verify the "
                                    "device's certificate; use --connection_type rest", "--ca_bundle"))
        elif not os.path.isfile(str(ca_bundle)):
            problems.append(Problem(f"{ca_bundle}: no such file", "--ca_bundle"))
    return problems


@impl
def connect(endpoint: Endpoint, credentials: Credentials) -> Connection | None:
    conn = endpoint.connection
    if conn.type not in CONNECTION_TYPES:
        return None
    from .rest import F5Connection, system_ca_file

    insecure = conn.type == "rest_insecure"
    ca_bundle = conn.extra.get("ca_bundle")
    if not credentials.user:
        raise OperationError(f"{endpoint.name}: F5 BIG-IP endpoints need --user (an Administrator account)")
    session = F5Connection(
        endpoint.host, conn.port or DEFAULT_PORT, credentials.user, credentials.password,
        verify=str(ca_bundle) if ca_bundle else system_ca_file(), insecure=insecure,
    )
    return session.open()


def _session(connection: Connection) -> F5Connection:
    from .rest import F5Connection

    if not isinstance(connection, F5Connection):
        raise OperationError(
            f"F5 BIG-IP endpoints are managed over iControl REST (rest, rest_insecure), not "
            f"{type(connection).__name__}"
        )
    return connection


@impl
def discover_nodes(endpoint: Endpoint, connection: Connection) -> list[Node] | None:
    from .discovery import discover

    return discover(_session(connection))


@impl
def install(endpoint: Endpoint, connection: Connection, bundle: CertificateBundle, nodes: Sequence[Node],
            dry_run: bool) -> InstallResult | None:
    from .install import install_bundle

    return install_bundle(_session(connection), bundle, nodes, dry_run=dry_run)


@impl
def restart(endpoint: Endpoint, connection: Connection) -> RestartResult | None:
    return RestartResult(
        restarted=False,
        message="nothing to restart: BIG-IP applies client-ssl profile changes live, and the install "
        "already saved the configuration (save sys config)",
    )


@impl
def run_script(endpoint: Endpoint, connection: Connection, script: str, args: Sequence[str]) -> ScriptResult | None:
    raise OperationError(
        "F5 BIG-IP endpoints do not run custom scripts (the reference supports them only for P12, JKS "
        "and PEM endpoints)"
    )
