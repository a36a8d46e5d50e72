"""Hook implementations of the ``apache`` endpoint type (Apache httpd 2.4).

Entry module: imports only tlsgate and attrs at import time (every CLI call loads every plugin);
the driver modules load when a hook runs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import attrs
from tlsgate.plugin import EndpointType, Problem, RestartResult, delegate, impl, option

if TYPE_CHECKING:
    from tlsgate.plugin import Connection, Endpoint, Node

#: The plugin contract this plugin is written for (checked by the registry at load).
PLUGIN_API = "1.0"

TYPE = "apache"


@attrs.frozen
class ApacheOptions:
    """``tlsgate tls add apache`` options (the reference document's, plus where certificates go)."""

    apachectl_path: str | None = option(
        help=(
            "The path to apachectl (Debian: apache2ctl; a plain httpd binary works too). Must be between 1 "
            "and 4096 characters. Default: apachectl, apache2ctl or httpd found on the host."
        ),
        min_len=1, max_len=4096, metavar="<apachectl-path>",
    )
    certs_dir: str | None = option(
        help="Directory for new certificate, key and chain files (default: tlsgate/ in the ServerRoot, "
             "e.g. /etc/apache2/tlsgate/).",
        min_len=1, max_len=4096, metavar="DIR",
    )


@impl
def tlsgate_endpoint_types() -> list[EndpointType]:
    return [
        EndpointType(
            name=TYPE,
            description="Apache httpd 2.4 (virtual hosts, edited in place; graceful restart after install)",
            connection_types=("local", "ssh"),
            local_platforms=("linux",),
            options=ApacheOptions,
            needs_restart=False,  # the install itself ends with a graceful restart
            vendor="Apache",
        )
    ]


@impl
def validate(endpoint: Endpoint) -> list[Problem]:
    if endpoint.type != TYPE:
        return []
    options = endpoint.options
    problems = []
    ctl = getattr(options, "apachectl_path", None)
    if ctl is not None and endpoint.connection.type == "local" and "/" in ctl and not ctl.startswith("/"):
        problems.append(Problem("must be an absolute path or a program name on PATH", option="--apachectl_path"))
    elif ctl is not None and _local(endpoint) and ctl.startswith("/") and not os.path.isfile(ctl):
        what = "is a directory" if os.path.isdir(ctl) else "no such file"  # remote paths wait for the job
        problems.append(Problem(f"{ctl}: {what}", option="--apachectl_path"))
    certs_dir = getattr(options, "certs_dir", None) or "/"
    if not certs_dir.startswith("/"):
        problems.append(Problem("must be an absolute path", option="--certs_dir"))
    if any(ch in certs_dir for ch in "\"\n\r") or "${" in certs_dir:
        problems.append(Problem("must not contain '\"', '${' or a newline (httpd would read them)",
                                option="--certs_dir"))
    return problems


def _local(endpoint: Endpoint) -> bool:
    return endpoint.connection.type == "local"


@impl
def discover_nodes(endpoint: Endpoint, connection: Connection) -> list[Node]:
    import gc

    from .control import ApacheControl

    local = _local(endpoint)
    control = ApacheControl.find(connection, endpoint.options.apachectl_path)
    dumped = control.dump_started(spool=local)  # httpd reads its configuration while this process imports
    # the parse and the node model allocate hundreds of thousands of acyclic objects: CPython's
    # cyclic collector would rescan the growing heap again and again (a fifth of the time at
    # 10,000 vhosts); nothing here makes cycles that must be freed before the hook returns
    enabled = gc.isenabled()
    gc.disable()
    try:
        from .discovery import confirm_by_handshake, discover  # the lexer, cryptography, the probes
        from .speculate import Hint, load_hint, read_ahead, save_hint

        # while httpd runs: read and lex what the last discovery read (local only: over ssh the
        # connection is the dump's until it is back); the walk takes only what httpd's dump names
        ahead = read_ahead(connection, load_hint(endpoint), dumped.done) if local else None
        config, vnodes = discover(connection, control, dumped(), ahead)
        if local:
            save_hint(endpoint, Hint(list(config.files), config.certificate_paths))
        del ahead
        nodes = confirm_by_handshake(vnodes, endpoint, local)
        # the parsed files go now, by reference counting: re-enabled with them alive, the
        # collector's next pass would walk every directive of every file once more
        del config, vnodes
    finally:
        if enabled:
            gc.enable()
    return nodes


#: ``alias`` (keystore entry names) is not taken: virtual hosts have none.
install = delegate("install", "tlsgate_apache.install:install_bundle")


@impl
def restart(endpoint: Endpoint, connection: Connection) -> RestartResult:
    from .install import restart_apache

    done = restart_apache(endpoint, connection)
    return RestartResult(restarted=True, message=f"apachectl -t passed; {done}")

#: A temporary exact-match AliasMatch in every vhost serving the domain over plain HTTP on the
#: CA's port; returns the cleanup that restores every file and restarts gracefully.
acme_http01 = delegate("acme_http01", "tlsgate_apache.http01:answer_http01")
