"""tlsgate endpoint type ``tomcat``: Apache Tomcat 9.x, 10.x and 11.x.

This entry module imports only tlsgate and attrs (every CLI call loads every plugin); the
driver modules, and pyjks inside them, load when a hook runs.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import attrs
from tlsgate.plugin import EndpointType, Problem, RestartResult, Secret, delegate, impl, option

if TYPE_CHECKING:
    from tlsgate.plugin import Connection, Endpoint

#: The plugin contract this plugin is written for (checked by the registry at load).
PLUGIN_API = "1.0"

TYPE = "tomcat"


@attrs.frozen
class TomcatOptions:
    tomcat_dir: str = option(
        help=("The path to the Tomcat directory, for example /opt/tomcat (CATALINA_BASE: the folder that holds "
              "conf/server.xml). Must be at least 1 character long."),
        required=True,
        min_len=1,
        max_len=4096,
        metavar="<tomcat-path>",
    )
    tomcat_service: str | None = option(
        help=(
            "The systemd unit (Linux) or Windows service that runs this Tomcat. Default: "
            "tomcat11, tomcat10, tomcat9 or tomcat when it serves this directory, else bin/shutdown.sh "
            "and bin/startup.sh."
        ),
        min_len=1,
        max_len=256,
    )
    tomcat_home: str | None = option(
        help="CATALINA_HOME (Tomcat's bin/ and lib/) when it is not the Tomcat directory. Default: found.",
        min_len=1,
        max_len=4096,
    )
    manager_user: str | None = option(
        help=(
            "A Manager user with the manager-jmx role (tomcat-users.xml): installs then reload the TLS "
            "host in place (reloadSslHostConfig) instead of restarting Tomcat. Give --manager_password too."
        ),
        min_len=1,
        max_len=256,
    )
    manager_password: Secret | None = option(
        help="The Manager user's password (stored encrypted; '-' reads it from standard input).",
        secret=True,
        min_len=1,
        max_len=1024,
        metavar="<password>",
    )
    manager_url: str | None = option(
        help=(
            "The Manager's URL as seen from the endpoint's host (reached there: over ssh through sshd's "
            "forwarding). Default: http://<address>:<port>/manager of server.xml's first plain HTTP connector."
        ),
        min_len=1,
        max_len=2048,
        metavar="<http-url>",
    )


@impl
def tlsgate_endpoint_types() -> list[EndpointType]:
    return [
        EndpointType(
            name=TYPE,
            description="Apache Tomcat 9.x, 10.x, 11.x (server.xml connectors; JKS, PKCS12 or PEM)",
            connection_types=("local", "ssh", "winrm_http", "winrm_https", "winrm_https_insecure"),
            local_platforms=("windows", "linux"),
            options=TomcatOptions,
            needs_restart=True,
            vendor="Apache Tomcat",
        )
    ]


@impl
def validate(endpoint: Endpoint) -> list[Problem]:
    if endpoint.type != TYPE:
        return []
    options = endpoint.options
    if not isinstance(options, TomcatOptions):
        return [Problem("the endpoint has no Tomcat options", option="--tomcat_dir")]
    if "\x00" in options.tomcat_dir:
        return [Problem("must not contain NUL", option="--tomcat_dir")]
    relative = [flag for flag, path in (("--tomcat_dir", options.tomcat_dir), ("--tomcat_home", options.tomcat_home))
                if path and not _absolute(endpoint, path)]
    if relative:  # it would name another directory from any other working directory
        return [Problem("must be an absolute path", option=flag) for flag in relative]
    if options.tomcat_service is not None and not SERVICE_NAME.fullmatch(options.tomcat_service):
        return [Problem("must be a systemd unit or Windows service name (letters, digits, spaces and ':_.@-\\', "
                        "not starting with '-', nor starting or ending with a space)", option="--tomcat_service")]
    from .manager import check_options

    problems = [Problem(text, option=flag) for flag, text in check_options(options)]
    if problems:
        return problems
    if endpoint.connection.type == "local":  # a local check is cheap; remote ones wait for the job
        import os.path

        server_xml = os.path.join(options.tomcat_dir, "conf", "server.xml")
        if not os.path.isfile(server_xml):
            return [Problem(f"{server_xml} does not exist (give the CATALINA_BASE directory)", option="--tomcat_dir")]
    return []


def _absolute(endpoint: Endpoint, path: str) -> bool:
    """Absolute on the endpoint's host: this one's rules for ``local``, Windows' for WinRM, POSIX for ssh."""
    import ntpath
    import os.path
    import posixpath

    ctype = endpoint.connection.type
    isabs = os.path.isabs if ctype == "local" else ntpath.isabs if ctype.startswith("winrm") else posixpath.isabs
    return isabs(path)


#: A systemd unit (systemd.unit(5): ASCII letters, digits, ":-_.\\@") or a Windows service name
#: (which may hold spaces); never an option, a path or shell text.
SERVICE_NAME = re.compile(r"[A-Za-z0-9:_.@\\][A-Za-z0-9:_.@\\ -]*(?<! )")


discover_nodes = delegate("discover_nodes", "tlsgate_tomcat.discovery:discover")
install = delegate("install", "tlsgate_tomcat.install:install")


@impl
def restart(endpoint: Endpoint, connection: Connection) -> RestartResult:
    from . import restart as restart_mod
    from .discovery import load_config
    from .install import restart_and_wait

    config = load_config(connection, endpoint.options.tomcat_dir)
    plan = restart_mod.plan_restart(
        connection, config.base, service=endpoint.options.tomcat_service, home=endpoint.options.tomcat_home
    )
    return RestartResult(True, restart_and_wait(endpoint, connection, config, plan))
