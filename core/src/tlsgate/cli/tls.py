"""Endpoint commands: list, show, remove, delegate, discover, nodes, install, set, restart, test,
trust, run-script. (``tls add <type>`` is built from the declared options in :mod:`.app`.)"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..errors import OperationError, ValidationError
from .common import (
    CONTEXT,
    AllowNameMismatchOpt,
    ApplyPendingOpt,
    CertFileOpt,
    ChainFileOpt,
    JsonOpt,
    KeyFileOpt,
    KeyPasswordOpt,
    PfxOpt,
    PfxPasswordOpt,
    Ref,
    gateway,
    parse_set_args,
    read_pem_inputs,
)
from .job import (
    AllSel,
    DeptSel,
    EndpointSel,
    NoWaitOpt,
    OrgSel,
    ParallelOpt,
    TypeSel,
    check_no_wait,
    run_and_report,
    selection,
)
from .output import clean, emit_json, emit_json_texts, error_line, say, say_lines, table, warn

if TYPE_CHECKING:  # the models (attrs) load with the commands that use them, not with the group
    from ..api import Gateway
    from ..models import Node

#: A selector command's action on one named endpoint: (gateway, ENDPOINT, --json).
OneEndpoint = Callable[["Gateway", str, bool], None]

OptRef = Annotated[Optional[str], typer.Argument(  # noqa: UP045
    help="One endpoint (name or instance ID); or use the selectors.", metavar="[ENDPOINT]")]


def register(tls: typer.Typer) -> None:
    @tls.command("list", context_settings=CONTEXT)
    def tls_list(json: JsonOpt = False) -> None:
        """List endpoints."""
        from ..reads import endpoint_views  # not tlsgate.api: start-up time (see tlsgate.reads)

        rows = endpoint_views()
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
        data = gw.describe(endpoint)
        if json:
            emit_json(data)
            return
        rows = [(key, data.get(key)) for key in ("name", "instance_id", "type", "organization", "department", "zone")
                if key in data]
        rows += [("connection." + key, value) for key, value in data["connection"].items()]
        if data["insecure"]:
            rows.append(("tls verification", "DISABLED (insecure connection type)"))
        rows += list(data["options"].items())
        width = max(len(key) for key, _ in rows) + 2
        for key, value in rows:  # values as they are typed: '-' for unset, true/false, lists joined
            shown = ("-" if value is None else str(value).lower() if isinstance(value, bool)
                     else ", ".join(map(str, value)) if isinstance(value, list) else value)
            say(f"{key:<{width}}{shown}")

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
            emit_json(gw.describe(ep))
        else:
            say(f"Endpoint {ep.name!r} delegated to {org_name}" + (f" / {department}." if department else "."))

    @selector_command(tls, "discover")
    def tls_discover(gw: Gateway, endpoint: str, json: bool) -> None:
        """Discover the nodes of one endpoint (ENDPOINT) or of the selected ones (a job), and the
        certificate each serves; prints a summary (the table: tls nodes)."""
        import gc

        # this process ends with the command: no cyclic collection from here on (after a
        # pause, the first one scans every object the discovery left: 0.2 s at 20,000 nodes)
        gc.disable()
        stored = gw.endpoint(endpoint)
        before = gw.node_keys(endpoint)
        nodes = gw.discover(endpoint)
        if json:
            emit_json([v.to_json() for v in gw.nodes(endpoint)])
            return
        from ..runs import discovery_summary

        sm = discovery_summary(nodes, before)
        say(f"Discovered {sm['nodes']} node(s) on {clean(stored.name)!r}: {sm['tls']} with a certificate, "
            f"{sm['changed']} changed since the last discovery, {sm['unreachable']} unreachable. "
            f"See them with: tlsgate tls nodes {clean(stored.name)}")

    @tls.command("nodes", context_settings=CONTEXT)
    def tls_nodes(
        endpoint: OptRef = None,
        endpoints: EndpointSel = None,
        types: TypeSel = None,
        org_name: OrgSel = None,
        department: DeptSel = None,
        all_: AllSel = False,
        json: JsonOpt = False,
    ) -> None:
        """Show the nodes found by the last discovery of one endpoint (ENDPOINT), or of the
        selected ones (one table with an Endpoint column; in --json each node names its endpoint)."""
        gw = gateway()
        if endpoint and not (endpoints or types or org_name or all_):
            views = gw.nodes(endpoint)
            if json:
                emit_json([v.to_json() for v in views])
            else:
                _print_nodes(views)
            return
        from .. import fleet

        chosen = fleet.select(gw, selection(endpoints, types, org_name, department, all_, positional=endpoint))
        ids = None if all_ else [s.id for s in chosen]
        if json:
            emit_json_texts(gw.node_rows_json(ids))
        else:
            rows = gw.node_rows(ids)
            table(["Endpoint", "Name", "Alias", "Protocol", "IP Address", "Port", "SSL", "Vendor", "State"],
                  [[r["endpoint"], r["name"], ", ".join(r["alias"]), (r["protocol"] or "").upper(), r["ip"],
                    r["port"], r["ssl"] or "", r["vendor"], r["state"]] for r in rows])

    @tls.command("install", context_settings=CONTEXT)
    def tls_install(
        ctx: typer.Context,
        endpoint: Ref,
        cert_file: CertFileOpt = None,
        key_file: KeyFileOpt = None,
        chain_file: ChainFileOpt = None,
        key_password: KeyPasswordOpt = None,
        pfx: PfxOpt = None,
        pfx_password: PfxPasswordOpt = None,
        node: Annotated[Optional[list[str]], typer.Option("--node", help="Node to install on (repeatable). Default: the nodes the certificate covers / a new entry.")] = None,  # noqa: UP045
        alias: Annotated[Optional[str], typer.Option("--alias", help="Keystore entry alias (default: from the certificate's CN).")] = None,  # noqa: UP045
        dry_run: Annotated[bool, typer.Option("--dry_run", "--dry-run", help="Print the plan; change nothing.")] = False,
        force: Annotated[bool, typer.Option("--force", help="Install an expired or not-yet-valid certificate on purpose (audited).")] = False,
        apply_pending: ApplyPendingOpt = False,
        allow_name_mismatch: AllowNameMismatchOpt = False,
        json: JsonOpt = False,
    ) -> None:
        """Install a certificate, key and chain: a transaction (backup, test, reload, verify, restore on failure)."""
        from ..api import InstalledWithFailure

        bundle = read_pem_inputs(ctx, cert_file, key_file, chain_file, pfx, pfx_password, key_password)
        gw = gateway()
        failure: InstalledWithFailure | None = None
        try:
            outcome = gw.install(endpoint, bundle, nodes=node or [], alias=alias, dry_run=dry_run, force=force,
                                 apply_pending=apply_pending, allow_name_mismatch=allow_name_mismatch)
        except InstalledWithFailure as exc:
            outcome, failure = exc.outcome, exc
        if json:
            emit_json({**outcome.to_json(), **({"error": str(failure)} if failure else {})})
            if failure:
                raise typer.Exit(1)
            return
        r = outcome.result
        for text in outcome.warnings:
            warn(text)
        if dry_run:
            say(f"Plan for {outcome.endpoint!r} (dry run, nothing changed):")
            for step in r.plan:
                say(f"  {step}")
            return
        say(f"Installed certificate {outcome.certificate_id} ({bundle.subject}) on {outcome.endpoint!r}"
            + (f"; verified by {r.verified_by}" if r.verified else ""))
        for name, addresses in _names_with_addresses(r.nodes, outcome.nodes_after, bundle.fingerprint):
            say(f"  {clean(name)}" + (f"  ({clean(', '.join(addresses))})" if addresses else ""))
        for msg in r.messages:
            say(f"  {msg}")
        if failure is not None:
            warn(str(failure))
            raise typer.Exit(1)
        etype = gw.registry.endpoint_types.get(gw.endpoint(endpoint).type)
        if etype is not None and etype.needs_restart and not r.messages:
            say(f"  {etype.name} needs a restart for the new certificate to take effect: tlsgate tls restart {endpoint}")

    @tls.command("set", context_settings={**CONTEXT, "allow_extra_args": True, "ignore_unknown_options": True})
    def tls_set(ctx: typer.Context, endpoint: Ref, json: JsonOpt = False) -> None:
        """Change options of an endpoint: tlsgate tls set ENDPOINT --option value ... (the options
        of tls add for its type and connection type; '-' reads a secret from standard input).
        Validated like tls add and audited; the endpoint keeps its ID, delegation and history."""
        gw = gateway()
        changes = parse_set_args(ctx, gw, endpoint, list(ctx.args))
        ep = gw.set_endpoint(endpoint, changes)
        if json:
            emit_json(gw.describe(ep.instance_id))
        else:
            say(f"Endpoint {ep.name!r} updated: {', '.join('--' + k for k in sorted(changes))}.")

    @selector_command(tls, "restart")
    def tls_restart(gw: Gateway, endpoint: str, json: bool) -> None:
        """Restart / reload one endpoint (ENDPOINT) or the selected ones (a job) so that installed
        certificates take effect."""
        result = gw.restart(endpoint)
        if json:
            emit_json({"endpoint": endpoint, "restarted": result.restarted, "message": result.message})
        else:
            say(result.message or ("Restarted." if result.restarted else "Nothing to restart."))

    @selector_command(tls, "verify", one=False)
    def tls_verify(gw: Gateway, endpoint: str, json: bool) -> None:
        """Handshake every TLS node (with SNI), re-read keystore entries, and compare what is
        served with the inventory: per node the served fingerprint, certificate ID or External,
        not-after, and ok / mismatch / unreachable. Exit 1 unless every node is ok."""

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
        shown = f"{host}:{port} presents a {key_type} key with fingerprint {fingerprint}"
        if json:  # stdout is the JSON document: the key and the question go to stderr
            print(shown, file=sys.stderr)
        else:
            say(shown)
        if not yes:
            try:
                agreed = _ask_stderr("Trust this host key?") if json else typer.confirm("Trust this host key?",
                                                                                       default=False)
            except typer.Abort:  # standard input ended (a script, cron): no answer is not a yes
                raise OperationError(f"{host}:{port}: host key {fingerprint} not trusted: no answer on standard "
                                     "input (check the fingerprint, then run again with --yes)") from None
            if not agreed:
                raise OperationError(f"{host}:{port}: host key {fingerprint} not trusted (declined)")
        gw.trust_host_key(endpoint, key, host, port)
        if json:
            emit_json({"endpoint": endpoint, "host": host, "port": port, "key_type": key_type,
                       "fingerprint": fingerprint, "trusted": True})
        else:
            say(f"Trusted {fingerprint} for {host}:{port}.")

    @tls.command("run-script", context_settings=CONTEXT)
    def tls_run_script(
        endpoint: Ref,
        script: Annotated[str, typer.Argument(help="Absolute path of the script on the endpoint's host.")],
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
                say_lines(result.stdout.rstrip())
            for line in result.stderr.rstrip().splitlines():
                warn(line)
        if not result.ok:
            if not json:  # the script's own stderr, if any, does not say that it failed
                error_line(f"{result.script} exited with status {result.exit_code}")
            raise typer.Exit(1)


def _names_with_addresses(names: Sequence[str], after: Sequence[Node], fp: str) -> list[tuple[str, list[str]]]:
    """One entry per changed name (a block on IPv4 and IPv6 is one name), with its listen addresses."""
    out = []
    for name in dict.fromkeys(names):
        addresses = [f"[{n.ip}]:{n.port}" if n.ip and ":" in n.ip else f"{n.ip or '*'}:{n.port}"
                     for n in after if n.name == name and n.fingerprint == fp and n.port is not None]
        out.append((name, list(dict.fromkeys(addresses))))
    return out


def _ask_stderr(question: str) -> bool:
    """A yes/no question on stderr, the answer a line of stdin (typer.confirm(err=True) still
    writes input()'s prompt space to stdout, the JSON document's stream)."""
    print(f"{question} [y/N]: ", end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    if not line:
        raise typer.Abort()
    return line.strip().lower() in ("y", "yes")


def selector_command(tls: typer.Typer, name: str, *, one: bool = True) -> Callable[[OneEndpoint], OneEndpoint]:
    """``tls NAME [ENDPOINT] [--endpoint ...] [--type ...] [--org ... [--department ...]] [--all]
    [--parallel N] [--no_wait] [--json]``, the shape discover, restart and verify share: the
    selected endpoints run as a job (:func:`_fan_out`); with ``one``, a lone ENDPOINT and no
    selector runs the decorated function instead, in this process. The decorated function's
    docstring is the command's help."""

    def decorate(single: OneEndpoint) -> OneEndpoint:
        def command(
            endpoint: OptRef = None,
            endpoints: EndpointSel = None,
            types: TypeSel = None,
            org_name: OrgSel = None,
            department: DeptSel = None,
            all_: AllSel = False,
            parallel: ParallelOpt = 8,
            no_wait: NoWaitOpt = False,
            json: JsonOpt = False,
        ) -> None:
            from ..runs import check_run_options  # not tlsgate.fleet: the one-endpoint form needs no job

            check_run_options(parallel, 0, None)
            gw = gateway()
            if one and endpoint and not (endpoints or types or org_name or all_):
                single(gw, endpoint, json)
                return
            _fan_out(gw, name, selection(endpoints, types, org_name, department, all_, positional=endpoint),
                     parallel, json, no_wait)

        command.__doc__, command.__name__ = single.__doc__, single.__name__
        tls.command(name, context_settings=CONTEXT)(command)
        return single

    return decorate


def _fan_out(gw, kind: str, sel, parallel: int, as_json: bool, no_wait: bool = False) -> None:  # type: ignore[no-untyped-def]
    from .. import fleet

    check_no_wait(gw, no_wait)
    chosen = fleet.select(gw, sel)
    job_id = fleet.create_job(gw, kind, chosen, {"selection": _sel_json(sel)})
    run_and_report(gw, job_id, as_json=as_json, parallel=parallel, no_wait=no_wait)


def _sel_json(sel) -> dict:  # type: ignore[no-untyped-def, type-arg]
    import attrs

    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.asdict(sel).items() if v}


def _print_nodes(views: list) -> None:  # type: ignore[type-arg]
    table(["Name", "Alias", "Protocol", "IP Address", "Port", "SSL", "Vendor", "State"],
          [[v.node.name, ", ".join(v.node.alias), v.node.protocol.upper() if v.node.protocol else "", v.node.ip,
            v.node.port, v.ssl or "", v.node.vendor, v.node.state] for v in views])
