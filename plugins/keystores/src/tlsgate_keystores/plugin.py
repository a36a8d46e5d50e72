"""Hook implementations of the p12, jks and pem endpoint types.

This entry module imports only tlsgate and attrs (every CLI call loads every plugin); the
format codecs (pyasn1, pyjks) are imported by the functions that need them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tlsgate.plugin import RestartResult, delegate, impl

from .options import endpoint_types

if TYPE_CHECKING:
    from tlsgate.plugin import (
        Connection,
        Endpoint,
        EndpointType,
        Problem,
        ScriptResult,
    )

#: The plugin contract this plugin is written for (checked by the registry at load).
PLUGIN_API = "1.0"

TYPES = ("p12", "jks", "pem")


@impl
def tlsgate_endpoint_types() -> list[EndpointType]:
    return endpoint_types()


@impl
def validate(endpoint: Endpoint) -> list[Problem]:
    if endpoint.type not in TYPES or endpoint.options is None:
        return []
    from .checks import validate_endpoint

    return validate_endpoint(endpoint)


discover_nodes = delegate("discover_nodes", "tlsgate_keystores.discovery:discover")
install = delegate("install", "tlsgate_keystores.install:install")


@impl
def restart(endpoint: Endpoint, connection: Connection) -> RestartResult:
    from . import scripts

    script = endpoint.options.restart_script
    if not script:
        return RestartResult(False, "no restart script configured")
    ran = scripts.run(endpoint, connection, script, [], "--restart_script")
    if not ran.ok:
        from tlsgate.plugin import OperationError

        raise OperationError(
            f"{connection.host}: restart script {script} exited {ran.exit_code}: {scripts.tail(ran)}",
            host=connection.host,
        )
    return RestartResult(True, f"restart script {script} exited 0")


@impl
def run_script(endpoint: Endpoint, connection: Connection, script: str, args: Sequence[str]) -> ScriptResult:
    from . import scripts

    return scripts.run(endpoint, connection, script, list(args))
