"""tlsgate-iis: the ``iis`` endpoint type (Microsoft IIS 10).

Reached over ``local`` (only on a Windows gateway, as the vendor's table says), ``ssh_windows``,
``winrm_http``, ``winrm_https`` or ``winrm_https_insecure``; every remote step is one of the fixed
PowerShell templates in :mod:`tlsgate_iis.scripts`. The account must be a member of the local
Administrators group (the vendor's requirement; the install checks it before changing anything).

* discovery: one node per site binding (:mod:`tlsgate_iis.discovery`);
* install: PFX import into ``LocalMachine\\My`` and binding, as a transaction
  (:mod:`tlsgate_iis.install`); effective at once, no restart needed;
* restart: W3SVC (:mod:`tlsgate_iis.restart`).

This module imports only tlsgate and attrs; the drivers load when a job runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tlsgate.plugin import EndpointType, OperationError, Problem, impl

if TYPE_CHECKING:
    from tlsgate.plugin import CertificateBundle, Connection, Endpoint, InstallResult, Node, RestartResult, ScriptResult

#: The plugin contract this plugin is written for (checked by the registry at load).
PLUGIN_API = "1.0"

TYPE = "iis"
#: The reference document's connection types for Microsoft IIS, in its order.
CONNECTION_TYPES = ("local", "ssh_windows", "winrm_http", "winrm_https", "winrm_https_insecure")


@impl
def tlsgate_endpoint_types() -> list[EndpointType]:
    return [
        EndpointType(
            name=TYPE,
            description="Microsoft IIS 10 (https bindings of sites; certificates in LocalMachine\\My)",
            connection_types=CONNECTION_TYPES,
            local_platforms=("windows",),
            options=None,
            needs_restart=False,
            vendor="Microsoft IIS",
            aliases_are_names=False,  # a node's alias is its site's name, not a host name
        )
    ]


@impl
def validate(endpoint: Endpoint) -> list[Problem]:
    if endpoint.type != TYPE:
        return []
    if endpoint.connection.type not in CONNECTION_TYPES:
        return [Problem(f"must be one of: {', '.join(CONNECTION_TYPES)} (for {TYPE})", "--connection_type")]
    return []


@impl
def discover_nodes(endpoint: Endpoint, connection: Connection) -> list[Node] | None:
    from .discovery import discover
    from .local import powershell_connection

    return discover(endpoint, powershell_connection(connection))


@impl
def install(endpoint: Endpoint, connection: Connection, bundle: CertificateBundle, nodes: Sequence[Node],
            dry_run: bool) -> InstallResult | None:
    from .install import install_bundle
    from .local import powershell_connection

    return install_bundle(endpoint, powershell_connection(connection), bundle, nodes, dry_run=dry_run)


@impl
def restart(endpoint: Endpoint, connection: Connection) -> RestartResult | None:
    from .local import powershell_connection
    from .restart import restart_w3svc

    return restart_w3svc(powershell_connection(connection))


@impl
def run_script(endpoint: Endpoint, connection: Connection, script: str, args: Sequence[str]) -> ScriptResult | None:
    raise OperationError(
        "IIS endpoints do not run custom scripts (the reference supports them only for P12, JKS and PEM endpoints)"
    )
