"""Top-level commands: plugins list, log."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .common import CONTEXT, JsonOpt, gateway
from .output import emit_json, table, warn


def register_plugins(plugins: typer.Typer) -> None:
    @plugins.command("list", context_settings=CONTEXT)
    def plugins_list(json: JsonOpt = False) -> None:
        """List installed plugins with their distribution, version and what they provide."""
        from ..registry import get_registry

        infos = sorted(get_registry().plugins.values(), key=lambda p: p.name)
        if json:
            emit_json([p.to_json() for p in infos])
            return
        table(["Plugin", "Distribution", "Version", "Endpoint types", "Connection types", "Credential stores"],
              [[p.name, p.distribution, p.version, ", ".join(p.endpoint_types), ", ".join(p.connection_types),
                ", ".join(p.credential_stores)] for p in infos])
        if not get_registry().endpoint_types:
            warn("no endpoint types are installed: install a plugin such as tlsgate-keystores")


def register_top(app: typer.Typer) -> None:
    @app.command("log", context_settings=CONTEXT)
    def log(
        limit: Annotated[Optional[int], typer.Option("--limit", help="Only the last N entries.")] = None,  # noqa: UP045
        json: JsonOpt = False,
    ) -> None:
        """The audit log: who did what, when, to which endpoint, with what result."""
        entries = gateway().audit_log(limit)
        if json:
            emit_json(entries)
            return
        table(["Time", "Actor", "Action", "Endpoint", "Result", "Before", "After"],
              [[e["time"], e["actor"], e["action"], e["endpoint"], e["result"], (e["before"] or "")[:12],
                (e["after"] or "")[:12]] for e in entries])
