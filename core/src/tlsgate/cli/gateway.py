"""Gateways and workers: tlsgate worker --zone Z ..., tlsgate gateway list."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..errors import ValidationError
from .common import CONTEXT, JsonOpt
from .output import emit_json, table


def register(app: typer.Typer, gateway_group: typer.Typer) -> None:
    @app.command("worker", context_settings=CONTEXT)
    def worker(
        zone: Annotated[Optional[list[str]], typer.Option("--zone", metavar="<zone>", help="A zone whose tasks this gateway runs (repeatable).")] = None,  # noqa: UP045
        name: Annotated[Optional[str], typer.Option("--gateway", metavar="<name>", help="This gateway's name. Default: the host name.")] = None,  # noqa: UP045
        concurrency: Annotated[int, typer.Option("--concurrency", metavar="<n>", help="Tasks run at once (threads). Default: 4.")] = 4,
    ) -> None:
        """Run this gateway's worker: register it, heartbeat, and execute the tasks of its zones
        (PostgreSQL inventory; stops on SIGINT/SIGTERM)."""
        from ..database import database_url
        from ..inventory import gateway_name
        from ..queue import run_worker, validate_zone

        url = database_url()
        if url is None:
            raise ValidationError("a worker needs a shared PostgreSQL inventory: set TLSGATE_DATABASE_URL=postgresql://...")
        zones = sorted({validate_zone(z) for z in zone or ["default"]})
        if concurrency < 1 or concurrency > 256:
            raise ValidationError("must be between 1 and 256", option="--concurrency")
        gw_name = name if name is not None else gateway_name()
        if not gw_name or len(gw_name) > 128 or any(ord(ch) < 32 for ch in gw_name):
            raise ValidationError("must be 1 to 128 printable characters", option="--gateway")
        run_worker(url, zones, gw_name, concurrency)

    @gateway_group.command("list", context_settings=CONTEXT)
    def gateway_list(json: JsonOpt = False) -> None:
        """Registered gateways: name, zones, version, plugins, last heartbeat, running tasks."""
        from ..inventory import open_inventory
        from ..queue import gateways

        inv = open_inventory()
        try:
            rows = gateways(inv)
        finally:
            inv.close()
        if json:
            emit_json(rows)
            return
        table(["Gateway", "Zones", "Host", "Version", "Plugins", "Last heartbeat", "Running", "State"],
              [[r["name"], ", ".join(r["zones"]), r["host"], r["version"], len(r["plugins"]), r["heartbeat"],
                r["running"], "up" if r["alive"] else ("stopped" if not r["started"] else "silent")] for r in rows])
