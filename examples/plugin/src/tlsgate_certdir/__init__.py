"""Endpoint type ``certdir``: a directory of ``<name>.crt`` (full chain) + ``<name>.key`` files, as
Postfix, Dovecot or HAProxy read them, with an optional reload command.

This is the example third-party plugin: everything it needs comes from ``tlsgate.plugin`` (the
hook marker, models, ``Transaction``, the certificate helpers); it works over any transport
(local, ssh, ...) because it touches files only through the ``Connection``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs
from tlsgate.plugin import EndpointType, Node, OperationError, Problem, RestartResult, ScriptResult, impl, option

if TYPE_CHECKING:
    from tlsgate.plugin import CertificateBundle, Connection, Endpoint, InstallResult

#: The plugin contract this plugin is written for (checked by the registry at load).
PLUGIN_API = "1.0"

# Every CLI call imports every plugin's entry module: the certificate helpers (and cryptography
# with them) are imported inside the hooks that use them, so that loading this module stays cheap.


@attrs.frozen
class CertdirOptions:
    dir: str = option(help="Directory holding NAME.crt and NAME.key files.", required=True, min_len=1, max_len=4096)
    reload_command: str | None = option(
        help="Command (split like a shell would, run without one) that makes the service re-read its files, "
        "e.g. 'systemctl reload postfix'.", max_len=4096)


@impl
def tlsgate_endpoint_types() -> list[EndpointType]:
    return [EndpointType(
        name="certdir",
        description="A directory of PEM certificate/key pairs (example plugin).",
        connection_types=("local", "ssh"),
        local_platforms=("linux",),
        options=CertdirOptions,
        vendor="PEM directory",
    )]


@impl
def validate(endpoint: Endpoint) -> list[Problem]:
    if endpoint.type != "certdir":  # validate is called on every plugin for every endpoint
        return []
    problems = []
    if endpoint.options.reload_command is not None:
        try:
            if not shlex.split(endpoint.options.reload_command):
                problems.append(Problem("is empty", "--reload_command"))
        except ValueError as exc:
            problems.append(Problem(f"cannot be split into words: {exc}", "--reload_command"))
    return problems


@impl
def discover_nodes(endpoint: Endpoint, connection: Connection) -> list[Node]:
    from tlsgate.plugin import dns_names, fingerprint, load_any_certificate, not_after, subject_text, to_der

    folder = endpoint.options.dir
    nodes = []
    for name in connection.listdir(folder):
        if not name.endswith(".crt"):
            continue
        data = connection.read_file(connection.path.join(folder, name))
        try:
            leaf = load_any_certificate(data)
        except ValueError:
            nodes.append(Node(name=name[:-4], protocol="file", state="unreadable", locator=name))
            continue
        nodes.append(Node(
            name=name[:-4], protocol="file", alias=tuple(n for n in dns_names(leaf) if n != name[:-4]),
            fingerprint=fingerprint(leaf), subject=subject_text(leaf), not_after=not_after(leaf),
            vendor="PEM directory", locator=name, certificate=to_der(leaf),
        ))
    return nodes


@impl
def install(endpoint: Endpoint, connection: Connection, bundle: CertificateBundle, nodes: Sequence[Node],
            dry_run: bool, alias: str | None) -> InstallResult:
    from tlsgate.plugin import Transaction, fingerprint, load_any_certificate

    names = [n.name for n in nodes] or [alias or bundle.default_alias()]
    folder = endpoint.options.dir
    with Transaction(connection, dry_run=dry_run, label=f"install on {endpoint.name}") as tx:
        for name in names:
            tx.write(connection.path.join(folder, f"{name}.key"), bundle.key_pem(), mode=0o600)
            tx.write(connection.path.join(folder, f"{name}.crt"), bundle.fullchain_pem())
        if endpoint.options.reload_command:
            argv = shlex.split(endpoint.options.reload_command)
            tx.on_rollback(lambda: connection.run(argv), "reload the restored files")
            tx.run(argv, what="reload command")
        if not dry_run:  # read back what the service will read
            for name in names:
                served = load_any_certificate(connection.read_file(connection.path.join(folder, f"{name}.crt")))
                if fingerprint(served) != bundle.fingerprint:
                    raise OperationError(f"{name}.crt does not hold the new certificate after writing")
    return tx.result(nodes=tuple(names), verified=not dry_run)


@impl
def restart(endpoint: Endpoint, connection: Connection) -> RestartResult:
    if not endpoint.options.reload_command:
        return RestartResult(False, "no --reload_command configured: nothing to restart")
    result = connection.run(shlex.split(endpoint.options.reload_command), privileged=True)  # a service reload
    connection.check(result, "reload command")
    return RestartResult(True, "reload command succeeded")


@impl
def run_script(endpoint: Endpoint, connection: Connection, script: str, args: Sequence[str]) -> ScriptResult:
    result = connection.run([script, *args])
    return ScriptResult(script, tuple(args), result.exit_code, result.stdout, result.stderr)
