"""The static commands: tls list/show/remove/delegate/discover/nodes/install/restart/test/trust,
org, cert, store, plugins, log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ValidationError
from ..registry import get_registry
from .app import CONTEXT, JsonOpt, _gateway, read_pem_inputs, read_secret
from .output import emit_json, say, table, warn

Ref = Annotated[str, typer.Argument(help="Endpoint name or instance ID.", metavar="ENDPOINT")]


def register(app: typer.Typer, tls: typer.Typer, org: typer.Typer, cert: typer.Typer, store: typer.Typer,
             plugins: typer.Typer) -> None:
    # -- tls ---------------------------------------------------------------------------------------
    @tls.command("list", context_settings=CONTEXT)
    def tls_list(json: JsonOpt = False) -> None:
        """List endpoints."""
        gw = _gateway()
        rows = [gw.describe(s) for s in gw.endpoints()]
        if json:
            emit_json(rows)
            return
        table(["Name", "Type", "Connection", "Host", "Organization", "Department", "Instance ID"],
              [[r["name"], r["type"], r["connection"]["type"], r["connection"].get("host", ""),
                r["organization"], r["department"], r["instance_id"]] for r in rows])

    @tls.command("show", context_settings=CONTEXT)
    def tls_show(endpoint: Ref, json: JsonOpt = False) -> None:
        """Show one endpoint (secrets redacted)."""
        gw = _gateway()
        data = gw.describe(gw.inventory.get_endpoint(endpoint))
        if json:
            emit_json(data)
            return
        for key in ("name", "instance_id", "type", "organization", "department"):
            say(f"{key:<18}{data[key] if data[key] is not None else '-'}")
        for key, value in data["connection"].items():
            say(f"{'connection.' + key:<18}{value}")
        if data["insecure"]:
            say(f"{'tls verification':<18}DISABLED (insecure connection type)")
        for key, value in data["options"].items():
            say(f"{key:<18}{value}")

    @tls.command("remove", context_settings=CONTEXT)
    def tls_remove(endpoint: Ref, json: JsonOpt = False) -> None:
        """Remove an endpoint from the inventory (the endpoint itself is not touched)."""
        gw = _gateway()
        stored = gw.remove_endpoint(endpoint)
        if json:
            emit_json({"removed": stored.name, "instance_id": stored.id})
        else:
            say(f"Endpoint {stored.name!r} removed.")

    @tls.command("delegate", context_settings=CONTEXT)
    def tls_delegate(
        endpoint: Ref,
        org_name: Annotated[Optional[str], typer.Option("--org", help="Organization.")] = None,  # noqa: UP045
        department: Annotated[Optional[str], typer.Option("--department", help="Department.")] = None,  # noqa: UP045
        json: JsonOpt = False,
    ) -> None:
        """Delegate an endpoint to an organization (and department)."""
        if not org_name:
            raise ValidationError("is required", option="--org")
        gw = _gateway()
        ep = gw.delegate(endpoint, org_name, department)
        if json:
            emit_json(gw.describe(gw.inventory.get_endpoint(ep.instance_id)))
        else:
            say(f"Endpoint {ep.name!r} delegated to {org_name}" + (f" / {department}." if department else "."))

    @tls.command("discover", context_settings=CONTEXT)
    def tls_discover(endpoint: Ref, json: JsonOpt = False) -> None:
        """Discover the endpoint's nodes and the certificate each serves."""
        gw = _gateway()
        gw.discover(endpoint)
        views = gw.nodes(endpoint)
        if json:
            emit_json([v.to_json() for v in views])
        else:
            say(f"Discovered {len(views)} node(s) on {endpoint!r}.")
            _print_nodes(views)

    @tls.command("nodes", context_settings=CONTEXT)
    def tls_nodes(endpoint: Ref, json: JsonOpt = False) -> None:
        """Show the nodes found by the last discovery."""
        views = _gateway().nodes(endpoint)
        if json:
            emit_json([v.to_json() for v in views])
        else:
            _print_nodes(views)

    @tls.command("install", context_settings=CONTEXT)
    def tls_install(
        endpoint: Ref,
        cert_file: Annotated[Optional[Path], typer.Option("--cert", help="Certificate (PEM or DER); may hold the chain.")] = None,  # noqa: UP045
        key_file: Annotated[Optional[Path], typer.Option("--key", help="Private key (PEM or DER).")] = None,  # noqa: UP045
        chain_file: Annotated[Optional[Path], typer.Option("--chain", help="Intermediate certificates (PEM).")] = None,  # noqa: UP045
        key_password: Annotated[Optional[str], typer.Option("--key_password", help="Password of an encrypted --key ('-': stdin).")] = None,  # noqa: UP045
        pfx: Annotated[Optional[Path], typer.Option("--pfx", help="PKCS#12 file with key, certificate and chain.")] = None,  # noqa: UP045
        pfx_password: Annotated[Optional[str], typer.Option("--pfx_password", help="Password of --pfx ('-': stdin).")] = None,  # noqa: UP045
        node: Annotated[Optional[list[str]], typer.Option("--node", help="Node to install on (repeatable). Default: the nodes the certificate covers / a new entry.")] = None,  # noqa: UP045
        alias: Annotated[Optional[str], typer.Option("--alias", help="Keystore entry alias (default: from the certificate's CN).")] = None,  # noqa: UP045
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
        json: JsonOpt = False,
    ) -> None:
        """Install a certificate, key and chain: a transaction (backup, test, reload, verify, restore on failure)."""
        bundle = read_pem_inputs(cert_file, key_file, chain_file, pfx, pfx_password, key_password)
        gw = _gateway()
        outcome = gw.install(endpoint, bundle, nodes=node or [], alias=alias, dry_run=dry_run)
        if json:
            emit_json(outcome.to_json())
            return
        r = outcome.result
        if dry_run:
            say(f"Plan for {outcome.endpoint!r} (dry run, nothing changed):")
            for step in r.plan:
                say(f"  {step}")
            return
        say(f"Installed certificate {outcome.certificate_id} ({bundle.subject}) on {outcome.endpoint!r}"
            + (f": {', '.join(r.nodes)}" if r.nodes else "") + ("; verified by TLS handshake" if r.verified else ""))
        for msg in r.messages:
            say(f"  {msg}")
        etype = get_registry().endpoint_types.get(gw.endpoint(endpoint).type)
        if etype is not None and etype.needs_restart and not r.messages:
            say(f"  {etype.name} needs a restart for the new certificate to take effect: tlsgate tls restart {endpoint}")

    @tls.command("restart", context_settings=CONTEXT)
    def tls_restart(endpoint: Ref, json: JsonOpt = False) -> None:
        """Restart / reload the endpoint so that installed certificates take effect."""
        result = _gateway().restart(endpoint)
        if json:
            emit_json({"endpoint": endpoint, "restarted": result.restarted, "message": result.message})
        else:
            say(result.message or ("Restarted." if result.restarted else "Nothing to restart."))

    @tls.command("test", context_settings=CONTEXT)
    def tls_test(endpoint: Ref, json: JsonOpt = False) -> None:
        """Connect, authenticate, and check that the endpoint has what its type needs."""
        report = _gateway().test(endpoint)
        if json:
            emit_json(report.to_json())
        else:
            say(f"{report.endpoint}: {report.connection_type}, remote platform {report.platform}")
            for check, ok, detail in report.checks:
                say(f"  [{'ok' if ok else 'FAIL'}] {check}: {detail}")
        if not report.ok:
            raise typer.Exit(1)

    @tls.command("trust", context_settings=CONTEXT)
    def tls_trust(
        endpoint: Ref,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Trust without asking.")] = False,
        json: JsonOpt = False,
    ) -> None:
        """Show the SSH host key an endpoint presents and record it as trusted."""
        gw = _gateway()
        key_type, fingerprint, key, host, port = gw.host_key(endpoint)
        if not json:
            say(f"{host}:{port} presents a {key_type} key with fingerprint {fingerprint}")
        if not yes and not typer.confirm("Trust this host key?", default=False):
            raise typer.Exit(1)
        gw.trust_host_key(endpoint, key)
        if json:
            emit_json({"endpoint": endpoint, "host": host, "port": port, "key_type": key_type,
                       "fingerprint": fingerprint, "trusted": True})
        else:
            say(f"Trusted {fingerprint} for {host}:{port}.")

    @tls.command("run-script", context_settings=CONTEXT)
    def tls_run_script(
        endpoint: Ref,
        script: Annotated[str, typer.Argument(help="Path of the script on the endpoint's host.")],
        args: Annotated[Optional[list[str]], typer.Argument(help="Arguments (passed as argv).")] = None,  # noqa: UP045
        json: JsonOpt = False,
    ) -> None:
        """Run a custom script on the endpoint's host."""
        result = _gateway().run_script(endpoint, script, args or [])
        if json:
            emit_json({"script": result.script, "args": list(result.args), "exit_code": result.exit_code,
                       "stdout": result.stdout, "stderr": result.stderr})
        else:
            if result.stdout:
                say(result.stdout.rstrip())
            if result.stderr:
                warn(result.stderr.rstrip())
        if not result.ok:
            raise typer.Exit(1)

    # -- org ---------------------------------------------------------------------------------------
    @org.command("add", context_settings=CONTEXT)
    def org_add(name: Annotated[str, typer.Argument(help="Organization name.")], json: JsonOpt = False) -> None:
        """Add an organization."""
        _gateway().add_org(name)
        emit_json({"organization": name}) if json else say(f"Organization {name!r} added.")

    @org.command("add-department", context_settings=CONTEXT)
    def org_add_department(
        org_name: Annotated[str, typer.Argument(help="Organization.", metavar="ORG")],
        name: Annotated[str, typer.Argument(help="Department name.")],
        json: JsonOpt = False,
    ) -> None:
        """Add a department to an organization."""
        _gateway().add_department(org_name, name)
        emit_json({"organization": org_name, "department": name}) if json else say(
            f"Department {name!r} added to {org_name!r}.")

    @org.command("list", context_settings=CONTEXT)
    def org_list(json: JsonOpt = False) -> None:
        """List organizations and their departments."""
        orgs = _gateway().inventory.orgs()
        if json:
            emit_json(orgs)
        else:
            table(["Organization", "Departments"], [[o["name"], ", ".join(o["departments"])] for o in orgs])

    # -- cert --------------------------------------------------------------------------------------
    @cert.command("list", context_settings=CONTEXT)
    def cert_list(json: JsonOpt = False) -> None:
        """List certificates the inventory knows (installed and discovered)."""
        records = _gateway().certificates()
        if json:
            emit_json([r.to_json() for r in records])
            return
        table(["ID", "Subject", "Not after", "Organization", "Department", "Source", "SHA-256"],
              [[r.id, r.subject, r.not_after, r.organization or "External", r.department, r.source,
                r.fingerprint[:16] + "…"] for r in records])

    @cert.command("assign", context_settings=CONTEXT)
    def cert_assign(
        cert_id: Annotated[int, typer.Argument(help="Certificate ID.", metavar="ID")],
        org_name: Annotated[Optional[str], typer.Option("--org", help="Organization.")] = None,  # noqa: UP045
        department: Annotated[Optional[str], typer.Option("--department", help="Department.")] = None,  # noqa: UP045
        json: JsonOpt = False,
    ) -> None:
        """Assign a certificate to an organization (and department)."""
        if not org_name:
            raise ValidationError("is required", option="--org")
        _gateway().assign_certificate(cert_id, org_name, department)
        emit_json({"certificate_id": cert_id, "organization": org_name, "department": department}) if json else say(
            f"Certificate {cert_id} assigned to {org_name}" + (f" / {department}." if department else "."))

    # -- store -------------------------------------------------------------------------------------
    @store.command("list", context_settings=CONTEXT)
    def store_list(json: JsonOpt = False) -> None:
        """List credential stores (secrets redacted)."""
        stores = _gateway().inventory.stores()
        if json:
            emit_json(stores)
        else:
            table(["Name", "Kind", "Options"],
                  [[s["name"], s["kind"], ", ".join(f"{k}={v}" for k, v in s["options"].items() if v is not None)]
                   for s in stores])

    @store.command("test", context_settings=CONTEXT)
    def store_test(name: Annotated[str, typer.Argument(help="Store name.")], json: JsonOpt = False) -> None:
        """Connect to a credential store and authenticate."""
        message = _gateway().test_store(name)
        emit_json({"store": name, "ok": True, "message": message}) if json else say(message)

    @store.command("remove", context_settings=CONTEXT)
    def store_remove(name: Annotated[str, typer.Argument(help="Store name.")], json: JsonOpt = False) -> None:
        """Remove a credential store (and, for a local store, its secrets)."""
        _gateway().inventory.remove_store(name)
        emit_json({"removed": name}) if json else say(f"Credential store {name!r} removed.")

    @store.command("put", context_settings=CONTEXT)
    def store_put(
        name: Annotated[str, typer.Argument(help="A local store's name.")],
        cred_id: Annotated[Optional[str], typer.Option("--store_cred_id", help="Entry ID.")] = None,  # noqa: UP045
        user: Annotated[Optional[str], typer.Option("--user", help="User name.")] = None,  # noqa: UP045
        password: Annotated[Optional[str], typer.Option("--password", help="Password ('-': stdin).")] = None,  # noqa: UP045
        ssh_key_path: Annotated[Optional[Path], typer.Option("--ssh_key_path", help="Private key file to store.")] = None,  # noqa: UP045
        ssh_key_password: Annotated[Optional[str], typer.Option("--ssh_key_password", help="Key passphrase ('-': stdin).")] = None,  # noqa: UP045
        json: JsonOpt = False,
    ) -> None:
        """Put credentials into a local credential store (encrypted with the master key)."""
        if not cred_id:
            raise ValidationError("is required", option="--store_cred_id")
        ssh_key = None
        if ssh_key_path is not None:
            try:
                ssh_key = ssh_key_path.read_text()
            except OSError as exc:
                raise ValidationError(f"{ssh_key_path}: {exc.strerror}", option="--ssh_key_path") from None
        _gateway().put_store_secret(name, cred_id, {
            "user": user, "password": read_secret(password, "--password"), "ssh_key": ssh_key,
            "ssh_key_password": read_secret(ssh_key_password, "--ssh_key_password")})
        emit_json({"store": name, "cred_id": cred_id}) if json else say(f"Stored credentials {cred_id!r} in {name!r}.")

    # -- plugins, log ------------------------------------------------------------------------------
    @plugins.command("list", context_settings=CONTEXT)
    def plugins_list(json: JsonOpt = False) -> None:
        """List installed plugins with their distribution, version and what they provide."""
        infos = sorted(get_registry().plugins.values(), key=lambda p: p.name)
        if json:
            emit_json([p.to_json() for p in infos])
            return
        table(["Plugin", "Distribution", "Version", "Endpoint types", "Connection types", "Credential stores"],
              [[p.name, p.distribution, p.version, ", ".join(p.endpoint_types), ", ".join(p.connection_types),
                ", ".join(p.credential_stores)] for p in infos])
        if not get_registry().endpoint_types:
            warn("no endpoint types are installed: install a plugin such as tlsgate-keystores")

    @app.command("log", context_settings=CONTEXT)
    def log(
        limit: Annotated[Optional[int], typer.Option("--limit", help="Only the last N entries.")] = None,  # noqa: UP045
        json: JsonOpt = False,
    ) -> None:
        """The audit log: who did what, when, to which endpoint, with what result."""
        entries = _gateway().inventory.audit_log(limit)
        if json:
            emit_json(entries)
            return
        table(["Time", "Actor", "Action", "Endpoint", "Result", "Before", "After"],
              [[e["time"], e["actor"], e["action"], e["endpoint"], e["result"], (e["before"] or "")[:12],
                (e["after"] or "")[:12]] for e in entries])


def _print_nodes(views: list) -> None:  # type: ignore[type-arg]
    table(["Name", "Alias", "Protocol", "IP Address", "Port", "SSL", "Vendor", "State"],
          [[v.node.name, ", ".join(v.node.alias), v.node.protocol.upper() if v.node.protocol else "", v.node.ip,
            v.node.port, v.ssl or "", v.node.vendor, v.node.state] for v in views])
