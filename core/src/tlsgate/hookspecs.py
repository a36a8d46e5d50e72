"""The tlsgate plugin contract. This module is the plugin author's manual.

A plugin is a module (or class instance) with functions marked ``@tlsgate.plugin.impl`` whose
names and arguments match the specifications below; it is published as a distribution with an
entry point in the ``tlsgate`` group::

    [project.entry-points.tlsgate]
    myserver = "tlsgate_myserver.plugin"

A hook implementation may accept any subset of a hook's arguments, in any order (pluggy matches
them by name). Hooks evolve only by adding arguments, so an implementation written today keeps
working. **pluggy never passes an argument that has a default value in the implementation**
(``def install(..., alias=None)`` always sees ``None``): list the arguments you use without
defaults, and leave out the ones you do not use.

The version of this contract is :data:`tlsgate.plugin.PLUGIN_API`; declare the one you wrote
against as ``PLUGIN_API = "1.0"`` in your entry module, and a core of an older major version
refuses your plugin with a clear message instead of failing inside a hook. Import what a driver
needs from :mod:`tlsgate.plugin` only (models, errors, :class:`~tlsgate.plugin.Transaction`,
probes, certificate helpers): the rest of ``tlsgate`` is internal.

Declaration hooks (every plugin's answer is collected):

* :func:`tlsgate_endpoint_types`, :func:`tlsgate_connection_types`,
  :func:`tlsgate_credential_stores` declare what a plugin provides. The registry refuses two
  plugins that declare the same name. Their answers must depend only on the installed code (not
  on the environment or the machine): the core caches them between runs, rebuilt whenever an
  installed distribution or a loaded source file changes (:mod:`tlsgate.declarations`).
* :func:`validate` lets every plugin add problems to an endpoint before it is stored or used.
* :func:`tlsgate_dns_providers` (optional) declares DNS provider kinds for ACME dns-01.

Operation hooks (``firstresult``: the first non-None answer wins):

* :func:`connect` is called only on the plugin that declared the endpoint's connection type.
* :func:`discover_nodes`, :func:`install`, :func:`restart`, :func:`run_script` are called only
  on the plugin that declared the endpoint's type, plus plugins that declare no types at all
  (wrappers, policy and audit plugins, which may use ``hookwrapper``/``wrapper=True`` or
  ``tryfirst``). So a driver needs no ``if endpoint.type != ...`` guard; a plugin owning several
  types branches on ``endpoint.type``.

Optional operation hooks (an endpoint type may leave them out; the core then says the type cannot
do it):

* :func:`acme_http01` lets a web-server type answer an ACME http-01 challenge itself.

Errors: raise :class:`tlsgate.plugin.ValidationError` for bad user input (exit 2) and
:class:`tlsgate.plugin.OperationError` when the operation fails (exit 1); anything else raised in
any hook (``validate`` and the declaration hooks included) is reported as a plugin bug naming the
plugin and its distribution. Never put a secret in an error message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable

    from .bundle import CertificateBundle
    from .connection import Connection
    from .lifecycle.dns import DnsProviderType
    from .models import (
        ConnectionType,
        Credentials,
        CredentialStoreType,
        Endpoint,
        EndpointType,
        InstallResult,
        Node,
        Problem,
        RestartResult,
        ScriptResult,
    )

spec = pluggy.HookspecMarker("tlsgate")


@spec
def tlsgate_endpoint_types() -> list[EndpointType]:
    """Declare the endpoint types this plugin serves.

    Return a list of :class:`tlsgate.plugin.EndpointType`: the type's name (the word after
    ``tls add``), its allowed connection types, the gateway platforms where ``local`` is allowed,
    its options class (attrs, fields made with :func:`tlsgate.plugin.option`), and whether an install
    needs ``tls restart`` to take effect. Called once when the registry loads.
    """


@spec
def tlsgate_connection_types() -> list[ConnectionType]:
    """Declare the transports (connection types) this plugin provides, with default ports.

    A plugin that declares a connection type must answer :func:`connect` for it.
    """


@spec
def tlsgate_credential_stores() -> list[CredentialStoreType]:
    """Declare the kinds of credential store this plugin provides (``tlsgate store add KIND``).

    Each :class:`tlsgate.plugin.CredentialStoreType` has an options class and a factory that builds a
    client with ``get(cred_id) -> dict`` (keys: user, password, ssh_key, ssh_key_password) and
    ``test() -> str``; optionally ``validate(options) -> list[Problem]``, run by ``store add``
    before the store is recorded (no connection: a URL's form, which credentials go together).
    """


@spec
def tlsgate_dns_providers() -> list[DnsProviderType]:
    """Declare the kinds of DNS provider this plugin provides (``tlsgate dns add NAME KIND``),
    used by ``cert request --challenge dns-01 --dns NAME``. Optional.

    Each :class:`tlsgate.plugin.DnsProviderType` has a name, a description, an options class (attrs,
    fields made with :func:`tlsgate.plugin.option`; secret ones are sealed at rest) and
    ``factory(name, options)`` returning a provider with ``add_txt(fqdn, value)``,
    ``wait_visible(fqdn, value, timeout)`` (return once the zone's authoritative server answers
    the record), ``remove_txt(fqdn, value)`` (remove exactly that value) and ``test() -> str``.
    The registry refuses two plugins that declare the same kind. The core ships ``rfc2136``.
    """


@spec
def validate(endpoint: Endpoint) -> list[Problem]:
    """Check an endpoint before it is stored or used; return problems (empty list when fine).

    Called on every plugin for every endpoint; look only at what concerns you (usually your own
    types' options). Do not connect to remote hosts here: ``tls add`` never does. Local checks
    (a local keystore file exists and opens) are fine when ``endpoint.connection.type`` is
    ``local``.
    """


@spec(firstresult=True)
def connect(endpoint: Endpoint, credentials: Credentials) -> Connection | None:
    """Open a :class:`tlsgate.plugin.Connection` to the endpoint's host.

    Called only on the plugin that declared ``endpoint.connection.type``. ``credentials`` are
    resolved by the core for this job (from the inventory or a credential store); use them and
    drop them, never store or log them. Raise :class:`tlsgate.plugin.ConnectionFailed` with a
    clear reason (refused, unreachable, authentication failed, host key unknown or changed).
    """


@spec(firstresult=True)
def discover_nodes(endpoint: Endpoint, connection: Connection) -> list[Node] | None:
    """Return every node the endpoint serves, with the certificate each presents.

    Read the server's configuration through ``connection`` (never assume the gateway's own
    file system), one :class:`tlsgate.plugin.Node` per virtual host / server block / connector host /
    binding / profile / keystore entry and listen address. Fill ``certificate`` (DER) and
    ``fingerprint`` when the certificate can be read; confirm with
    :func:`tlsgate.plugin.served_certificate` where the port is reachable. Change nothing.
    """


@spec(firstresult=True)
def install(
    endpoint: Endpoint,
    connection: Connection,
    bundle: CertificateBundle,
    nodes: Sequence[Node],
    dry_run: bool,
    alias: str | None,
) -> InstallResult | None:
    """Install ``bundle`` (leaf, key, ordered chain) on ``nodes`` of the endpoint.

    ``nodes`` are the nodes the operator chose (``--node``) as last discovered; when empty,
    choose the nodes whose names the certificate covers (web servers) or the entry named by
    ``alias`` / derived from the certificate (keystores: ``bundle.default_alias()``).

    The install is a transaction: use :class:`tlsgate.plugin.Transaction` to back up every file
    before changing it, write atomically (keys 0600), run the server's own config test, reload,
    verify by TLS handshake (:func:`tlsgate.plugin.expect_served`), and on any failure restore
    every file, reload again and raise :class:`tlsgate.plugin.OperationError` with ``rolled_back=True``.
    Changes that are not files (objects created through a REST API) go in the same journal with
    ``tx.undo(fn)``, undone newest first; ``tx.save_backup`` keeps what they replaced.

    With ``dry_run`` change nothing: return an :class:`tlsgate.plugin.InstallResult` whose ``plan``
    lists the files that would be written, the entries added or replaced and the commands that
    would run, with ``dry_run=True``.
    """


@spec(firstresult=True)
def restart(endpoint: Endpoint, connection: Connection) -> RestartResult | None:
    """Restart or reload the endpoint so that installed certificates take effect.

    Web servers: reload / graceful restart, after the server's config test. Keystores: run the
    endpoint's restart script when it has one. Return a :class:`tlsgate.plugin.RestartResult` saying
    what was done (``restarted=False`` with the reason when nothing needs doing).
    """


@spec(firstresult=True)
def run_script(
    endpoint: Endpoint, connection: Connection, script: str, args: Sequence[str]
) -> ScriptResult | None:
    """Run the operator's script on the endpoint's host with ``args`` passed as argv.

    Never through a shell string. Return a :class:`tlsgate.plugin.ScriptResult`; a non-zero exit is a
    result, not an exception (the caller decides).
    """


@spec(firstresult=True)
def acme_http01(
    endpoint: Endpoint, connection: Connection, domain: str, token: str, key_authorization: str, http_port: int
) -> Callable[[], None] | None:
    """Answer an ACME http-01 challenge from the endpoint itself. Optional.

    Called only on the plugin that declared ``endpoint.type`` (``cert request --challenge
    http-01 --via ENDPOINT``), once per domain of the order, before the CA is told to validate.
    Make every server block / virtual host that serves ``domain`` over plain HTTP on
    ``http_port`` (80, or ``--http_port``: the port the CA validates on) answer
    ``GET /.well-known/acme-challenge/<token>`` with exactly ``key_authorization``
    (``text/plain``), by an exact-match rule that shadows nothing else, as a
    :class:`tlsgate.plugin.Transaction`: config test, reload, restore on failure
    (:func:`tlsgate.plugin.http01_path`, :func:`tlsgate.plugin.expect_http_answer` and
    :func:`tlsgate.plugin.undo_later` do the shared parts).

    Return a callable that removes the answer again (restores every file byte for byte and
    reloads); the core calls it after validation, whether it succeeded or failed, and calls the
    cleanups of several domains in reverse order. Raise :class:`tlsgate.plugin.OperationError` naming
    the domain when no block serves it over plain HTTP on ``http_port``. Return None for an
    endpoint type that cannot answer (the core then refuses ``--via`` for it).
    """
