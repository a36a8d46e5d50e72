"""Endpoint type ``haproxy``: the hooks tlsgate calls. Everything comes from ``tlsgate.plugin``;
this entry module stays cheap to import (the driver modules load when a hook runs).

    tlsgate tls add haproxy --name lb --connection_type local|ssh ... [--haproxy_config_path PATH]
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import attrs
from tlsgate.plugin import EndpointType, Problem, ScriptResult, delegate, impl, option

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tlsgate.plugin import Connection, Endpoint

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
    if endpoint.connection.type == "local" and not os.path.isfile(path):  # remote paths wait for the job
        what = "is a directory" if os.path.isdir(path) else "no such file"
        return [Problem(f"{path}: {what}", "--haproxy_config_path")]
    return []


# Every CLI call imports every plugin's entry module: the driver modules (and cryptography with
# them) load only when a hook of this type runs.
discover_nodes = delegate("discover_nodes", "tlsgate_haproxy.discovery:discover")
install = delegate("install", "tlsgate_haproxy.install:install_bundle")
restart = delegate("restart", "tlsgate_haproxy.install:restart_result")


@impl
def run_script(endpoint: Endpoint, connection: Connection, script: str, args: Sequence[str]) -> ScriptResult:
    result = connection.run([script, *args])
    return ScriptResult(script, tuple(args), result.exit_code, result.stdout, result.stderr)
