"""Value objects shared by the core and every plugin (attrs, frozen where they can be)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import attrs

from .secret import Secret

#: Gateway platforms named by the reference document's connection-type table.
PLATFORMS = ("windows", "linux", "docker")


@attrs.frozen
class EndpointType:
    """What a plugin declares for each endpoint type it serves (``tlsgate_endpoint_types``).

    ``connection_types``: the allowed ``--connection_type`` values, in the reference document's
    order. ``local_platforms``: gateway platforms on which ``local`` is allowed ("windows",
    "linux"; never "docker"). ``options``: an attrs class built with :func:`tlsgate.option`.
    ``needs_restart``: an install only takes effect after ``tls restart`` (Apache, Tomcat).
    ``aliases_are_names``: a node's aliases are host names it answers for (server aliases), so
    the certificate must cover them; False when they are labels (IIS: the site's name).
    """

    name: str
    description: str
    connection_types: tuple[str, ...]
    local_platforms: tuple[str, ...] = ()
    options: type | None = None
    needs_restart: bool = False
    vendor: str = ""
    aliases_are_names: bool = True


@attrs.frozen
class ConnectionType:
    """A transport a plugin provides (``tlsgate_connection_types``).

    ``default_port`` is used when ``--port`` is not given. ``insecure`` types skip TLS
    verification and say so in ``tls show`` and in the audit log. ``remote`` types need
    ``--host`` and a credential. ``platform`` is what the transport reaches (``"windows"``: its
    commands are PowerShell). ``host_keys`` types are SSH: they verify the server's host key
    against known_hosts (``tls host-key`` / ``tls trust``) and accept ``--ssh_key_path``. The core
    decides by these fields, never by a connection type's name.
    """

    name: str
    description: str
    default_port: int | None = None
    remote: bool = True
    insecure: bool = False
    platform: str = "posix"  # the remote platform this transport reaches: "posix" or "windows"
    host_keys: bool = False  # SSH: host keys checked against known_hosts; --ssh_key_path accepted
    #: nodes carry the address clients connect to, not an address on the host --host names (a
    #: load balancer's virtual servers): ``tls verify`` probes a node's own ip
    node_addresses: bool = False
    #: attrs class of transport-specific ``tls add`` flags (built with :func:`tlsgate.option`),
    #: stored in ``ConnectionSpec.extra``; e.g. ``--ca_bundle`` for winrm_https and rest.
    options: type | None = None


@attrs.frozen
class ConnectionSpec:
    """How to reach an endpoint. Secrets are :class:`Secret`; ``store``/``store_cred_id`` name a
    credential store entry resolved at job time instead."""

    type: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: Secret | None = None
    ssh_key_path: str | None = None
    ssh_key_password: Secret | None = None
    store: str | None = None
    store_cred_id: str | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)  # transport options (ca_bundle, auth, ...)


@attrs.frozen
class Credentials:
    """Credentials resolved for one job (from the inventory or a credential store). Never stored."""

    user: str | None = None
    password: Secret | None = None
    ssh_key_path: str | None = None
    ssh_key: Secret | None = None  # private key text from a credential store
    ssh_key_password: Secret | None = None
    #: Per bastion of ``--ssh_jump`` (in order): its own credentials, or None for the endpoint's.
    hops: tuple[Credentials | None, ...] = ()


@attrs.frozen
class Endpoint:
    """An endpoint in the inventory. ``options`` is an instance of the type's options class."""

    name: str
    type: str
    connection: ConnectionSpec
    options: Any = None
    instance_id: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    organization: str | None = None
    department: str | None = None

    @property
    def delegated(self) -> bool:
        return self.organization is not None

    @property
    def host(self) -> str:
        """The host to probe: the connection's host, or loopback for local endpoints."""
        return self.connection.host or "127.0.0.1"


@attrs.frozen
class Problem:
    """One thing wrong with an endpoint, from a ``validate`` hook. ``option`` names the flag."""

    message: str
    option: str | None = None

    def __str__(self) -> str:
        return f"{self.option}: {self.message}" if self.option else self.message


@attrs.frozen
class Node:
    """One thing an endpoint serves a certificate on: a server block, vhost, connector host,
    binding, virtual server profile, or keystore entry.

    ``name``: the node's name (server name, SNI host, entry alias). ``alias``: other names.
    ``protocol``: "http" or "https" (keystore entries: "file"). ``ip``/``port``: where it listens
    (None for keystore entries). ``fingerprint``: SHA-256 hex of the served certificate (DER),
    ``certificate``: that certificate in DER. ``locator``: driver-private (file:line, profile
    path, entry alias) so a later install finds the node again.
    """

    name: str
    protocol: str = "https"
    alias: tuple[str, ...] = ()
    ip: str | None = None
    port: int | None = None
    fingerprint: str | None = None
    subject: str | None = None
    not_after: dt.datetime | None = None
    vendor: str = ""
    state: str = "active"
    locator: str = ""
    certificate: bytes | None = attrs.field(default=None, repr=False)

    @property
    def key(self) -> str:
        """Identity of the node within its endpoint (name + address + locator)."""
        return f"{self.name}|{self.ip or ''}|{self.port or ''}|{self.locator}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alias": list(self.alias),
            "protocol": self.protocol,
            "ip": self.ip,
            "port": self.port,
            "fingerprint": self.fingerprint,
            "subject": self.subject,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "vendor": self.vendor,
            "state": self.state,
            "locator": self.locator,
        }


@attrs.frozen
class PlanStep:
    """One step of an install plan, shown by ``--dry-run``: ``action`` is one of write, edit,
    add-entry, replace-entry, remove, run, reload, restart, verify, upload, api."""

    action: str
    target: str
    detail: str = ""
    #: True when the step would run through the connection's escalation (sudo).
    privileged: bool = False
    #: For ``run`` steps: the command as argv (``target`` is its display form).
    argv: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.action:<14} {self.target}" + (f"  ({self.detail})" if self.detail else "")


@attrs.frozen
class InstallResult:
    """What an install did (or, with dry_run, would do)."""

    nodes: tuple[str, ...] = ()
    files_written: tuple[str, ...] = ()
    backups: tuple[str, ...] = ()
    plan: tuple[PlanStep, ...] = ()
    verified: bool = False
    #: how ``verified`` was established, as the CLI says it ("verified by ...")
    verified_by: str = "TLS handshake"
    rolled_back: bool = False
    dry_run: bool = False
    messages: tuple[str, ...] = ()
    alias: str | None = None


@attrs.frozen
class RestartResult:
    restarted: bool
    message: str = ""


@attrs.frozen
class ScriptResult:
    script: str
    args: tuple[str, ...]
    exit_code: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@attrs.frozen
class CommandResult:
    """The outcome of ``Connection.run``. ``stdout``/``stderr`` are decoded text; bytes of
    ``stdout`` that are not UTF-8 (a Latin-1 file name or server name a server's dump prints)
    are kept with surrogateescape, as file contents are, so that a path names the same file."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@attrs.frozen
class FileStat:
    size: int
    mode: int
    mtime: float
    uid: int | None = None
    gid: int | None = None
    is_dir: bool = False


@attrs.frozen
class CredentialStoreType:
    """A kind of credential store a plugin provides (``tlsgate_credential_stores``).

    ``options``: attrs class (built with :func:`tlsgate.option`) of ``tlsgate store add <kind>``.
    ``factory(config) -> CredentialStore`` builds a client from the stored options.
    ``writable`` stores keep their secrets in tlsgate itself (``tlsgate store put``); the others
    are filled with their own tools. ``validate(options) -> list[Problem]``, when given, checks the
    options of ``tlsgate store add`` before the store is recorded (a URL, which credentials go
    together); it makes no connection.
    """

    name: str
    description: str
    options: type | None
    factory: Any
    writable: bool = False
    validate: Any = None


def names(nodes: Sequence[Node]) -> list[str]:
    return [n.name for n in nodes]
