"""Certificates in the inventory."""

from __future__ import annotations

from typing import Annotated, Any, Optional, cast

import typer

from ..errors import ValidationError
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
    gateway,
    read_pem_inputs,
)
from .job import (
    AllSel,
    CanaryOpt,
    DeptSel,
    EndpointSel,
    MaxFailOpt,
    NoWaitOpt,
    OrgSel,
    ParallelOpt,
    TypeSel,
    check_no_wait,
    run_and_report,
    selection,
)
from .output import clean, emit_json, say, table


def register(cert: typer.Typer) -> None:
    @cert.command("list", context_settings=CONTEXT)
    def cert_list(json: JsonOpt = False) -> None:
        """List certificates the inventory knows (installed and discovered)."""
        gw = gateway()
        records = gw.certificates()
        states = {r.id: gw.lifecycle.rollout_state(r) for r in records}
        if json:
            emit_json([{**r.to_json(), "status": states[r.id]} for r in records])
            return
        table(["ID", "Subject", "Not after", "Organization", "Department", "Source", "SHA-256", "Status"],
              [[r.id, r.subject, r.not_after, r.organization or "External", r.department, r.source,
                r.fingerprint[:16] + "…", states[r.id]] for r in records])

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
        gateway().assign_certificate(cert_id, org_name, department)
        emit_json({"certificate_id": cert_id, "organization": org_name, "department": department}) if json else say(
            f"Certificate {cert_id} assigned to {org_name}" + (f" / {department}." if department else "."))

    register_lifecycle(cert)


def register_lifecycle(cert: typer.Typer) -> None:
    """``cert request`` / ``renew`` / ``revoke`` (ACME, :mod:`tlsgate.lifecycle`)."""

    @cert.command("request", context_settings=CONTEXT)
    def cert_request(
        acme: Annotated[Optional[str], typer.Option("--acme", help="The ACME account (see: tlsgate acme list).", metavar="NAME")] = None,  # noqa: UP045
        domain: Annotated[Optional[list[str]], typer.Option("--domain", help="A name for the certificate (repeat for more; the first is the CN).", metavar="D")] = None,  # noqa: UP045
        key_type: Annotated[str, typer.Option("--key_type", "--key-type", help="ec256, ec384, rsa2048, rsa3072 or rsa4096.", metavar="TYPE")] = "ec256",
        challenge: Annotated[str, typer.Option("--challenge", help="http-01 (answered by --via ENDPOINT) or dns-01 (by --dns NAME).", metavar="TYPE")] = "http-01",
        via: Annotated[Optional[str], typer.Option("--via", help="The nginx or apache endpoint that serves the names over plain HTTP.", metavar="ENDPOINT")] = None,  # noqa: UP045
        http_port: Annotated[Optional[int], typer.Option("--http_port", "--http-port", help="The port the CA validates http-01 on. Default: 80.", metavar="P")] = None,  # noqa: UP045
        dns: Annotated[Optional[str], typer.Option("--dns", help="The DNS provider for dns-01 (see: tlsgate dns list).", metavar="NAME")] = None,  # noqa: UP045
        org_name: Annotated[Optional[str], typer.Option("--org", help="Assign the certificate to this organization.", metavar="O")] = None,  # noqa: UP045
        department: Annotated[Optional[str], typer.Option("--department", help="... and department.", metavar="DEP")] = None,  # noqa: UP045
        json: JsonOpt = False,
    ) -> None:
        """Order a certificate by ACME, prove control, record it (new ID, key sealed)."""
        if not acme:
            raise ValidationError("is required (see: tlsgate acme list)", option="--acme")
        outcome = gateway().lifecycle.request(
            acme, domain or [], key_type=key_type, challenge=challenge, via=via, http_port=http_port, dns=dns,
            org=org_name, department=department)
        if json:
            emit_json(outcome.to_json())
        else:
            say(f"Certificate {outcome.certificate_id} issued for {', '.join(outcome.names)} "
                f"(by {outcome.issuer}; expires {outcome.not_after}).")

    @cert.command("renew", context_settings=CONTEXT)
    def cert_renew(
        days: Annotated[Optional[int], typer.Option("--days", help="Renew what ends within N days (default: each certificate's renewal window: ARI, else one third of its lifetime left).", metavar="N")] = None,  # noqa: UP045
        cert_ids: Annotated[Optional[list[int]], typer.Option("--cert", help="Only this certificate ID (repeatable).", metavar="ID")] = None,  # noqa: UP045
        deploy: Annotated[bool, typer.Option("--deploy", help="Finish pending rollouts, then deploy each renewed certificate to every node that served the old one.")] = False,
        dry_run: Annotated[bool, typer.Option("--dry_run", "--dry-run", help="Say what would be renewed; change nothing.")] = False,
        json: JsonOpt = False,
    ) -> None:
        """Renew due ACME certificates (idempotent; exit 1 when anything failed)."""
        report = gateway().lifecycle.renew(days=days, cert_ids=cert_ids or [], deploy=deploy, dry_run=dry_run)
        if json:
            emit_json(report.to_json())
        else:
            _print_renewal(report)
        if not report.ok:
            raise typer.Exit(1)

    @cert.command("revoke", context_settings=CONTEXT)
    def cert_revoke(
        cert_id: Annotated[int, typer.Argument(help="Certificate ID.", metavar="ID")],
        reason: Annotated[str, typer.Option("--reason", help="unspecified, keyCompromise, affiliationChanged, superseded or cessationOfOperation.", metavar="R")] = "unspecified",
        json: JsonOpt = False,
    ) -> None:
        """Revoke an ACME certificate through the account that issued it."""
        result = gateway().lifecycle.revoke(cert_id, reason)
        emit_json(result) if json else say(f"Certificate {cert_id} revoked ({reason}).")


def _print_renewal(report: object) -> None:
    from ..lifecycle.service import RenewReport

    report = cast(RenewReport, report)
    for r in report.rollouts:
        for e in r["endpoints"]:
            say(f"rollout {r['old_certificate_id']} -> {r['new_certificate_id']} on {e['endpoint']}: {e['action']}"
                + (f": {e['reason']}" if e.get("reason") else ""))
    if not report.items:
        say("No ACME certificates to renew.")
    for i in report.items:
        names = ", ".join(i.names)
        if i.action == "not due":
            say(f"{i.certificate_id} ({names}): not due (renew at {i.renew_at}, {i.window})")
        elif i.action == "renewed":
            say(f"{i.certificate_id} ({names}): renewed as {i.new_certificate_id}")
        elif i.action == "would renew":
            say(f"{i.certificate_id} ({names}): would renew (due {i.renew_at}, {i.window})")
        else:
            say(f"{i.certificate_id} ({names}): {i.action}: {i.reason}")
        for e in i.deploy:
            say(f"  deploy to {e['endpoint']}: {e['action']}" + (f": {e['reason']}" if e.get("reason") else ""))
    if report.job is not None:
        unfinished = [e for r in report.rollouts for e in r["endpoints"] if not e.get("ok")] + [
            e for i in report.items for e in i.deploy if not e.get("ok")]
        hint = ""
        if any(e.get("state") == "queued" for e in unfinished):  # `job retry` refuses a job still waiting
            hint = "; queued items run when a worker of their zone starts"
        elif unfinished:
            hint = f"; finish what failed with: tlsgate job retry {report.job}"
        say(f"Rollouts: job {report.job} (tlsgate job show {report.job}){hint}.")

def register_fleet(cert: typer.Typer) -> None:
    """cert deploy / expiring / show."""


    @cert.command("deploy", context_settings=CONTEXT)
    def cert_deploy(
        ctx: typer.Context,
        cert_id: Annotated[Optional[int], typer.Argument(  # noqa: UP045
            help="A certificate of the inventory whose key it holds (or give files).", metavar="[ID]")] = None,
        cert_file: CertFileOpt = None,
        key_file: KeyFileOpt = None,
        chain_file: ChainFileOpt = None,
        key_password: KeyPasswordOpt = None,
        pfx: PfxOpt = None,
        pfx_password: PfxPasswordOpt = None,
        endpoints: EndpointSel = None,
        types: TypeSel = None,
        org_name: OrgSel = None,
        department: DeptSel = None,
        all_: AllSel = False,
        replaces: Annotated[Optional[str], typer.Option(  # noqa: UP045
            "--replaces", help="Certificate ID or SHA-256 fingerprint: install on every node whose last discovery "
            "saw it, on every endpoint.", metavar="<ID-or-SHA256>")] = None,
        parallel: ParallelOpt = 8,
        canary: CanaryOpt = 0,
        max_failures: MaxFailOpt = None,
        no_wait: NoWaitOpt = False,
        dry_run: Annotated[bool, typer.Option("--dry_run", "--dry-run", help="Print every endpoint's plan; change nothing.")] = False,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before touching more than 10 endpoints.")] = False,
        apply_pending: ApplyPendingOpt = False,
        allow_name_mismatch: AllowNameMismatchOpt = False,
        json: JsonOpt = False,
    ) -> None:
        """Deploy a certificate to the selected endpoints, in parallel, as a job: the same install
        as tls install (a transaction per endpoint), then re-discover and verify."""
        import sys

        from .. import fleet

        files = any(x is not None for x in (cert_file, key_file, chain_file, pfx))
        if cert_id is not None and files:
            raise ValidationError("give a certificate ID or files (--cert/--key or --pfx), not both", option="--cert")
        if cert_id is None and not files:
            raise ValidationError("is required: a certificate ID, or --cert/--key, or --pfx", option="--cert")
        fleet.check_run_options(parallel, canary, max_failures)
        gw = gateway()
        check_no_wait(gw, no_wait)
        bundle = read_pem_inputs(ctx, cert_file, key_file, chain_file, pfx, pfx_password, key_password) if files else None
        if cert_id is not None:
            bundle = gw.load_bundle(cert_id)
        assert bundle is not None
        revoked = gw.lifecycle.revoked(bundle.fingerprint)
        if revoked is not None:  # clients refuse it: deploying it breaks every node it reaches
            raise ValidationError(f"certificate {cert_id if cert_id is not None else bundle.subject} was revoked "
                                  f"({revoked}): deploy its successor", option="ID")
        # what tls install refuses for every endpoint, refused once before any job or record
        problem = bundle.leaf_problem()
        if problem:
            raise ValidationError(problem, option="--cert")
        validity = bundle.validity_problem()
        if validity:
            raise ValidationError(f"{validity} (cert deploy installs no such certificate; tls install --force "
                                  "does, one endpoint at a time)", option="--cert")
        sel = selection(endpoints, types, org_name, department, all_, replaces)
        chosen = fleet.select(gw, sel, deploy=True)
        old = fleet.resolve_certificate_ref(gw, replaces) if replaces else None
        if old == bundle.fingerprint:
            raise ValidationError("is the certificate being deployed", option="--replaces")
        if dry_run:
            plans = []
            for stored in chosen:
                try:
                    out = gw.install(stored.id, bundle, replaces=old, dry_run=True, apply_pending=apply_pending,
                                     allow_name_mismatch=allow_name_mismatch)
                    plans.append({"endpoint": stored.name, "skipped": out.skipped, "error": None,
                                  "plan": [str(p) for p in out.result.plan]})
                except Exception as exc:  # noqa: BLE001 - one endpoint's problem, shown in its plan
                    plans.append({"endpoint": stored.name, "skipped": None, "error": str(exc), "plan": []})
            if json:
                emit_json({"dry_run": True, "fingerprint": bundle.fingerprint, "endpoints": plans})
                if any(p["error"] for p in plans):
                    raise typer.Exit(1)  # as without --json
                return
            say(f"Plan for {len(plans)} endpoint(s) (dry run, nothing changed):")
            for p in plans:
                say(f"{clean(p['endpoint'])}:" + (f" error: {clean(p['error'])}" if p.get("error") else "")
                    + (f" nothing to do ({p['skipped']})" if p.get("skipped") else ""))
                for step in p["plan"]:
                    say(f"  {clean(step)}")
            if any(p.get("error") for p in plans):
                raise typer.Exit(1)
            return
        if not chosen:
            if json:
                emit_json({"job": None, "endpoints": []})
            else:
                say("No endpoint matches the selection: nothing to deploy.")
            return
        if len(chosen) > 10 and not yes and sys.stdin.isatty() and sys.stdout.isatty():
            if not typer.confirm(f"Deploy {bundle.subject} to {len(chosen)} endpoints?", default=False):
                raise typer.Exit(1)
        if files:
            cert_id = gw.record_certificate_with_key(bundle, source="deploy")
        job_id = fleet.create_job(gw, "deploy", chosen, {"certificate_id": cert_id, "fingerprint": bundle.fingerprint,
                                                          "replaces": old, "apply_pending": apply_pending,
                                                          "allow_name_mismatch": allow_name_mismatch, "selection": {
                                                              k: v for k, v in {"endpoint": endpoints, "type": types,
                                                                                "org": org_name, "department": department,
                                                                                "all": all_, "replaces": replaces}.items() if v}},
                                  canary=canary, max_failures=max_failures)
        run_and_report(gw, job_id, as_json=json, parallel=parallel, canary=canary, max_failures=max_failures,
                       no_wait=no_wait)

    @cert.command("expiring", context_settings=CONTEXT)
    def cert_expiring(
        days: Annotated[int, typer.Option("--days", help="Certificates that end within this many days.")] = 30,
        json: JsonOpt = False,
    ) -> None:
        """Certificates of the inventory that end within N days (expired first), with every node
        that serves them."""
        import datetime as dt

        if days < 0:
            raise ValidationError("must be 0 or more", option="--days")
        gw = gateway()
        now = dt.datetime.now(dt.UTC)
        try:
            limit = now + dt.timedelta(days=days)
        except OverflowError:  # beyond year 9999: every certificate
            limit = dt.datetime.max.replace(tzinfo=dt.UTC)
        candidates = []
        for rec in gw.certificates():
            if not rec.not_after:
                continue
            end = dt.datetime.fromisoformat(rec.not_after)
            if end <= limit or rec.superseded_by is not None:
                candidates.append((end, rec))
        served = gw.serving_node_names_of([rec.fingerprint for _, rec in candidates])  # one query, not one each
        # a renewed certificate some node still serves is listed whatever its end date
        found: list[tuple[dt.datetime, Any, list[dict[str, Any]]]] = [
            (end, rec.to_json() | {"status": gw.lifecycle.rollout_state(rec)}, served[rec.fingerprint])
            for end, rec in candidates if end <= limit or served[rec.fingerprint]]
        # certificates only a device knows: discovery saw their fingerprint and end date but not
        # the certificate (an F5 virtual server the gateway cannot reach); no ID, the fingerprint
        # is what `cert deploy --replaces` takes
        # (the same keys as a recorded certificate's, null where unknown: one shape per item)
        unknown = dict.fromkeys(gw.certificate_keys())
        unrecorded: dict[str, list[dict[str, Any]]] = {}
        for n in gw.unrecorded_serving_nodes():
            unrecorded.setdefault(n["fingerprint"], []).append(n)
        for fp, nodes in unrecorded.items():
            end = dt.datetime.fromisoformat(nodes[0]["not_after"])
            if end <= limit:
                found.append((end, {**unknown, "fingerprint": fp, "subject": nodes[0]["subject"],
                                    "not_after": end.isoformat(), "status": "not in the inventory (discovery saw only "
                                    "its fingerprint): cert deploy --replaces FINGERPRINT"},
                              [{k: n[k] for k in ("endpoint", "type", "name", "port")} for n in nodes]))
        found.sort(key=lambda x: x[0])
        out = []
        for end, view, nodes in found:
            out.append({**view, "expired": end <= now, "days_left": (end - now).days, "nodes": nodes})
        if json:
            emit_json(out)
            return
        rows = []
        for c in out:
            nodes = c["nodes"] or [{"endpoint": "", "name": "(not served)", "port": ""}]
            for n in nodes:
                rows.append([c["id"] if c["id"] is not None else "-", c["subject"], c["not_after"][:19],
                             "EXPIRED" if c["expired"] else c["days_left"], n["endpoint"], n["name"], n["port"] or "",
                             c["status"] if c["id"] is not None else f"{c['fingerprint'][:16]}... {c['status']}"])
        table(["ID", "Subject", "Not after", "Days left", "Endpoint", "Node", "Port", "Status"], rows)
        if not out:
            say(f"No certificate ends within {days} day(s).")

    @cert.command("show", context_settings=CONTEXT)
    def cert_show(
        ref: Annotated[str, typer.Argument(help="Certificate ID or SHA-256 fingerprint.", metavar="ID")],
        json: JsonOpt = False,
    ) -> None:
        """One certificate (subject, SANs, issuer, serial, validity, fingerprints, organization) and
        every node that serves it."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        gw = gateway()
        rec = gw.certificate(ref)
        cert_obj = x509.load_pem_x509_certificate(gw.certificate_pem(rec.id))
        data = {**rec.to_json(), "serial": format(cert_obj.serial_number, "x"),
                "sha1": cert_obj.fingerprint(hashes.SHA1()).hex(),  # noqa: S303 - shown, as browsers do
                "key_held": gw.certificate_has_key(rec.id), "status": gw.lifecycle.rollout_state(rec),
                "nodes": [{k: n[k] for k in ("endpoint", "type", "name", "port", "state")} for n in gw.serving_nodes(rec.fingerprint)]}
        if json:
            emit_json(data)
            return
        for label, key in (("ID", "id"), ("Subject", "subject"), ("Issuer", "issuer"), ("Serial", "serial"),
                           ("Not before", "not_before"), ("Not after", "not_after"), ("SHA-256", "fingerprint"),
                           ("SHA-1", "sha1"), ("Organization", "organization"), ("Department", "department"),
                           ("Source", "source")):
            say(f"{label:<14}{clean(data[key] if data[key] is not None else '-')}")
        say(f"{'SANs':<14}{clean(', '.join(data['names'])) or '-'}")
        say(f"{'Key held':<14}{'yes (deployable by ID)' if data['key_held'] else 'no'}")
        if data["status"]:
            say(f"{'Status':<14}{clean(data['status'])}")
        if data["nodes"]:
            table(["Endpoint", "Type", "Node", "Port", "State"],
                  [[n["endpoint"], n["type"], n["name"], n["port"] or "", n["state"]] for n in data["nodes"]])
        else:
            say("Served by no node of the last discoveries.")
