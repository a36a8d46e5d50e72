"""The node rows a discovery stores, and the glob its Include walk uses: aliases as the JSON text json.dumps writes (any text,
quotes, control characters, non-ASCII and the lone surrogates of undecodable config bytes), the
expiry as ISO text, read back as they were."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tlsgate import ConnectionSpec, Endpoint, Node
from tlsgate.inventory import Inventory

_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(aliases=st.lists(st.lists(_text, max_size=3).map(tuple), min_size=1, max_size=6),
       days=st.lists(st.integers(0, 3) | st.none(), min_size=6, max_size=6))
def test_stored_rows_read_back(tmp_path: Path, aliases: list[tuple[str, ...]], days: list[int | None]) -> None:
    inv = Inventory(tmp_path / "inventory.sqlite3")
    endpoint = Endpoint(name="e", type="apache", connection=ConnectionSpec(type="local"))
    if not inv.db.execute("SELECT 1 FROM endpoints WHERE name = 'e'").fetchone():
        inv.add_endpoint(endpoint, {})
    ep_id = inv.get_endpoint("e").id
    base = dt.datetime(2027, 1, 1, 12, 30, tzinfo=dt.UTC)
    nodes = [Node(name=f"n{i}", alias=a, port=443, locator=f"f:{i}",
                  not_after=None if days[i] is None else base + dt.timedelta(days=days[i]))
             for i, a in enumerate(aliases)]
    inv.replace_nodes(ep_id, nodes)
    rows = inv.db.execute("SELECT alias, not_after FROM nodes WHERE endpoint_id = ? ORDER BY id", (ep_id,)).fetchall()
    assert [r["alias"] for r in rows] == [json.dumps(list(n.alias)) for n in nodes]
    assert [r["not_after"] for r in rows] == [n.not_after.isoformat() if n.not_after else None for n in nodes]
    assert [(n.alias, n.not_after) for n in inv.nodes(ep_id)] == [(n.alias, n.not_after) for n in nodes]


_name = st.text(st.sampled_from("ab.*?[]!-_xZ"), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(names=st.lists(_name, unique=True, max_size=8), pattern=_name)
def test_connection_glob_matches_as_fnmatchcase(names: list[str], pattern: str) -> None:
    """Connection.glob's one compiled pattern picks the names fnmatchcase picks (Include walks)."""
    import fnmatch

    from tlsgate_testing.fake import FakeConnection

    names = [n for n in names if "/" not in n]
    conn = FakeConnection({f"/d/{n}": b"" for n in names})
    want = sorted(f"/d/{n}" for n in names if fnmatch.fnmatchcase(n, pattern) and not n.startswith("."))
    if any(ch in pattern for ch in "*?["):
        assert conn.glob(f"/d/{pattern}") == want
