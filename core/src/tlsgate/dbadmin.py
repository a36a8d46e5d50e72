"""Inventory administration: schema status, migration, and copying a SQLite inventory into
PostgreSQL (``tlsgate db status | migrate | copy``).

A copy moves rows as they are stored: secrets stay sealed with the master key (the destination
database alone cannot decrypt them: every gateway of the estate needs the same
``TLSGATE_MASTER_KEY`` or ``master.key``), IDs (certificate IDs, audit entry IDs) are kept, and the
append-only audit log arrives whole, in order, before one more entry that records the copy.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from .errors import ValidationError
from .inventory import SCHEMA_VERSION, Inventory

# tables that describe running processes, not the estate: not copied
_RUNTIME_TABLES = {"leases", "gateways", "tlsgate_schema"}
# tables whose rows say "someone already uses this inventory"
_CONTENT_TABLES = ("endpoints", "certificates", "organizations", "stores", "audit")


def tables(inv: Inventory) -> list[str]:
    """The inventory's own tables, parents before children (foreign keys), then by name."""
    if inv.dialect == "sqlite":
        names = [r[0] for r in inv.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    else:
        names = [r[0] for r in inv.db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_type = 'BASE TABLE' AND table_name NOT LIKE 'procrastinate%' ORDER BY table_name")]
    deps = {name: {p for p in _parents(inv, name) if p != name and p in names} for name in names}
    ordered: list[str] = []
    while deps:
        ready = sorted(n for n, d in deps.items() if not d - set(ordered))
        if not ready:  # a cycle: keep the rest in name order
            ready = sorted(deps)
        for n in ready:
            ordered.append(n)
            deps.pop(n)
    return ordered


def _parents(inv: Inventory, table: str) -> set[str]:
    if inv.dialect == "sqlite":
        return {r["table"] for r in inv.db.execute(f"PRAGMA foreign_key_list({_ident(table)})")}
    rows = inv.db.execute(
        "SELECT ccu.table_name FROM information_schema.table_constraints tc "
        "JOIN information_schema.constraint_column_usage ccu ON ccu.constraint_name = tc.constraint_name "
        "WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_name = ?", (table,)).fetchall()
    return {r[0] for r in rows}


def _self_references(inv: Inventory, table: str) -> list[str]:
    """Columns of a table that reference the same table (filled in a second pass)."""
    if inv.dialect == "sqlite":
        return [r["from"] for r in inv.db.execute(f"PRAGMA foreign_key_list({_ident(table)})") if r["table"] == table]
    rows = inv.db.execute(
        "SELECT kcu.column_name FROM information_schema.table_constraints tc "
        "JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = tc.constraint_name "
        "JOIN information_schema.constraint_column_usage ccu ON ccu.constraint_name = tc.constraint_name "
        "WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_name = ? AND ccu.table_name = ?",
        (table, table)).fetchall()
    return [r[0] for r in rows]


def columns(inv: Inventory, table: str) -> list[str]:
    if inv.dialect == "sqlite":
        return [r["name"] for r in inv.db.execute(f"PRAGMA table_info({_ident(table)})")]
    return [r[0] for r in inv.db.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = ? ORDER BY ordinal_position", (table,))]


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"unexpected table name {name!r}")
    return f'"{name}"'


def count(inv: Inventory, table: str) -> int:
    return int(inv.db.execute(f"SELECT COUNT(*) FROM {_ident(table)}").fetchone()[0])  # noqa: S608 (checked name)


def queue_tables(inv: Inventory) -> set[str]:
    """The queue's tables that exist (none before ``tlsgate db migrate``)."""
    return {r[0] for r in inv.db.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
        "AND table_name = 'procrastinate_jobs'")}


def status(inv: Inventory) -> dict[str, Any]:
    """Engine, location, schema version, row counts and (PostgreSQL) the queue's job counts."""
    names = tables(inv)
    out: dict[str, Any] = {
        "engine": inv.dialect,
        "location": inv.location,
        "schema_version": inv.schema_version(),
        "latest_schema_version": SCHEMA_VERSION,
        "tables": {t: count(inv, t) for t in names if t != "tlsgate_schema"},
    }
    if inv.dialect == "postgresql" and "procrastinate_jobs" not in queue_tables(inv):
        out["queue"] = []  # not migrated yet: no queue at all
    elif inv.dialect == "postgresql":
        rows = inv.db.execute(
            "SELECT queue_name, status::text AS status, COUNT(*) AS n FROM procrastinate_jobs "
            "GROUP BY queue_name, status ORDER BY queue_name, status").fetchall()
        out["queue"] = [{"queue": r["queue_name"], "status": r["status"], "jobs": int(r["n"])} for r in rows]
    return out


def copy_inventory(source: Inventory, destination: Inventory) -> dict[str, int]:
    """Copy every row of ``source`` into the empty ``destination`` in one transaction; returns
    rows copied per table. Refuses a destination that already holds endpoints, certificates,
    organizations, stores or audit entries."""
    if source.schema_version() != destination.schema_version():
        raise ValidationError(f"source schema {source.schema_version()} and destination schema "
                              f"{destination.schema_version()} differ: run tlsgate db migrate on both first")
    used = {t: count(destination, t) for t in _CONTENT_TABLES}
    if any(used.values()):
        held = ", ".join(f"{n} {t}" for t, n in used.items() if n)
        raise ValidationError(f"the destination already holds an inventory ({held}); copy into an empty database",
                              option="--to")
    copied: dict[str, int] = {}
    dest_tables = set(tables(destination))
    with destination.write() as db:
        for table in tables(source):
            if table in _RUNTIME_TABLES or table not in dest_tables:
                continue
            cols = [c for c in columns(source, table) if c in set(columns(destination, table))]
            later = [c for c in _self_references(source, table) if c in cols]
            collist = ", ".join(_ident(c) for c in cols)
            rows = source.db.execute(f"SELECT {collist} FROM {_ident(table)} ORDER BY rowid").fetchall()  # noqa: S608
            marks = ", ".join("?" for _ in cols)
            values = [[None if c in later else r[i] for i, c in enumerate(cols)] for r in rows]
            if values:
                db.executemany(f"INSERT INTO {_ident(table)} ({collist}) VALUES ({marks})", values)  # noqa: S608
            for col in later:
                key = cols.index("id")
                for r in rows:
                    if r[cols.index(col)] is not None:
                        db.execute(f"UPDATE {_ident(table)} SET {_ident(col)} = ? WHERE id = ?",  # noqa: S608
                                   (r[cols.index(col)], r[key]))
            copied[table] = len(rows)
            if destination.dialect == "postgresql" and "id" in cols and table in destination.db.identity_tables():
                # explicit IDs were inserted: the identity continues after the highest one
                db.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                           f"COALESCE((SELECT MAX(id) FROM {_ident(table)}), 0) + 1, false)")
    destination.audit("db copy", "ok", details={"from": source.location, "rows": copied})
    return copied


def open_sqlite(path: Path) -> Inventory:
    if not path.is_file():
        raise ValidationError(f"{path}: no such inventory file", option="--from")
    with path.open("rb") as fh:
        if fh.read(16) != b"SQLite format 3\x00":  # (opening it would make any empty file an inventory)
            raise ValidationError(f"{path}: not a SQLite inventory", option="--from")
    try:
        return Inventory(path)
    except sqlite3.DatabaseError as exc:
        raise ValidationError(f"{path}: not a SQLite inventory ({exc})", option="--from") from None


# -- the library API the ``tlsgate db`` commands call -----------------------------------------
def inventory_status() -> dict[str, Any]:
    """:func:`status` of the inventory this process uses (``TLSGATE_DATABASE_URL`` or the SQLite
    file), opened without migrating it."""
    from .inventory import open_inventory

    inv = open_inventory(migrate=False)
    try:
        return status(inv)
    finally:
        inv.close()


def migrate_inventory() -> dict[str, Any]:
    """Apply pending migrations; returns engine, location, schema version before and after."""
    from .inventory import open_inventory

    inv = open_inventory(migrate=False)
    try:
        before, after = inv.migrate()
        return {"engine": inv.dialect, "location": inv.location, "from": before, "to": after}
    finally:
        inv.close()


def copy_to(url: str, source: Path | None = None) -> dict[str, Any]:
    """Copy a SQLite inventory (default: the one under ``$TLSGATE_HOME``) into the empty
    PostgreSQL database at ``url``; returns where from, where to (password hidden) and the rows."""
    from .database import redact_url
    from .inventory import Inventory
    from .paths import home

    src = open_sqlite(source or home() / "inventory.sqlite3")
    dst = Inventory(url=url)
    try:
        copied = copy_inventory(src, dst)
    finally:
        src.close()
        dst.close()
    return {"from": src.location, "to": redact_url(url), "rows": copied}


def gateway_list() -> list[dict[str, Any]]:
    """Registered gateways (``tlsgate gateway list``)."""
    from .inventory import open_inventory
    from .queue import gateways

    inv = open_inventory()
    try:
        return gateways(inv)
    finally:
        inv.close()
