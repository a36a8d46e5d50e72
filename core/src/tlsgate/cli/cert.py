"""Certificates in the inventory."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..errors import ValidationError
from .common import CONTEXT, JsonOpt, gateway
from .output import emit_json, say, table


def register(cert: typer.Typer) -> None:
    @cert.command("list", context_settings=CONTEXT)
    def cert_list(json: JsonOpt = False) -> None:
        """List certificates the inventory knows (installed and discovered)."""
        records = gateway().certificates()
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
        gateway().assign_certificate(cert_id, org_name, department)
        emit_json({"certificate_id": cert_id, "organization": org_name, "department": department}) if json else say(
            f"Certificate {cert_id} assigned to {org_name}" + (f" / {department}." if department else "."))
