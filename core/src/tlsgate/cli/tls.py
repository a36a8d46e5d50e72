"""Endpoint commands: list, show, remove, delegate, discover, nodes, install, restart, test,
trust, run-script. (``tls add <type>`` is built from the declared options in :mod:`.app`.)"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ValidationError
from ..models import Node
from ..registry import get_registry
from .common import CONTEXT, JsonOpt, Ref, gateway, read_pem_inputs
from .output import emit_json, say, table, warn


def register(tls: typer.Typer) -> None:
    @tls.command("list", context_settings=CONTEXT)
    def tls_list(json: JsonOpt = False) -> None:
        """List endpoints."""
        gw = gateway()
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
        gw = gateway()
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
        gw = gateway()
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
        gw = gateway()
        ep = gw.delegate(endpoint, org_name, department)
        if json:
            emit_json(gw.describe(gw.inventory.get_endpoint(ep.instance_id)))
        else:
            say(f"Endpoint {ep.name!r} delegated to {org_name}" + (f" / {department}." if department else "."))

    @tls.command("discover", context_settings=CONTEXT)
    def tls_discover(endpoint: Ref, json: JsonOpt = False) -> None:
        """Discover the endpoint's nodes and the certificate each serves."""
        gw = gateway()
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
        views = gateway().nodes(endpoint)
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
        apply_pending: Annotated[bool, typer.Option(
            "--apply_pending", "--apply-pending",
            help="Go ahead although the running server has not loaded some of its configuration files "
                 "(the reload/restart applies them too).")] = False,
        allow_name_mismatch: Annotated[bool, typer.Option(
            "--allow_name_mismatch", "--allow-name-mismatch",
            help="Install on nodes whose names the certificate does not all cover.")] = False,
        json: JsonOpt = False,
    ) -> None:
        """Install a certificate, key and chain: a transaction (backup, test, reload, verify, restore on failure)."""
        bundle = read_pem_inputs(cert_file, key_file, chain_file, pfx, pfx_password, key_password)
        gw = gateway()
        outcome = gw.install(endpoint, bundle, nodes=node or [], alias=alias, dry_run=dry_run,
                             apply_pending=apply_pending, allow_name_mismatch=allow_name_mismatch)
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
            + ("; verified by TLS handshake" if r.verified else ""))
        for name, addresses in _names_with_addresses(r.nodes, outcome.nodes_after, bundle.fingerprint):
            say(f"  {name}" + (f"  ({', '.join(addresses)})" if addresses else ""))
        for msg in r.messages:
            say(f"  {msg}")
        etype = get_registry().endpoint_types.get(gw.endpoint(endpoint).type)
        if etype is not None and etype.needs_restart and not r.messages:
            say(f"  {etype.name} needs a restart for the new certificate to take effect: tlsgate tls restart {endpoint}")

    @tls.command("restart", context_settings=CONTEXT)
    def tls_restart(endpoint: Ref, json: JsonOpt = False) -> None:
        """Restart / reload the endpoint so that installed certificates take effect."""
        result = gateway().restart(endpoint)
        if json:
            emit_json({"endpoint": endpoint, "restarted": result.restarted, "message": result.message})
        else:
            say(result.message or ("Restarted." if result.restarted else "Nothing to restart."))

    @tls.command("test", context_settings=CONTEXT)
    def tls_test(endpoint: Ref, json: JsonOpt = False) -> None:
        """Connect, authenticate, and check that the endpoint has what its type needs."""
        report = gateway().test(endpoint)
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
        gw = gateway()
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
        result = gateway().run_script(endpoint, script, args or [])
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


def _names_with_addresses(names: Sequence[str], after: Sequence[Node], fp: str) -> list[tuple[str, list[str]]]:
    """One entry per changed name (a block on IPv4 and IPv6 is one name), with its listen addresses."""
    out = []
    for name in dict.fromkeys(names):
        addresses = [f"[{n.ip}]:{n.port}" if n.ip and ":" in n.ip else f"{n.ip or '*'}:{n.port}"
                     for n in after if n.name == name and n.fingerprint == fp and n.port is not None]
        out.append((name, list(dict.fromkeys(addresses))))
    return out


def _print_nodes(views: list) -> None:  # type: ignore[type-arg]
    table(["Name", "Alias", "Protocol", "IP Address", "Port", "SSL", "Vendor", "State"],
          [[v.node.name, ", ".join(v.node.alias), v.node.protocol.upper() if v.node.protocol else "", v.node.ip,
            v.node.port, v.ssl or "", v.node.vendor, v.node.state] for v in views])
