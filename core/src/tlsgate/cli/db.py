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
        from ..dbadmin import status
        from ..inventory import open_inventory

        inv = open_inventory(migrate=False)
        try:
            data = status(inv)
        finally:
            inv.close()
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
        from ..inventory import open_inventory

        inv = open_inventory(migrate=False)
        try:
            before, after = inv.migrate()
            location = inv.location
        finally:
            inv.close()
        if json:
            emit_json({"engine": inv.dialect, "location": location, "from": before, "to": after})
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
        from ..database import redact_url
        from ..dbadmin import copy_inventory, open_sqlite
        from ..inventory import Inventory
        from ..paths import home

        if not to or not to.startswith(("postgresql://", "postgres://")):
            raise ValidationError("must be a postgresql:// URL", option="--to")
        src = open_sqlite(source or home() / "inventory.sqlite3")
        dst = Inventory(url=to)
        try:
            copied = copy_inventory(src, dst)
        finally:
            src.close()
            dst.close()
        if json:
            emit_json({"from": src.location, "to": redact_url(to), "rows": copied})
            return
        say(f"Copied {src.location} to {redact_url(to)}:")
        table(["Table", "Rows"], [[t, n] for t, n in copied.items()])
        say(f"Every gateway that uses it needs the same master key; then set TLSGATE_DATABASE_URL={redact_url(to)}")
