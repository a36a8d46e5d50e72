"""Organizations and departments."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import CONTEXT, JsonOpt, gateway
from .output import emit_json, say, table


def register(org: typer.Typer) -> None:
    @org.command("add", context_settings=CONTEXT)
    def org_add(name: Annotated[str, typer.Argument(help="Organization name.")], json: JsonOpt = False) -> None:
        """Add an organization."""
        gateway().add_org(name)
        emit_json({"organization": name}) if json else say(f"Organization {name!r} added.")

    @org.command("add-department", context_settings=CONTEXT)
    def org_add_department(
        org_name: Annotated[str, typer.Argument(help="Organization.", metavar="ORG")],
        name: Annotated[str, typer.Argument(help="Department name.")],
        json: JsonOpt = False,
    ) -> None:
        """Add a department to an organization."""
        gateway().add_department(org_name, name)
        emit_json({"organization": org_name, "department": name}) if json else say(
            f"Department {name!r} added to {org_name!r}.")

    @org.command("list", context_settings=CONTEXT)
    def org_list(json: JsonOpt = False) -> None:
        """List organizations and their departments."""
        orgs = gateway().orgs()
        if json:
            emit_json(orgs)
        else:
            table(["Organization", "Departments"], [[o["name"], ", ".join(o["departments"])] for o in orgs])
