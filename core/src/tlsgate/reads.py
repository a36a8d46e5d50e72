"""Read-only queries of the library that need neither the plugins nor the models: what
``tlsgate tls list`` prints. :class:`tlsgate.api.Gateway` offers the same (its ``endpoint_views``);
this module exists so that a script's ``tls list`` starts in about the time of ``import typer``
(``tlsgate.api`` imports attrs, the models and the install machinery: ~40 ms)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .inventory import Inventory


def endpoint_views(inventory: Inventory | None = None) -> list[dict[str, Any]]:
    """Every endpoint of ``inventory`` (default: the configured one) in its JSON shape, secrets
    redacted, ordered by name; "insecure" from what the installed plugins declare."""
    from .inventory import open_inventory

    def insecure() -> frozenset[str]:
        from .declarations import declarations

        return frozenset(name for name, c in declarations().connection_types.items() if c.insecure)

    return (inventory or open_inventory()).endpoint_views(insecure)
