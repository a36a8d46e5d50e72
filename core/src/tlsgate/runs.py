"""Checks and summaries the fleet commands share with their one-endpoint forms, without the
fleet's machinery (thread pools, jobs, leases): ``tls discover NAME`` runs in this process, and
importing :mod:`tlsgate.fleet` only to check ``--parallel`` and to count the nodes cost it
~2% of its instructions. :mod:`tlsgate.fleet` re-exports both."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import ValidationError


def check_run_options(parallel: int, canary: int, max_failures: int | None) -> None:
    """Refuse (exit 2) --parallel < 1, --canary < 0, --max-failures < 1: before anything is
    selected, recorded or planned."""
    if parallel < 1:
        raise ValidationError("must be at least 1", option="--parallel")
    if canary < 0:
        raise ValidationError("must be 0 or more", option="--canary")
    if max_failures is not None and max_failures < 1:
        raise ValidationError("must be at least 1", option="--max-failures")


def discovery_summary(nodes: Sequence[Any], before: set[tuple[str, str | None]]) -> dict[str, int]:
    from .inventory import storable

    after = {(storable(n.key), n.fingerprint) for n in nodes}  # as stored (``before`` was read back)
    return {
        "nodes": len(nodes),
        "tls": sum(1 for n in nodes if n.fingerprint),
        "changed": len(after - before),
        "unreachable": sum(1 for n in nodes if "not reachable" in (n.state or "")),
    }
