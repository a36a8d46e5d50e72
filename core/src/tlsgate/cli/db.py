"""Inventory commands: db status, db migrate, db copy --to URL."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ValidationError
from .common import CONTEXT, JsonOpt
from .output import emit_json, say, table


def register(db: typer.Typer) -> None:
    @db.command("status", context_settings=CONTEXT)
    def db_status(json: JsonOpt = False) -> None:
        """Engine, location, schema version, row counts (and the job queue, on PostgreSQL)."""
        from ..dbadmin import inventory_status

        data = inventory_status()
        if json:
            emit_json(data)
            return
        say(f"engine            {data['engine']}")
        say(f"location          {data['location']}")
        pending = data["latest_schema_version"] - data["schema_version"]
        say(f"schema            {data['schema_version']} of {data['latest_schema_version']}"
            + (f" ({pending} pending: tlsgate db migrate)" if pending > 0 else ""))
        table(["Table", "Rows"], [[t, n] for t, n in data["tables"].items()])
        if "queue" in data:
            table(["Queue", "Status", "Jobs"], [[q["queue"], q["status"], q["jobs"]] for q in data["queue"]])

    @db.command("migrate", context_settings=CONTEXT)
    def db_migrate(json: JsonOpt = False) -> None:
        """Apply pending schema migrations (the same numbered migrations on SQLite and PostgreSQL)."""
        from ..dbadmin import migrate_inventory

        data = migrate_inventory()
        before, after, location = data["from"], data["to"], data["location"]
        if json:
            emit_json(data)
        elif before == after:
            say(f"Inventory {location} is at schema {after}; nothing to do.")
        else:
            say(f"Inventory {location} migrated from schema {before} to {after}.")

    @db.command("copy", context_settings=CONTEXT)
    def db_copy(
        to: Annotated[Optional[str], typer.Option("--to", help="Destination: a postgresql:// URL of an empty database.")] = None,  # noqa: UP045
        source: Annotated[Optional[Path], typer.Option("--from", help="The SQLite inventory to copy. Default: the one under $TLSGATE_HOME.")] = None,  # noqa: UP045
        json: JsonOpt = False,
    ) -> None:
        """Copy a SQLite inventory into PostgreSQL (endpoints, nodes, certificates, audit log; secrets stay sealed)."""
        from ..dbadmin import copy_to

        if not to or not to.startswith(("postgresql://", "postgres://")):
            raise ValidationError("must be a postgresql:// URL", option="--to")
        from ..database import check_userinfo

        check_userinfo(to, "--to")
        result = copy_to(to, source)
        if json:
            emit_json(result)
            return
        say(f"Copied {result['from']} to {result['to']}:")
        table(["Table", "Rows"], [[t, n] for t, n in result["rows"].items()])
        say(f"Every gateway that uses it needs the same master key; then set TLSGATE_DATABASE_URL={result['to']}")
