"""Endpoint type ``haproxy``: the hooks tlsgate calls. Everything comes from ``tlsgate.plugin``.

    tlsgate tls add haproxy --name lb --connection_type local|ssh ... [--haproxy_config_path PATH]
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from tlsgate.plugin import (
    CertificateBundle,
    Connection,
    Endpoint,
    EndpointType,
    InstallResult,
    Node,
    Problem,
    RestartResult,
    ScriptResult,
    impl,
    option,
)

from . import discovery
from . import install as install_mod

#: The version of the tlsgate plugin contract this plugin is written for.
PLUGIN_API = "1.0"
TYPE = "haproxy"
DEFAULT_CONFIG = "/etc/haproxy/haproxy.cfg"


@attrs.frozen
class HaproxyOptions:
    haproxy_config_path: str = option(
        help="The HAProxy configuration file. Must be between 1 and 4096 characters.",
        default=DEFAULT_CONFIG, min_len=1, max_len=4096, metavar="<haproxy-config-path>")


@impl
def tlsgate_endpoint_types() -> list[EndpointType]:
    return [EndpointType(
        name=TYPE,
        description="HAProxy: certificates of 'bind ... ssl crt' and crt-list entries, as PEM bundles.",
        connection_types=("local", "ssh"),
        local_platforms=("linux",),
        options=HaproxyOptions,
        vendor="HAProxy",
    )]


@impl
def validate(endpoint: Endpoint) -> list[Problem]:
    if endpoint.type != TYPE:  # validate is called on every plugin for every endpoint
        return []
    path = endpoint.options.haproxy_config_path
    if not path.startswith("/"):
        return [Problem("must be an absolute path", "--haproxy_config_path")]
    return []


@impl
def discover_nodes(endpoint: Endpoint, connection: Connection) -> list[Node]:
    return discovery.discover(endpoint, connection)


@impl
def install(endpoint: Endpoint, connection: Connection, bundle: CertificateBundle, nodes: Sequence[Node],
            dry_run: bool) -> InstallResult:
    return install_mod.install_bundle(endpoint, connection, bundle, nodes, dry_run)


@impl
def restart(endpoint: Endpoint, connection: Connection) -> RestartResult:
    return RestartResult(True, f"haproxy -c passed; reloaded ({install_mod.restart(endpoint, connection)})")


@impl
def run_script(endpoint: Endpoint, connection: Connection, script: str, args: Sequence[str]) -> ScriptResult:
    result = connection.run([script, *args])
    return ScriptResult(script, tuple(args), result.exit_code, result.stdout, result.stderr)
