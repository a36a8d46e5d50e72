"""Certificates in the inventory."""

from __future__ import annotations

from typing import Annotated, Optional, cast

import typer

from ..errors import ValidationError
from .common import CONTEXT, JsonOpt, gateway
from .output import emit_json, say, table


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
