"""The distributed job queue of a PostgreSQL inventory: procrastinate in the same database.

One task per endpoint item of a fleet job, deferred into its zone's queue in the transaction that
records the job; ``tlsgate worker --zone Z`` runs the tasks of its zones. procrastinate (and
psycopg) are imported only here and only when the inventory is a PostgreSQL one.
"""

from __future__ import annotations

from typing import Any


def ensure_schema(db: Any) -> None:
    """Create procrastinate's tables in a PostgreSQL inventory that has none yet (inside the
    caller's migration transaction, under the writer lock, so two gateways cannot both do it)."""
    row = db.execute(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() "
        "AND table_name = 'procrastinate_jobs'").fetchone()
    if row[0]:
        return
    from procrastinate.schema import SchemaManager

    db.executescript(SchemaManager.get_schema())
