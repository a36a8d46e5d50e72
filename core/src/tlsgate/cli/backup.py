"""Backup sets of installs: list them, restore an interrupted (or any finished) install's
originals, or dismiss an interrupted one whose files are to be kept."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import CONTEXT, JsonOpt, gateway
from .output import emit_json, say, table

IdArg = Annotated[str, typer.Argument(help="Backup set ID (see: tlsgate backup list).", metavar="ID")]


def register(backup: typer.Typer) -> None:
    @backup.command("list", context_settings=CONTEXT)
    def backup_list(json: JsonOpt = False) -> None:
        """List backup sets with their state (unfinished: the install's process died)."""
        sets = gateway().backup_sets()
        if json:
            emit_json([s.to_json() for s in sets])
            return
        table(["ID", "Endpoint", "State", "Started", "Files"],
              [[s.id, s.endpoint, s.state, s.manifest.get("started"),
                ", ".join(f["path"] for f in s.files)] for s in sets])

    @backup.command("restore", context_settings=CONTEXT)
    def backup_restore(backup_id: IdArg, json: JsonOpt = False) -> None:
        """Put back the original files of a backup set (and remove the dead job's temporaries)."""
        stored, restored, removed = gateway().restore_backup(backup_id)
        if json:
            emit_json({"id": stored.id, "endpoint": stored.endpoint, "restored": restored,
                       "temporaries_removed": removed})
            return
        say(f"Backup {stored.id}: restored {len(restored)} file(s) on {stored.endpoint!r}"
            + (f": {', '.join(restored)}" if restored else " (every file already held its original)")
            + (f"; removed {len(removed)} temporary file(s)" if removed else "") + ".")
        say(f"  Make the server read them again if it reloaded meanwhile: tlsgate tls restart {stored.endpoint}")

    @backup.command("dismiss", context_settings=CONTEXT)
    def backup_dismiss(backup_id: IdArg, json: JsonOpt = False) -> None:
        """Close an unfinished install, keeping the endpoint's files as they are now."""
        stored = gateway().dismiss_backup(backup_id)
        if json:
            emit_json({"id": stored.id, "endpoint": stored.endpoint, "dismissed": True})
        else:
            say(f"Backup {stored.id} dismissed; the files on {stored.endpoint!r} stay as they are.")
