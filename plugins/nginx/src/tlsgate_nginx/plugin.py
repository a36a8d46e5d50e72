"""Hook implementations of the ``nginx`` endpoint type.

Entry module: imports only tlsgate and attrs at import time (every CLI call loads every plugin);
the driver modules load when a hook runs.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import attrs
from tlsgate.plugin import EndpointType, Problem, RestartResult, delegate, impl, option

if TYPE_CHECKING:
    from tlsgate.plugin import Connection, Endpoint, Node

#: The plugin contract this plugin is written for (checked by the registry at load).
PLUGIN_API = "1.0"

TYPE = "nginx"


@attrs.frozen
class NginxOptions:
    """``tlsgate tls add nginx`` options (the reference document's, plus where certificates go)."""

    nginx_config_path: str = option(
        help="The path to the Nginx config file. Must be between 1 and 4096 characters.",
        required=True, min_len=1, max_len=4096,
        metavar="PATH",
    )
    certs_dir: str | None = option(
        help="Directory for new certificate and key files (default: tlsgate/ beside the main config file).",
        min_len=1, max_len=4096, metavar="DIR",
    )
    nginx_service: str | None = option(
        help="The systemd unit that runs this nginx: reloads become `systemctl reload UNIT` (through sudo with "
             "--sudo). Default: nginx.service when systemd runs this configuration's master, else nginx -s reload.",
        min_len=1, max_len=256, metavar="UNIT",
    )


@impl
def tlsgate_endpoint_types() -> list[EndpointType]:
    return [EndpointType(name=TYPE, description="Nginx web server (server blocks, edited in place; reload after install)",
                         connection_types=("local", "ssh"), local_platforms=("windows", "linux"), options=NginxOptions,
                         needs_restart=False, vendor="Nginx")]


def _absolute(path: str) -> bool:
    return path.startswith("/") or path[1:3] in (":\\", ":/")  # POSIX, or C:\ / C:/ on Windows


@impl
def validate(endpoint: Endpoint) -> list[Problem]:
    if endpoint.type != TYPE:
        return []
    options, problems = endpoint.options, []
    path = getattr(options, "nginx_config_path", None)
    if not path:
        problems.append(Problem("is required", option="--nginx_config_path"))
    elif not _absolute(path):
        problems.append(Problem("must be an absolute path", option="--nginx_config_path"))
    elif _local(endpoint) and not os.path.isfile(path):  # remote paths wait for the job
        what = "is a directory" if os.path.isdir(path) else "no such file"
        problems.append(Problem(f"{path}: {what}", option="--nginx_config_path"))
    certs_dir = getattr(options, "certs_dir", None)
    if certs_dir and not _absolute(certs_dir):
        problems.append(Problem("must be an absolute path", option="--certs_dir"))
    if certs_dir and "$" in certs_dir:
        problems.append(Problem("must not contain '$' (nginx reads it as a variable)", option="--certs_dir"))
    service = getattr(options, "nginx_service", None)
    if service is not None and not SERVICE_UNIT.fullmatch(service):
        problems.append(Problem("must be a systemd service unit name such as nginx.service (letters, digits, "
                                "':_.@-' and a backslash, not starting with '-')", option="--nginx_service"))
    return problems


#: A systemd service unit name (systemd.unit(5): ASCII letters, digits, ":-_.\\", "@" for
#: instances), ".service" spelled out so a sudoers rule matches the exact argv; never an option.
SERVICE_UNIT = re.compile(r"[A-Za-z0-9:_.@\\][A-Za-z0-9:_.@\\-]*\.service")


def _local(endpoint: Endpoint) -> bool:
    return endpoint.connection.type == "local"


@impl
def discover_nodes(endpoint: Endpoint, connection: Connection) -> list[Node]:
    from .discovery import confirm_by_handshake, discover

    config, pairs = discover(connection, endpoint.options.nginx_config_path)
    return confirm_by_handshake(config, pairs, endpoint, _local(endpoint))


#: ``alias`` (keystore entry names) is not taken: server blocks have none.
install = delegate("install", "tlsgate_nginx.install:install_bundle")


@impl
def restart(endpoint: Endpoint, connection: Connection) -> RestartResult:
    from .config import load
    from .install import restart_nginx

    config = load(connection, endpoint.options.nginx_config_path)
    done = restart_nginx(connection, config, service=endpoint.options.nginx_service)
    if done.startswith("started: "):
        return RestartResult(restarted=True, message=f"nginx -t passed; nginx was not running: {done}")
    return RestartResult(restarted=True, message=f"nginx -t passed; reloaded ({done})")

#: A temporary exact-match location in every server block serving the domain over plain HTTP on
#: the CA's port; returns the cleanup that restores every file and reloads.
acme_http01 = delegate("acme_http01", "tlsgate_nginx.http01:answer_http01")
