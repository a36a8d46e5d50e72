"""The library API: everything the CLI does, as Python calls that return values and never print.

    from tlsgate.api import Gateway
    from tlsgate import CertificateBundle

    gw = Gateway()                                   # $TLSGATE_HOME inventory, installed plugins
    ep = gw.add_endpoint("pem", name="web-pem", connection_type="local",
                         options={"path": "/etc/ssl/web.pem"})
    gw.add_org("Acme"); gw.delegate("web-pem", "Acme")
    nodes = gw.discover("web-pem")
    bundle = CertificateBundle.from_pem_files("new.crt", "new.key", "chain.crt")
    outcome = gw.install("web-pem", bundle)          # a transaction: restored on any failure
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from . import backups as backup_sets
from . import leases
from .connection import Connection, current_temp_tag
from .errors import NotFoundError, OperationError, TlsgateError, ValidationError
from .gateway_platform import gateway_platform
from .gcpause import gc_paused
from .inventory import (
    Inventory,
    StoredEndpoint,
    connection_from_dict,
    endpoint_view,
    open_inventory,
    url_without_userinfo,
)
from .models import ConnectionSpec, Credentials, Endpoint, InstallResult, Node, RestartResult, ScriptResult
from .options import OptionSpec, build_options, option_specs, options_to_dict
from .policy import InstallPolicy, node_names, policy, uncovered_names
from .secret import Secret
from .transaction import Transaction
from .validate import check_alias, check_host, check_name, check_script_path, check_text

if TYPE_CHECKING:  # cryptography loads with the first command that handles a certificate
    from .bundle import CertificateBundle
    from .registry import Registry  # the plugins load on first use (Gateway.registry)

NAME_RULE = (1, 32)
HOST_RULE = (1, 255)
SECRET_RULE = (1, 1024)  # --password, --ssh_key_password: an empty one is a mistake, never a login
CONNECTION_FIELDS = ("host", "port", "user", "password", "ssh_key_path", "ssh_key_password", "store", "store_cred_id")


@attrs.frozen
class NodeView:
    """A node as ``tls nodes`` shows it: SSL is the certificate ID when the inventory knows the
    served certificate and it is assigned to an organization/department, else "External"."""

    node: Node
    ssl: str | None

    def to_json(self) -> dict[str, Any]:
        return {**self.node.to_json(), "ssl": self.ssl}


@attrs.frozen
class InstallOutcome:
    endpoint: str
    certificate_id: int | None
    result: InstallResult
    nodes_after: tuple[Node, ...] = ()
    warnings: tuple[str, ...] = ()
    backup: str | None = None
    #: why nothing was installed (``replaces`` matched no node), else None
    skipped: str | None = None
    #: the fingerprints the chosen nodes served before (comma-separated), if any
    before: str | None = None

    def to_json(self) -> dict[str, Any]:
        r = self.result
        return {
            "warnings": list(self.warnings),
            "backup": self.backup,
            "endpoint": self.endpoint,
            "certificate_id": self.certificate_id,
            "dry_run": r.dry_run,
            "nodes": list(r.nodes),
            "alias": r.alias,
            "files_written": list(r.files_written),
            "backups": list(r.backups),
            "verified": r.verified,
            "verified_by": r.verified_by if r.verified else None,
            "rolled_back": r.rolled_back,
            "plan": [attrs.asdict(s) for s in r.plan],
            "messages": list(r.messages),
            "skipped": self.skipped,
        }


class InstalledWithFailure(OperationError):
    """The certificate was installed and recorded, then a step after the commit (the install
    script) failed: ``outcome`` is the install, the message the failure (exit status 1)."""

    def __init__(self, message: str, outcome: InstallOutcome) -> None:
        self.outcome = outcome
        super().__init__(message, rolled_back=False)


@attrs.frozen
class TestReport:
    endpoint: str
    connection_type: str
    platform: str
    insecure: bool
    checks: tuple[tuple[str, bool, str], ...]

    __test__ = False

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint, "connection_type": self.connection_type, "platform": self.platform,
            "insecure": self.insecure, "ok": self.ok,
            "checks": [{"check": c, "ok": ok, "detail": d} for c, ok, d in self.checks],
        }


class Gateway:
    """The tlsgate library entry point: inventory + plugins + jobs."""

    def __init__(self, inventory: Inventory | None = None, registry: Registry | None = None) -> None:
        self._registry = registry
        self.inventory = inventory or open_inventory()
        self._lifecycle: Any = None

    @property
    def registry(self) -> Registry:
        """The plugins, loaded on first use (``tls list`` of endpoints needs only what they
        declare: :func:`tlsgate.declarations.declarations`)."""
        if self._registry is None:
            from .registry import get_registry

            self._registry = get_registry()
        return self._registry

    @registry.setter
    def registry(self, registry: Registry) -> None:
        self._registry = registry

    def close(self) -> None:
        self.inventory.close()

    @property
    def lifecycle(self) -> Any:
        """ACME accounts, DNS providers, cert request / renew / revoke (:mod:`tlsgate.lifecycle`)."""
        from .lifecycle.service import Lifecycle

        if self._lifecycle is None:
            self._lifecycle = Lifecycle(self)
        return self._lifecycle

    # -- endpoint types ---------------------------------------------------------------------------
    def endpoint_type(self, name: str) -> Any:
        try:
            return self.registry.endpoint_types[name]
        except KeyError:
            known = ", ".join(sorted(self.registry.endpoint_types)) or "none installed"
            raise ValidationError(f"unknown endpoint type {name!r} (installed: {known})") from None

    def transport_option_specs(self, type_name: str) -> list[OptionSpec]:
        """Options contributed by the connection types an endpoint type allows (deduplicated)."""
        seen: dict[str, OptionSpec] = {}
        for ctype in self.endpoint_type(type_name).connection_types:
            ct = self.registry.connection_types.get(ctype)
            if ct is not None:
                for spec in option_specs(ct.options):
                    seen.setdefault(spec.name, spec)
        return list(seen.values())

    # -- endpoints --------------------------------------------------------------------------------
    def add_endpoint(
        self,
        type_name: str,
        *,
        name: str | None,
        connection_type: str | None,
        host: str | None = None,
        port: int | str | None = None,
        user: str | None = None,
        password: Secret | str | None = None,
        ssh_key_path: str | None = None,
        ssh_key_password: Secret | str | None = None,
        store: str | None = None,
        store_cred_id: str | None = None,
        transport_options: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        zone: str | None = None,
    ) -> Endpoint:
        """Validate and store an endpoint (no remote connection is made). Raises ValidationError.
        ``zone``: the network zone whose workers reach it (default ``default``)."""
        from .queue import validate_zone

        zone = validate_zone(zone)
        if name in self.inventory.endpoint_names():
            raise ValidationError(f"an endpoint named {name!r} already exists", option="--name")
        endpoint, opts = self._build_endpoint(type_name, dict(
            name=name, connection_type=connection_type, host=host, port=port, user=user,
            password=password, ssh_key_path=ssh_key_path, ssh_key_password=ssh_key_password, store=store,
            store_cred_id=store_cred_id, transport_options=transport_options, options=options))
        self.inventory.add_endpoint(endpoint, options_to_dict(opts), zone=zone)
        self._audit("tls add", "ok", endpoint, details={"type": type_name, "connection_type": connection_type})
        return endpoint

    def set_endpoint(self, ref: str, changes: dict[str, Any]) -> Endpoint:
        """Change options of an endpoint (``{"store_password": Secret(...), "port": 2222}``: the
        type's options, its transport's, and the connection flags but the connection type),
        validated as ``tls add`` validates them. The endpoint keeps its instance ID, delegation,
        nodes and history; the audit entry names the options changed (never their values). A
        value of None (or "" for an option of the type or its transport) removes an optional
        setting; a required one is then refused."""
        stored = self.inventory.get_endpoint(ref)
        if not changes:
            raise ValidationError("give at least one option to change (e.g. --store_password -)")
        conn = dict(stored.connection)
        ctype_name = str(conn.pop("type"))
        extra = dict(conn.pop("extra", {}) or {})
        options = dict(stored.options)
        etype = self.endpoint_type(stored.type)
        type_names = {sp.name for sp in option_specs(etype.options)}
        ctype = self.registry.connection_types.get(ctype_name)
        transport_names = {sp.name for sp in option_specs(ctype.options if ctype else None)}
        zone = None
        for key, value in changes.items():
            if key == "zone":
                from .queue import validate_zone

                zone = validate_zone(value)
                continue
            if key in ("name", "connection_type", "type"):
                raise ValidationError("cannot be changed (add a new endpoint instead)", option=f"--{key}")
            if key in CONNECTION_FIELDS:
                conn[key] = value
            elif key in type_names:
                options[key] = None if value == "" else value  # '' removes it: back to the default
            elif key in transport_names:
                extra[key] = None if value == "" else value
            else:
                known = sorted({*CONNECTION_FIELDS, *type_names, *transport_names, "zone"})
                raise ValidationError(f"is not an option of {stored.type} endpoints over {ctype_name} "
                                      f"(options: {', '.join('--' + k for k in known)})", option=f"--{key}")
        if changes.get("password") is not None:  # a password replaces a credential store entry
            conn.pop("store", None)
            conn.pop("store_cred_id", None)
        if changes.get("store") is not None:
            conn.pop("password", None)
        options = {k: v for k, v in options.items() if k in type_names}
        endpoint, opts = self._build_endpoint(stored.type, {
            **conn, "name": stored.name, "connection_type": ctype_name, "transport_options": extra,
            "options": options, "instance_id": stored.id})
        endpoint = attrs.evolve(endpoint, organization=stored.organization, department=stored.department)
        self.inventory.update_endpoint(endpoint, options_to_dict(opts), zone=zone)
        self._audit("tls set", "ok", endpoint, details={"changed": sorted(changes)})
        return endpoint

    def _build_endpoint(self, type_name: str, fields: dict[str, Any]) -> tuple[Endpoint, Any]:
        """Validate ``fields`` (``add_endpoint``'s keyword arguments, plus ``instance_id``) into
        an endpoint and its options; nothing is stored."""
        name, connection_type, host, port, user, password, ssh_key_path, ssh_key_password, store, store_cred_id = (
            fields.get(k) for k in ("name", "connection_type", *CONNECTION_FIELDS))
        transport_options, options, instance_id = (
            fields.get(k) for k in ("transport_options", "options", "instance_id"))
        etype = self.endpoint_type(type_name)
        name = check_name(name, "--name", *NAME_RULE)
        if not connection_type:
            raise ValidationError(f"is required (one of: {', '.join(etype.connection_types)})", option="--connection_type")
        if connection_type not in etype.connection_types:
            raise ValidationError(
                f"must be one of: {', '.join(etype.connection_types)} (for {type_name})", option="--connection_type"
            )
        ctype = self.registry.connection_types.get(connection_type)
        if ctype is None:
            raise ValidationError(f"{connection_type!r} is not provided by any installed plugin", option="--connection_type")
        password = _secret(password)
        ssh_key_password = _secret(ssh_key_password)
        given = {"host": host, "port": port, "user": user, "password": password, "ssh_key_path": ssh_key_path,
                 "ssh_key_password": ssh_key_password, "store": store, "store_cred_id": store_cred_id}
        extra_specs = {s.name: s for s in option_specs(ctype.options)}
        transport_options = {k: v for k, v in (transport_options or {}).items() if v is not None}
        for key in transport_options:
            if key not in extra_specs:
                raise ValidationError(f"is not used with --connection_type {connection_type}", option=f"--{key}")
        if not ctype.remote:
            platform = gateway_platform()
            if platform not in etype.local_platforms:
                where = {"docker": "in Docker", "windows": "on Windows", "linux": "on Linux"}[platform]
                raise ValidationError(
                    f"local is not allowed for {type_name} on a gateway {where}; use a remote connection type",
                    option="--connection_type",
                )
            for key, value in given.items():
                if value is not None:
                    raise ValidationError(f"is not used with --connection_type {connection_type}", option=f"--{key}")
            spec = ConnectionSpec(type=connection_type)
        else:
            host = check_host(host, "--host")
            port_num = _check_port(port, ctype.default_port)
            if ssh_key_path is not None or ssh_key_password is not None:
                if not ctype.host_keys:
                    raise ValidationError(f"is only used with ssh connection types, not {connection_type}",
                                          option="--ssh_key_path" if ssh_key_path is not None else "--ssh_key_password")
                if ssh_key_path is None:
                    raise ValidationError("needs --ssh_key_path", option="--ssh_key_password")
                _check_text(ssh_key_path, "--ssh_key_path", 1, 4096)
                if not Path(ssh_key_path).expanduser().is_file():
                    raise ValidationError(f"{ssh_key_path}: no such file", option="--ssh_key_path")
                ssh_key_path = str(Path(ssh_key_path).expanduser().resolve())
            if (store is None) != (store_cred_id is None):
                raise ValidationError("--store and --store_cred_id go together",
                                      option="--store" if store is None else "--store_cred_id")
            if store is not None:
                self.inventory.store(store)  # NotFoundError naming --store
                _check_text(store_cred_id, "--store_cred_id", 1, 1024)
                if password is not None:
                    raise ValidationError("give either --password or --store/--store_cred_id, not both", option="--password")
            # ssh alone may log in with an ssh-agent's keys or ~/.ssh/config's IdentityFile
            if password is None and ssh_key_path is None and store is None and connection_type != "ssh":
                raise ValidationError(
                    f"{connection_type} needs --password, --ssh_key_path, or --store with --store_cred_id",
                    option="--password",
                )
            if user is not None:
                _check_text(user, "--user", 1, 256)
            for flag, secret in (("--password", password), ("--ssh_key_password", ssh_key_password)):
                if secret is not None and not 1 <= len(secret.reveal()) <= SECRET_RULE[1]:
                    raise ValidationError(f"must be between {SECRET_RULE[0]} and {SECRET_RULE[1]} characters",
                                          option=flag)
            extra = {n: extra_specs[n].check(v) for n, v in transport_options.items()}
            spec = ConnectionSpec(
                type=connection_type, host=host, port=port_num, user=user, password=password,
                ssh_key_path=ssh_key_path, ssh_key_password=ssh_key_password, store=store,
                store_cred_id=store_cred_id, extra=extra,
            )
        opts = build_options(etype.options, options or {})
        endpoint = Endpoint(name=name, type=type_name, connection=spec, options=opts)
        if instance_id is not None:
            endpoint = attrs.evolve(endpoint, instance_id=instance_id)
        problems = self.registry.validate(endpoint)
        if problems:
            first = problems[0]
            raise ValidationError(first.message, option=first.option)
        return endpoint, opts

    def endpoint(self, ref: str) -> Endpoint:
        return self._materialise(self.inventory.get_endpoint(ref))

    def _materialise(self, stored: StoredEndpoint) -> Endpoint:
        etype = self.endpoint_type(stored.type)
        known = {s.name for s in option_specs(etype.options)}
        raw = {k: v for k, v in stored.options.items() if k in known}
        opts = etype.options(**raw) if etype.options is not None else None
        return Endpoint(
            name=stored.name, type=stored.type, connection=connection_from_dict(stored.connection),
            options=opts, instance_id=stored.id, organization=stored.organization, department=stored.department,
        )

    def endpoints(self) -> list[StoredEndpoint]:
        return self.inventory.endpoints()

    def endpoint_views(self) -> list[dict[str, Any]]:
        """Every endpoint as :meth:`describe` gives it, ordered by name (``tls list --json``)."""
        if self._registry is None:
            from .reads import endpoint_views

            return endpoint_views(self.inventory)
        return [self.describe(s) for s in self.endpoints()]

    def describe(self, stored: StoredEndpoint | Endpoint | str) -> dict[str, Any]:
        """JSON shape of an endpoint (secrets redacted): a stored endpoint, an :class:`Endpoint`
        with an instance ID, or a name / instance ID."""
        if isinstance(stored, Endpoint):
            stored = self.inventory.get_endpoint(stored.instance_id or stored.name)
        elif isinstance(stored, str):
            stored = self.inventory.get_endpoint(stored)
        if self._registry is not None:
            ctype: Any = self._registry.connection_types.get(stored.connection.get("type", ""))
        else:  # what the plugins declare is enough: they need not load (tlsgate.declarations)
            from .declarations import declarations

            ctype = declarations().connection_types.get(stored.connection.get("type", ""))
        return endpoint_view(stored, bool(ctype and ctype.insecure))

    def set_zone(self, ref: str, zone: str) -> StoredEndpoint:
        """Move an endpoint to another network zone (``tls set ENDPOINT --zone Z``)."""
        from .queue import validate_zone

        before = self.inventory.get_endpoint(ref)
        stored = self.inventory.set_zone(ref, validate_zone(zone))
        self.inventory.audit("tls set", "ok", endpoint=stored, details={"zone": {"from": before.zone, "to": stored.zone}})
        return stored

    def remove_endpoint(self, ref: str) -> StoredEndpoint:
        stored = self.inventory.remove_endpoint(ref)
        self.inventory.audit("tls remove", "ok", endpoint=stored)
        return stored

    # -- organizations ----------------------------------------------------------------------------
    def orgs(self) -> list[dict[str, Any]]:
        """Organizations with their departments, as ``org list --json`` prints them."""
        return self.inventory.orgs()

    def add_org(self, name: str) -> None:
        self.inventory.add_org(name)
        self.inventory.audit("org add", "ok", details={"org": name})

    def add_department(self, org: str, name: str) -> None:
        self.inventory.add_department(org, name)
        self.inventory.audit("org add-department", "ok", details={"org": org, "department": name})

    def delegate(self, ref: str, org: str, department: str | None = None) -> Endpoint:
        self.inventory.delegate(ref, org, department)
        stored = self.inventory.get_endpoint(ref)
        self.inventory.audit("tls delegate", "ok", endpoint=stored, details={"org": org, "department": department})
        return self._materialise(stored)

    def _insecure(self, endpoint: Endpoint) -> bool:
        ctype = self.registry.connection_types.get(endpoint.connection.type)
        return bool(ctype and ctype.insecure)

    def _audit_installed(self, endpoint: Endpoint, bundle: CertificateBundle, result: InstallResult,
                         failure: Exception | None, before: str | None, current: Sequence[Node],
                         cert_id: int | None, details: dict[str, Any], job_id: int | None) -> str | None:
        """The audit entry of an install that changed the endpoint ("ok", or "script failed"
        when a step after the change failed); returns ``before`` (the fingerprints replaced)."""
        if before is None:
            changed = set(result.nodes)
            before = ",".join(sorted({n.fingerprint for n in current
                                      if n.fingerprint and (n.name in changed or changed & set(n.alias))})) or None
        extra = {"error": str(failure)} if failure is not None else {}
        self._audit("tls install", "ok" if failure is None else "script failed", endpoint, before=before,
                    after=bundle.fingerprint,
                    details={**details, **extra, "certificate_id": cert_id, "nodes_changed": list(result.nodes),
                             "verified": result.verified, "messages": list(result.messages), **_job(job_id)})
        return before

    def _audit(self, action: str, result: str, endpoint: Endpoint, **kwargs: Any) -> None:
        """Audit entry for a job; jobs over an ``*_insecure`` transport say so in the entry."""
        details = dict(kwargs.pop("details", None) or {})
        if self._insecure(endpoint):
            details["tls_verification"] = "disabled (insecure connection type)"
        self.inventory.audit(action, result, endpoint=endpoint, details=details, **kwargs)

    # -- connections ------------------------------------------------------------------------------
    def credentials(self, endpoint: Endpoint) -> Credentials:
        spec = endpoint.connection
        if spec.store:
            kind, raw = self.inventory.store(spec.store)
            stype = self.registry.credential_store(kind)
            client = stype.factory(spec.store, stype.options(**raw) if stype.options else None)
            secret = client.get(spec.store_cred_id or "")
            hops: list[Credentials | None] = []
            for cred_id in str((spec.extra or {}).get("ssh_jump_store_cred_id") or "").split(","):
                own = client.get(cred_id.strip()) if cred_id.strip() else None
                hops.append(None if own is None else Credentials(
                    user=own.get("user"), password=_secret(own.get("password")),
                    ssh_key=_secret(own.get("ssh_key")), ssh_key_password=_secret(own.get("ssh_key_password"))))
            return Credentials(
                user=spec.user or secret.get("user"),
                password=_secret(secret.get("password")),
                ssh_key=_secret(secret.get("ssh_key")),
                ssh_key_password=_secret(secret.get("ssh_key_password")),
                ssh_key_path=spec.ssh_key_path,
                hops=tuple(hops),
            )
        return Credentials(user=spec.user, password=spec.password, ssh_key_path=spec.ssh_key_path,
                           ssh_key_password=spec.ssh_key_password)

    @contextmanager
    def connect(self, endpoint: Endpoint) -> Iterator[Connection]:
        """One connection for the whole job, closed at the end."""
        conn = self.registry.connect(endpoint, self.credentials(endpoint))
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def lease(self, endpoint: Endpoint, *, job_id: int | None = None) -> Iterator[leases.Lease]:
        """Hold the endpoint's lease (see :mod:`tlsgate.leases`): no other job, thread, process or
        gateway changes this endpoint meanwhile; a second one waits (``TLSGATE_LEASE_WAIT``) and
        then fails with "endpoint X is busy (job J on H since T)"."""
        with leases.hold(self.inventory, endpoint.instance_id, endpoint.name, job_id=job_id) as held:
            yield held

    # -- jobs -------------------------------------------------------------------------------------
    def discover(self, ref: str, *, job_id: int | None = None) -> list[Node]:
        endpoint = self.endpoint(ref)
        if not endpoint.delegated:
            raise OperationError(
                f"endpoint {endpoint.name!r} is not delegated to an organization or department; "
                f"run: tlsgate tls delegate {endpoint.name} --org ORG [--department DEPT]"
            )
        try:
            # under the lease: a discovery must not store what it read before an install finished
            with self.lease(endpoint, job_id=job_id), self.connect(endpoint) as conn, gc_paused():
                nodes = self.registry.discover_nodes(endpoint, conn)
                self._store_nodes(endpoint, nodes)
        except Exception as exc:
            self._audit("tls discover", "failed", endpoint, details={"error": str(exc)})
            raise
        self._audit("tls discover", "ok", endpoint, details={"nodes": len(nodes)})
        return nodes

    def _store_nodes(self, endpoint: Endpoint, nodes: Sequence[Node]) -> None:
        from cryptography import x509

        found = []
        for der in dict.fromkeys(n.certificate for n in nodes if n.certificate):  # distinct, in order
            try:
                found.append(x509.load_der_x509_certificate(der))
            except ValueError:
                continue
        if found:
            self.inventory.record_certificates(found, source=f"discovered:{endpoint.name}")
        self.inventory.replace_nodes(endpoint.instance_id, nodes)

    def nodes(self, ref: str) -> list[NodeView]:
        """The nodes the last discovery of ``ref`` found, as ``tls nodes`` shows them."""
        stored = self.inventory.get_endpoint(ref)
        assigned = self.inventory.certificate_ids_assigned()
        views = []
        for node in self.inventory.nodes(stored.id):
            if not node.fingerprint:
                ssl = None
            else:
                cid = assigned.get(node.fingerprint)
                ssl = str(cid) if cid is not None else "External"
            views.append(NodeView(node, ssl))
        return views

    def node_rows(self, endpoint_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The nodes of several endpoints (by instance ID; None: every endpoint) in ``tls nodes
        --json``'s shape, each naming its endpoint (:meth:`Inventory.node_rows`)."""
        return self.inventory.node_rows(endpoint_ids)

    def node_rows_json(self, endpoint_ids: Sequence[str] | None = None) -> list[str]:
        """:meth:`node_rows`, each node already one JSON object's text (for ``--json``)."""
        return self.inventory.node_rows_json(endpoint_ids)

    def install(
        self,
        ref: str,
        bundle: CertificateBundle,
        *,
        nodes: Sequence[str] = (),
        alias: str | None = None,
        dry_run: bool = False,
        force: bool = False,
        apply_pending: bool = False,
        allow_name_mismatch: bool = False,
        replaces: str | None = None,
        job_id: int | None = None,
        resumes: Sequence[int] = (),
    ) -> InstallOutcome:
        """Install a bundle: record the certificate (assigned to the endpoint's organization),
        run the driver's transaction, re-discover. Raises OperationError when it rolled back.

        Refused before anything is touched: a CA certificate as the leaf; an expired or
        not-yet-valid certificate unless ``force`` (then the audit entry says so). A chain that
        does not reach a trusted root is a warning.

        The whole transaction holds the endpoint's lease (not a dry run). ``replaces``: a SHA-256
        fingerprint; the nodes installed on are those the fresh discovery shows serving it (none:
        nothing is installed and the outcome says so, ``result.nodes`` empty and ``skipped`` set).

        ``apply_pending``: go ahead although the running server has not loaded some of its
        configuration files (a reload would apply them too). ``allow_name_mismatch``: install on
        nodes that answer for names the leaf does not cover. See :mod:`tlsgate.policy`.

        ``resumes``: earlier jobs whose item on this endpoint was this same install (a renewal's
        rollout OLD -> NEW that a killed run left half done); their dead attempts are restored
        first, as a retry of ``job_id`` restores its own (:meth:`check_unfinished`).
        """
        endpoint = self.endpoint(ref)
        if not endpoint.delegated:
            raise OperationError(
                f"endpoint {endpoint.name!r} is not delegated; run: tlsgate tls delegate {endpoint.name} --org ORG"
            )
        if alias is not None:
            alias = check_alias(alias)
        problem = bundle.leaf_problem()
        if problem:
            raise ValidationError(problem, option="--cert")
        details: dict[str, Any] = {"fingerprint": bundle.fingerprint, "subject": bundle.subject,
                                   "nodes": list(nodes), "alias": alias, "dry_run": dry_run}
        validity = bundle.validity_problem()
        if validity:
            if not force:
                raise ValidationError(f"{validity} (--force installs it anyway)", option="--cert")
            details["forced"] = validity
        warnings = tuple(w for w in [bundle.trust_problem()] if w)
        sink = None if dry_run else backup_sets.BackupSet(endpoint.name, endpoint.instance_id, job_id=job_id)
        if sink is not None:
            details["backup"] = sink.id
        before: str | None = None
        current: list[Node] = []
        after_nodes: list[Node] = []
        result: InstallResult | None = None
        failure: Exception | None = None
        cert_id = None
        audited = False
        try:
            # one install reads the same files several times within milliseconds (discovery, the
            # driver's load and backup, the read-back, the re-discovery): the transport may answer
            # a repeat from memory until the next change through the connection (a write, a
            # command); the read-back and the late check before each rename read the host's file
            with self._maybe_lease(endpoint, dry_run, job_id), self.connect(endpoint) as conn, \
                    conn.cached_reads():
                if sink is not None:
                    sink.info["host"] = conn.host
                    self.check_unfinished(endpoint, conn, job_id=job_id, resumes=resumes)
                current = self.registry.discover_nodes(endpoint, conn)
                if replaces is not None:
                    chosen = [n for n in current if n.fingerprint == replaces]
                    if not chosen:
                        return InstallOutcome(endpoint.name, None, InstallResult(dry_run=dry_run), tuple(current),
                                              skipped=f"no node serves {replaces[:16]}... any more")
                else:
                    chosen = _select_nodes(endpoint, current, nodes)
                before = ",".join(sorted({n.fingerprint for n in chosen if n.fingerprint})) or None
                rules = InstallPolicy(apply_pending=apply_pending, allow_name_mismatch=allow_name_mismatch,
                                      own_writes=self._own_writes(endpoint))
                if sink is not None:
                    sink.open()  # the journal: written before the first change, naming the set
                    self._audit("tls install", "started", endpoint, before=before, details={**details, **_job(job_id)})
                tag = current_temp_tag.set(sink.tag if sink is not None else "")
                try:
                    with Transaction.backups_to(sink), policy(rules):
                        result = self.registry.install(endpoint, conn, bundle, chosen, dry_run, alias)
                except Exception as exc:
                    committed = getattr(exc, "result", None)
                    if not isinstance(committed, InstallResult):
                        raise
                    result, failure = committed, exc  # the change stands; a later step failed
                finally:
                    current_temp_tag.reset(tag)
                if not dry_run:
                    try:
                        after_nodes = self.registry.discover_nodes(endpoint, conn)
                        details["file_mtimes"] = {**rules.applied, **_mtimes(conn, result.files_written)}
                        et = self.registry.endpoint_types.get(endpoint.type)
                        result = _check_served_names(result, bundle, after_nodes,
                                                     aliases=et.aliases_are_names if et is not None else True)
                        result = _note_others_changed(result, bundle, current, after_nodes)
                        # recorded while the lease is held, so the inventory matches the endpoint
                        org_id, dept_id = self.inventory.org_ids(endpoint.organization or "", endpoint.department)
                        # the certificate, the nodes and the audit entry of the outcome: one commit
                        with self.inventory.write(exclusive=False):
                            cert_id = self.inventory.record_certificate(bundle.leaf,
                                                                        source=f"installed:{endpoint.name}",
                                                                        org_id=org_id, dept_id=dept_id)
                            self._store_nodes(endpoint, after_nodes)
                            before = self._audit_installed(endpoint, bundle, result, failure, before, current,
                                                           cert_id, details, job_id)
                        audited = True  # (committed)
                    except Exception:
                        raise
                    except BaseException:
                        # Ctrl-C once the change stands: record it (with the mtimes it left, as
                        # tlsgate's own writes), so the next job does not take it for a dead one
                        if not audited:
                            details["file_mtimes"] = {**rules.applied, **_mtimes(conn, result.files_written)}
                            details["note"] = "interrupted after the install, before it was recorded in full"
                            self._audit_installed(endpoint, bundle, result, failure, before, current, cert_id,
                                                  details, job_id)
                        raise
        except Exception as exc:
            if not dry_run and result is None:
                self._audit("tls install", "rolled back" if getattr(exc, "rolled_back", False) else "failed",
                            endpoint, before=before, after=None,
                            details={**details, "error": str(exc), **_job(job_id)})
                raise
            if dry_run or failure is None:
                raise
            failure = OperationError(f"{failure}; re-discovery failed too: {exc}")
        assert result is not None
        if not dry_run and not audited:
            before = self._audit_installed(endpoint, bundle, result, failure, before, current, cert_id, details,
                                           job_id)
        outcome = InstallOutcome(endpoint.name, cert_id, result, tuple(after_nodes), warnings,
                                 sink.id if sink is not None else None, before=before)
        if failure is not None:
            raise InstalledWithFailure(str(failure), outcome) from failure
        return outcome

    # -- interrupted jobs ------------------------------------------------------------------------
    def backup_sets(self) -> list[backup_sets.StoredSet]:
        return backup_sets.load_sets(self.inventory.journal())

    def check_unfinished(self, endpoint: Endpoint, conn: Connection, *, job_id: int | None = None,
                         resumes: Sequence[int] = ()) -> None:
        """Before a job changes ``endpoint``: find installs on it whose process died. Their
        temporaries are removed; one that changed nothing is closed; one made by an earlier
        attempt of this same job (``job_id``: a retry of the job's item for this endpoint), or of
        a job this one resumes (``resumes``: the same rollout, left by a killed run), is restored
        and closed, so the retry starts from the endpoint as it was before the job; otherwise
        (another job's, or a lone install's, changes) refuse."""
        for stored in backup_sets.load_sets(self.inventory.journal(endpoint.instance_id), open_only=True):
            if stored.state != "unfinished" or stored.manifest.get("endpoint_id") != endpoint.instance_id:
                continue
            removed = backup_sets.remove_temporaries(conn, stored)
            changed = backup_sets.changed_files(conn, stored)
            if not changed:
                self._audit("tls install", "interrupted", endpoint,
                            details={"backup": stored.id, "changed": [], "temporaries_removed": removed,
                                     "note": "the process died before it changed any file"})
                continue
            if stored.job_id is not None and (stored.job_id == job_id or stored.job_id in resumes):
                self._restore_own(endpoint, conn, stored, removed)
                continue
            raise OperationError(
                f"endpoint {endpoint.name!r}: an install started {stored.manifest.get('started')} (pid "
                f"{stored.manifest.get('pid')}) died after changing {', '.join(changed)}; restore the "
                f"originals with: tlsgate backup restore {stored.id} (or keep the files as they are: "
                f"tlsgate backup dismiss {stored.id})"
            )

    def _restore_own(self, endpoint: Endpoint, conn: Connection, stored: backup_sets.StoredSet,
                     removed: list[str]) -> None:
        """A retry meets its own job's dead attempt: put the originals back, close the set."""
        try:
            restored = backup_sets.restore(conn, stored)
        except Exception as exc:
            # "set", not "backup": a failed restore leaves the set open (unfinished), it is no outcome
            self._audit("backup restore", "failed", endpoint,
                        details={"set": stored.id, "error": str(exc), "retry_of": stored.job_id})
            raise OperationError(
                f"endpoint {endpoint.name!r}: job {stored.job_id}'s earlier attempt died mid-install and "
                f"restoring its originals failed ({exc}); see: tlsgate backup restore {stored.id}"
            ) from exc
        self._audit("backup restore", "restored", endpoint,
                    details={"backup": stored.id, "restored": restored, "temporaries_removed": removed,
                             "retry_of": stored.job_id, "file_mtimes": _mtimes(conn, restored),
                             "note": f"job {stored.job_id} retried: its dead attempt's changes were undone first"})

    def restore_backup(self, ref: str) -> tuple[backup_sets.StoredSet, list[str], list[str]]:
        """Put back the originals of an unfinished (or any finished) install; returns the set, the
        files restored and the temporaries removed. A set whose job still runs is refused."""
        stored = backup_sets.find_set(self.inventory.journal(), ref)
        if stored.state == "running":
            raise OperationError(f"backup {ref}: the job that made it (pid {stored.manifest.get('pid')}) still runs")
        endpoint = self.endpoint(str(stored.manifest.get("endpoint_id") or stored.endpoint))
        try:
            with self.lease(endpoint), self.connect(endpoint) as conn:
                removed = backup_sets.remove_temporaries(conn, stored)
                restored = backup_sets.restore(conn, stored)
        except Exception as exc:
            # "set", not "backup": a failed restore leaves the set open (unfinished), it is no outcome
            self._audit("backup restore", "failed", endpoint, details={"set": stored.id, "error": str(exc)})
            raise
        self._audit("backup restore", "restored", endpoint,
                    details={"backup": stored.id, "restored": restored, "temporaries_removed": removed,
                             "file_mtimes": _mtimes(conn, restored)})
        return stored, restored, removed

    def dismiss_backup(self, ref: str) -> backup_sets.StoredSet:
        """Close an unfinished install, keeping the endpoint's files as they are."""
        stored = backup_sets.find_set(self.inventory.journal(), ref)
        if stored.state != "unfinished":
            raise OperationError(f"backup {ref} is {stored.state}, not unfinished; nothing to dismiss")
        endpoint = self.endpoint(str(stored.manifest.get("endpoint_id") or stored.endpoint))
        with self.lease(endpoint), self.connect(endpoint) as conn:
            removed = backup_sets.remove_temporaries(conn, stored)
        self._audit("backup dismiss", "dismissed", endpoint, details={"backup": stored.id, "temporaries_removed": removed})
        return stored

    def _own_writes(self, endpoint: Endpoint) -> dict[str, float]:
        """The files tlsgate wrote on this endpoint and the mtime each was left with (latest wins)."""
        out: dict[str, float] = {}
        # a restore (backup restore, a retry undoing its dead attempt) is tlsgate's write too
        for details in self.inventory.audit_details(endpoint.instance_id, ("tls install", "backup restore")):
            out.update(details.get("file_mtimes") or {})
        return out

    def _maybe_lease(self, endpoint: Endpoint, dry_run: bool, job_id: int | None) -> Any:
        return nullcontext() if dry_run else self.lease(endpoint, job_id=job_id)

    def verify(self, ref: str) -> list[dict[str, Any]]:
        """Compare what each node serves with the inventory's last discovery: TLS nodes by a
        handshake (with SNI, each distinct address/port/SNI once), file nodes (keystore entries)
        by reading the endpoint again over one connection (a TLS node whose certificate discovery could
        not read is left out: nothing to compare). One dict per node: endpoint, node,
        port, expected and served fingerprints, certificate (ID, or External), not_after, result
        (``ok`` / ``mismatch`` / ``unreachable`` / ``not probed``)."""
        from . import probe

        stored = self.inventory.get_endpoint(ref)
        endpoint = self._materialise(stored)
        nodes = self.inventory.nodes(stored.id)
        ctype = self.registry.connection_types.get(endpoint.connection.type)
        local = not (ctype and ctype.remote)
        targets: dict[int, probe.Target] = {}
        files: list[int] = []
        claimed = probe.claimed_addresses((n.ip, n.port) for n in nodes if n.protocol == "https")
        for i, node in enumerate(nodes):
            if node.protocol == "https" and node.port:
                if "not probed" in (node.state or "") or "QUIC" in (node.state or ""):
                    continue
                if not node.fingerprint:  # discovery read no certificate (IIS CCS): nothing to compare
                    continue
                own = bool(ctype and ctype.node_addresses and node.ip)
                host = (str(node.ip).strip("[]") if own
                        else probe.probe_host_for(node.ip, node.port, endpoint.connection.host, local, claimed))
                if host is None:  # a wildcard node behind an address-specific one: not reachable here
                    continue
                targets[i] = probe.Target(host, node.port, probe.verify_sni(node),
                                          proxy_protocol=probe.PROXY_NOTE in (node.state or ""))
            elif node.fingerprint and "not probed" not in (node.state or ""):
                # a keystore entry: read again; a TLS node no handshake reaches (an nginx
                # block on a unix socket) stays "not probed", never "ok" from its file
                files.append(i)
        served_tls = probe.served_fingerprints(targets.values(), timeout=3.0) if targets else {}
        # a server with one pair per key type (RSA + ECDSA) shows the other pair to a default
        # handshake: ask again for the key type of the node's own certificate
        for i, target in list(targets.items()):
            got = served_tls.get(target)
            if got is None or got == nodes[i].fingerprint:
                continue
            for kind in probe.KEY_KINDS:
                again = attrs.evolve(target, key_kind=kind)
                served_tls[again] = probe.served_fingerprints([again], timeout=3.0)[again]
                if served_tls[again] == nodes[i].fingerprint:
                    targets[i] = again
                    break
        served_files: dict[str, str | None] = {}
        file_error = None
        if files:
            try:
                with self.connect(endpoint) as conn:
                    served_files = {n.key: n.fingerprint for n in self.registry.discover_nodes(endpoint, conn)}
            except Exception as exc:  # noqa: BLE001 - the nodes are reported unreachable
                file_error = str(exc)
        known = {c.fingerprint: c for c in self.inventory.certificates()}
        out = []
        for i, node in enumerate(nodes):
            if i in targets:
                served = served_tls.get(targets[i])
                missing = served is None
            elif i in files:
                served = served_files.get(node.key)
                missing = file_error is not None or served is None
            else:
                if not node.fingerprint:
                    continue
                served, missing = None, False
            if i not in targets and i not in files:
                result = "not probed"
            elif missing:
                result = "unreachable"
            else:
                result = "ok" if served == node.fingerprint else "mismatch"
            rec = known.get(served or "")
            out.append({
                "endpoint": stored.name, "node": node.name, "port": node.port, "protocol": node.protocol,
                "expected": node.fingerprint, "served": served,
                "certificate": (str(rec.id) if rec and rec.organization else "External") if served else None,
                "not_after": rec.not_after if rec else (node.not_after.isoformat() if node.not_after else None),
                "result": result, **({"error": file_error} if i in files and file_error else {}),
            })
        return out

    def restart(self, ref: str, *, job_id: int | None = None) -> RestartResult:
        endpoint = self.endpoint(ref)
        try:
            with self.lease(endpoint, job_id=job_id), self.connect(endpoint) as conn:
                self.check_unfinished(endpoint, conn)  # a reload would activate a half install
                result = self.registry.restart(endpoint, conn)
        except Exception as exc:
            self._audit("tls restart", "failed", endpoint, details={"error": str(exc)})
            raise
        self._audit("tls restart", "ok", endpoint, details={"message": result.message,
                                                                             "restarted": result.restarted})
        return result

    def run_script(self, ref: str, script: str, args: Sequence[str], *, job_id: int | None = None) -> ScriptResult:
        """Run ``script`` (an absolute path on the endpoint's host) with ``args`` as argv."""
        endpoint = self.endpoint(ref)
        check_text(script, "SCRIPT", 1, 4096)
        with self.lease(endpoint, job_id=job_id), self.connect(endpoint) as conn:
            check_script_path(script, "SCRIPT", windows=conn.platform == "windows")
            self.check_unfinished(endpoint, conn)
            result = self.registry.run_script(endpoint, conn, script, args)
        self._audit("tls run-script", "ok" if result.ok else "failed", endpoint,
                             details={"script": script, "args": list(args), "exit_code": result.exit_code})
        return result

    def test(self, ref: str) -> TestReport:
        """Connect, authenticate, report the remote platform and whether what the type needs is
        there (the driver's discovery must succeed)."""
        endpoint = self.endpoint(ref)
        checks: list[tuple[str, bool, str]] = []
        platform, insecure = "?", False
        try:
            with self.connect(endpoint) as conn:
                platform, insecure = conn.platform, conn.insecure
                note = getattr(conn, "route_note", "")
                checks.append(("connect", True, f"{conn.host} ({endpoint.connection.type})"
                               + (f": {note}" if note else "")))
                if insecure:
                    checks.append(("tls verification", True, "SKIPPED: insecure connection type"))
                try:
                    nodes = self.registry.discover_nodes(endpoint, conn)
                    checks.append(("endpoint readable", True, f"{len(nodes)} node(s) found"))
                except Exception as exc:  # noqa: BLE001 - reported as a failed check
                    checks.append(("endpoint readable", False, str(exc)))
                else:
                    if conn.platform == "posix" and endpoint.connection.type != "local":
                        checks += self._privilege_checks(endpoint, conn, nodes)
        except Exception as exc:  # noqa: BLE001 - reported as a failed check
            checks.append(("connect", False, str(exc)))
        report = TestReport(endpoint.name, endpoint.connection.type, platform, insecure, tuple(checks))
        self._audit("tls test", "ok" if report.ok else "failed", endpoint,
                             details={"insecure": insecure, "checks": [c[0] for c in checks if not c[1]]})
        return report

    def _privilege_checks(self, endpoint: Endpoint, conn: Connection, nodes: Sequence[Node]) -> list[tuple[str, bool, str]]:
        """What an install of this endpoint needs on its host, from a dry-run plan with a
        throwaway certificate for its names: each command marked privileged (``sudo -n -l``
        allows it?) and each directory written (writable by the account, or through sudo)."""
        names = sorted({name for n in nodes if n.protocol == "https" for name in node_names(n)})[:20]
        # only a plan: a name the throwaway leaf misses or a pending change must not hide the list
        rules = InstallPolicy(apply_pending=True, allow_name_mismatch=True, own_writes=self._own_writes(endpoint))
        try:
            bundle = _throwaway_bundle(names or ["tlsgate-test.invalid"])
            with policy(rules):
                result = self.registry.install(endpoint, conn, bundle, [], True, None)
        except TlsgateError as exc:  # reported; the endpoint itself was readable
            return [("privileges", True, f"not listed: an install could not be planned ({exc})")]
        except Exception as exc:  # noqa: BLE001 - a fault of tlsgate's, never shown as fine
            return [("privileges", False, f"not listed: planning an install failed ({type(exc).__name__}: {exc})")]
        who = getattr(conn, "user", "") or "the login account"
        checks: list[tuple[str, bool, str]] = []
        seen: set[str] = set()
        writes_need_sudo = False
        for step in result.plan:
            if step.action == "run" and step.privileged and step.argv:
                shown = " ".join(step.argv)
                if shown in seen:
                    continue
                seen.add(shown)
                allowed = conn.sudo_allows(step.argv)
                if allowed is None:
                    checks.append((f"command {shown}", True, f"runs as {who} (no --sudo)"))
                else:
                    checks.append((f"sudo {shown}", allowed, "allowed by sudo -n -l" if allowed
                                   else f"NOT allowed for {who}: add it to the sudoers rule"))
            elif step.action in ("write", "replace"):
                directory = conn.path.dirname(step.target) or "."
                if directory in seen:
                    continue
                seen.add(directory)
                writable = conn.run(["test", "-w", directory]).ok
                if writable:
                    checks.append((f"directory {directory}", True, f"writable by {who}"))
                elif conn.escalation:
                    writes_need_sudo = True
                    checks.append((f"directory {directory}", True, f"not writable by {who}: written through sudo"))
                else:
                    checks.append((f"directory {directory}", False,
                                   f"not writable by {who} (use --sudo, or give the group write permission)"))
        if writes_need_sudo:
            sample = ["/home/.tlsgate-0.tmp", "/etc/.tlsgate-0.tmp"]
            for argv in (["install", "-m", "0644", "--", *sample], ["mv", "-f", "--", sample[1], "/etc/x"]):
                allowed = bool(conn.sudo_allows(argv))
                checks.append((f"sudo {argv[0]}", allowed, "allowed by sudo -n -l" if allowed
                               else f"NOT allowed for {who}: writes need sudo {argv[0]}"))
        return checks

    def _ssh_route(self, endpoint: Endpoint) -> Any:
        spec = endpoint.connection
        ctype = self.registry.connection_types.get(spec.type)
        if ctype is None or not ctype.host_keys or not spec.host:
            raise ValidationError(f"endpoint {endpoint.name!r} does not use an ssh connection type")
        from .transports import ssh

        return ssh.target_route(endpoint)

    def host_key(self, ref: str) -> tuple[str, str, Any, str, int]:
        """The SSH host key an ssh/ssh_windows endpoint presents: (type, SHA256 fingerprint, key,
        host, port). Connects only far enough to read the key; nothing is authenticated. With
        bastions, the first one whose key is not trusted yet answers (so ``tls trust`` asks for
        each in turn); once all are trusted, the endpoint's host through them."""
        endpoint = self.endpoint(ref)
        route = self._ssh_route(endpoint)
        from .transports import ssh

        key_type, fingerprint, key, host, port = ssh.path_host_key(endpoint, self.credentials(endpoint), route)
        return key_type, fingerprint, key, host, port

    def trust_host_key(self, ref: str, key: Any, host: str | None = None, port: int | None = None) -> None:
        endpoint = self.endpoint(ref)
        from .transports import ssh

        if host is None:
            route = self._ssh_route(endpoint)
            host, port = route.host, route.port
        ssh.trust_host_key(host, port or 22, key)
        self.inventory.audit("tls trust", "ok", endpoint=endpoint, details={"host": host, "port": port})

    # -- certificates -----------------------------------------------------------------------------
    def certificates(self) -> list[Any]:
        return self.inventory.certificates()

    def record_certificate_with_key(self, bundle: CertificateBundle, *, source: str, org: str | None = None,
                                    department: str | None = None) -> int:
        """Record a certificate with its key (sealed) and chain, so it can be deployed by ID
        (``tlsgate cert deploy ID``); returns its ID. Used by ``cert deploy`` and ACME issuance."""
        org_id, dept_id = self.inventory.org_ids(org, department) if org else (None, None)
        cert_id = self.inventory.record_certificate_with_key(bundle, source=source, org_id=org_id, dept_id=dept_id)
        self.inventory.audit("cert record", "ok", details={"certificate_id": cert_id, "fingerprint": bundle.fingerprint,
                                                           "subject": bundle.subject, "source": source})
        return cert_id

    def load_bundle(self, cert_id: int) -> CertificateBundle:
        """The certificate, key and chain of a certificate whose key the inventory holds."""
        return self.inventory.load_bundle(cert_id)

    def certificate_pem(self, cert_id: int) -> bytes:
        """The PEM of a certificate the inventory holds."""
        row = self.inventory.db.execute("SELECT pem FROM certificates WHERE id = ?", (cert_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no certificate with ID {cert_id}")
        return str(row["pem"]).encode()

    def certificate_has_key(self, cert_id: int) -> bool:
        """Whether the inventory holds the certificate's private key (encrypted)."""
        return self.inventory.has_key(cert_id)

    def node_keys(self, ref: str) -> set[tuple[str, str | None]]:
        """(node key, fingerprint) of every node the last discovery of ``ref`` found."""
        return self.inventory.node_keys(self.inventory.get_endpoint(ref).id)

    def certificate(self, ref: int | str) -> Any:
        """A certificate record by ID or SHA-256 fingerprint."""
        return self.inventory.certificate(ref)

    def serving_nodes(self, fingerprint: str) -> list[dict[str, Any]]:
        """Every node whose last discovery saw this certificate."""
        return self.inventory.serving_nodes(fingerprint)

    @staticmethod
    def certificate_keys() -> tuple[str, ...]:
        """The keys of a certificate record's JSON (``to_json``), in order."""
        import dataclasses

        from .inventory import CertificateRecord

        return tuple(f.name for f in dataclasses.fields(CertificateRecord))

    def unrecorded_serving_nodes(self) -> list[dict[str, Any]]:
        """Nodes serving a certificate the inventory has no record of (only its fingerprint,
        subject and end date, as discovery saw them)."""
        return self.inventory.unrecorded_serving_nodes()

    def serving_nodes_of(self, fingerprints: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """:meth:`serving_nodes` of several certificates at once, by fingerprint."""
        return self.inventory.serving_nodes_of(fingerprints)

    def serving_node_names_of(self, fingerprints: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Each fingerprint's serving nodes as endpoint, type, name and port only (``cert expiring``)."""
        return self.inventory.serving_node_names_of(fingerprints)

    def assign_certificate(self, cert_id: int, org: str, department: str | None = None) -> None:
        self.inventory.assign_certificate(cert_id, org, department)
        self.inventory.audit("cert assign", "ok", details={"certificate_id": cert_id, "org": org,
                                                           "department": department})

    # -- audit ------------------------------------------------------------------------------------
    def audit_log(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Audit entries, oldest first (the last ``limit`` when given)."""
        return self.inventory.audit_log(_check_limit(limit))

    # -- fleet jobs -------------------------------------------------------------------------------
    def job(self, job_id: int) -> Any:
        """A fleet job with its items (see :mod:`tlsgate.jobs`; a dead runner's job reads interrupted)."""
        from . import jobs

        return jobs.get(self.inventory, job_id)

    def jobs(self, limit: int | None = None) -> list[Any]:
        from . import jobs

        return jobs.list_jobs(self.inventory, _check_limit(limit))

    # -- credential stores ------------------------------------------------------------------------
    def stores(self) -> list[dict[str, Any]]:
        """Credential stores (secrets redacted)."""
        return self.inventory.stores()

    def store(self, name: str) -> dict[str, Any]:
        """One credential store as :meth:`stores` lists it."""
        for entry in self.stores():
            if entry["name"] == name:
                return entry
        raise NotFoundError(f"no credential store named {name!r} (see: tlsgate store list)", option="--store")

    def add_store(self, kind: str, name: str, options: dict[str, Any]) -> None:
        stype = self.registry.credential_stores.get(kind)
        if stype is None:
            known = ", ".join(sorted(self.registry.credential_stores)) or "none"
            raise ValidationError(f"unknown credential store kind {kind!r} (installed: {known})")
        check_name(name, "--name", 1, 64)
        for key, value in options.items():
            if url_without_userinfo(value) != value:
                raise ValidationError("must not hold a user name or password (user:password@); give "
                                      "credentials with the store's own options", option=f"--{key}")
        opts = build_options(stype.options, options)
        problems = stype.validate(opts) if stype.validate is not None else []
        if problems:
            raise ValidationError(problems[0].message, option=problems[0].option)
        self.inventory.add_store(name, kind, options_to_dict(opts))
        self.inventory.audit("store add", "ok", details={"store": name, "kind": kind})

    def remove_store(self, name: str) -> None:
        """Remove a credential store (and, for a local store, its secrets); refused while
        endpoints still use it (named); audited."""
        kind, _ = self.inventory.store(name)
        users = sorted(e.name for e in self.inventory.endpoints() if e.connection.get("store") == name)
        if users:
            raise OperationError(
                f"credential store {name!r} is used by endpoint(s) {', '.join(users)}; move them first "
                f"(tlsgate tls set ENDPOINT --store OTHER --store_cred_id ID, or --password -)")
        self.inventory.remove_store(name)
        self.inventory.audit("store remove", "ok", details={"store": name, "kind": kind})

    def test_store(self, name: str) -> str:
        kind, raw = self.inventory.store(name)
        stype = self.registry.credential_store(kind)
        client = stype.factory(name, stype.options(**raw) if stype.options else None)
        return str(client.test())

    def put_store_secret(self, store: str, cred_id: str, values: dict[str, Any]) -> None:
        kind, _ = self.inventory.store(store)
        if not self.registry.credential_store(kind).writable:
            raise ValidationError(f"store {store!r} is a {kind} store; put secrets there with its own tools",
                                  option="--store")
        _check_text(cred_id, "--store_cred_id", 1, 1024)
        clean = {k: (v.reveal() if isinstance(v, Secret) else v) for k, v in values.items() if v is not None}
        for key in ("password", "ssh_key_password"):  # the rule of tls add: an empty one is never a login
            if key in clean and not SECRET_RULE[0] <= len(clean[key]) <= SECRET_RULE[1]:
                raise ValidationError(f"must be between {SECRET_RULE[0]} and {SECRET_RULE[1]} characters",
                                      option=f"--{key}")
        if not clean:
            raise ValidationError("give at least one of --user, --password, --ssh_key_path, --ssh_key_password")
        self.inventory.put_store_secret(store, cred_id, clean)
        self.inventory.audit("store put", "ok", details={"store": store, "cred_id": cred_id, "keys": sorted(clean)})


def _throwaway_bundle(names: Sequence[str]) -> CertificateBundle:
    """A self-signed certificate for ``names`` (EC P-256, one hour), only ever used in a dry run."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from .bundle import CertificateBundle

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return CertificateBundle.from_pem(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def _mtimes(conn: Connection, paths: Sequence[str]) -> dict[str, float]:
    out = {}
    for path in paths:
        try:
            st = conn.stat(path)
        except Exception:  # noqa: BLE001 - a file we cannot stat is simply not recorded
            st = None
        if st is not None:
            out[path] = st.mtime
    return out


def _check_served_names(result: InstallResult, bundle: CertificateBundle, after: Sequence[Node], *,
                        aliases: bool = True) -> InstallResult:
    """Verification checks names as well as fingerprints: each node now serving the leaf must
    answer only for names the leaf covers (only possible with ``--allow-name-mismatch``)."""
    # network nodes only: a keystore entry's name is its alias, not a host name a client asks for
    serving = [n for n in after if n.fingerprint == bundle.fingerprint and n.port]
    missing = uncovered_names(bundle, [name for n in serving for name in node_names(n, aliases=aliases)])
    if not missing:
        return result
    return attrs.evolve(result, verified=False, messages=(
        *result.messages, f"not verified: the certificate does not cover {', '.join(missing)} (--allow-name-mismatch)"))


def _note_others_changed(result: InstallResult, bundle: CertificateBundle, before: Sequence[Node],
                         after: Sequence[Node]) -> InstallResult:
    """Say which nodes the install did not change serve another certificate (or none) now than the
    discovery just before it: a reload applies every file as it is, and drivers handshake only
    the nodes they changed. Both discoveries handshake every node, so this costs nothing more."""
    seen = {n.key: n for n in before if n.port}
    changed: list[str] = []
    for node in after:
        old = seen.get(node.key)
        if old is None or node.name in result.nodes or node.fingerprint == bundle.fingerprint:
            continue
        gone = "not reachable" in (node.state or "") and "not reachable" not in (old.state or "")
        if gone or (old.fingerprint and node.fingerprint and node.fingerprint != old.fingerprint
                    and "not reachable" not in (node.state or "")):
            what = "no longer answers" if gone else f"serves {node.fingerprint[:16]}... (was {old.fingerprint[:16]}...)"
            changed.append(f"{node.name} ({node.ip or '*'}:{node.port}) {what}")
    if not changed:
        return result
    more = f"; and {len(changed) - 5} more (tlsgate tls nodes)" if len(changed) > 5 else ""
    return attrs.evolve(result, messages=(
        *result.messages, "nodes this install did not change serve something else since it: "
        + "; ".join(changed[:5]) + more))


def _job(job_id: int | None) -> dict[str, Any]:
    return {"job_id": job_id} if job_id is not None else {}


def _select_nodes(endpoint: Endpoint, current: Sequence[Node], wanted: Sequence[str]) -> list[Node]:
    if not wanted:
        return []
    from .inventory import storable

    chosen: list[Node] = []
    for want in wanted:
        # a name read in another encoding is given as tls nodes shows it (each byte as \xNN)
        hits = [n for n in current if want in (n.name, n.locator, *n.alias) or want == f"{n.name}:{n.port}"
                or want in (storable(n.name), storable(n.locator), f"{storable(n.name)}:{n.port}")]
        if not hits:
            # host names and Java keystore aliases are case-insensitive (keytool stores "My App"
            # as "my app"): a spelling that names exactly one node whatever the case is that node
            folded = want.casefold()
            hits = [n for n in current if folded in {x.casefold() for x in (n.name or "", *n.alias)}
                    or folded == f"{n.name}:{n.port}".casefold()]
            if len({n.name for n in hits}) > 1:
                raise ValidationError(f"--node {want!r} matches {', '.join(sorted({storable(n.name) or '' for n in hits}))} "
                                      f"on endpoint {endpoint.name!r} but none exactly; give the name as tls nodes "
                                      "shows it", option="--node")
        if not hits:
            known = ", ".join(sorted({storable(n.name) or "" for n in current})) or "none (run tls discover)"
            raise ValidationError(f"no node {want!r} on endpoint {endpoint.name!r} (nodes: {known})", option="--node")
        chosen += [n for n in hits if n not in chosen]
    return chosen


def _check_text(value: str | None, option: str, lo: int, hi: int) -> str:
    return check_text(value, option, lo, hi)


def _check_port(port: int | str | None, default: int | None) -> int:
    if port is None:
        if default is None:
            raise ValidationError("is required for this connection type", option="--port")
        return default
    try:
        value = int(str(port).strip())
        if str(port).strip() != str(value) and not str(port).strip().lstrip("+").isdigit():
            raise ValueError
    except ValueError:
        raise ValidationError("must be an integer between 1 and 65535", option="--port") from None
    if not 1 <= value <= 65535:
        raise ValidationError("must be an integer between 1 and 65535", option="--port")
    return value


def _check_limit(limit: int | None) -> int | None:
    """``--limit N`` of a listing: None (everything) or at least 1 (0 and -1 listed everything)."""
    if limit is not None and limit < 1:
        raise ValidationError("must be at least 1", option="--limit")
    from .inventory import MAX_ID

    return None if limit is not None and limit > MAX_ID else limit  # more than there can be: everything


def _secret(value: Any) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value
    return Secret(str(value))
