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


_any = st.text(st.characters(codec=None, exclude_categories=()), max_size=10)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(nodes=st.lists(st.tuples(st.sampled_from(["e1", "e2"]), _any, st.lists(_any, max_size=2).map(tuple),
                                st.sampled_from([None, "", "assigned", "f" * 64]), _any, st.none() | _any,
                                st.none() | st.integers(0, 65535)), max_size=8))
def test_node_rows_json_is_node_rows_encoded(tmp_path: Path, test_ca, nodes: list[tuple]) -> None:
    """``tls nodes --json`` of a selection is built by SQLite's json_object: every row, parsed,
    is the row node_rows builds in Python (keys in order; "ssl" the assigned ID, External or null;
    text with quotes, controls, non-ASCII or lone surrogates; null and empty values)."""
    inv = Inventory(tmp_path / "inventory.sqlite3")
    if not inv.db.execute("SELECT 1 FROM endpoints").fetchone():
        for name in ("e2", "e1"):
            inv.add_endpoint(Endpoint(name=name, type="apache", connection=ConnectionSpec(type="local")), {})
        inv.add_org("Acme")
        org_id, _ = inv.org_ids("Acme", None)
        inv.record_certificate(test_ca.issue("assigned.example").cert, source="test", org_id=org_id)
    assigned = inv.db.execute("SELECT fingerprint FROM certificates").fetchone()[0]
    ids = {name: inv.get_endpoint(name).id for name in ("e1", "e2")}
    for name, ep_id in ids.items():
        inv.replace_nodes(ep_id, [
            Node(name=n, alias=a, port=port, fingerprint=assigned if fp == "assigned" else fp, vendor=vendor,
                 state=state or "", locator=f"f:{i}")
            for i, (ep, n, a, fp, vendor, state, port) in enumerate(nodes) if ep == name])
    for selection in (None, [ids["e2"]], [ids["e1"], ids["e2"]]):
        rows = inv.node_rows(selection)
        texts = inv.node_rows_json(selection)
        assert [json.loads(t) for t in texts] == rows
        assert [list(json.loads(t)) for t in texts] == [list(r) for r in rows]


def _stored(inv: Inventory, ep_id: str) -> list[tuple]:
    return [tuple(r) for r in inv.db.execute(
        "SELECT id, discovered, name, alias, protocol, ip, port, fingerprint, subject, not_after, vendor, state, "
        "locator FROM nodes WHERE endpoint_id = ? ORDER BY id", (ep_id,))]


def test_a_rediscovery_stores_what_it_found_whether_or_not_anything_changed(tmp_path: Path) -> None:
    import attrs
    from tlsgate import inventory as inventory_module

    inv = Inventory(tmp_path / "inventory.sqlite3")
    inv.add_endpoint(Endpoint(name="e", type="apache", connection=ConnectionSpec(type="local")), {})
    ep_id = inv.get_endpoint("e").id
    end = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    inv.add_endpoint(Endpoint(name="f", type="apache", connection=ConnectionSpec(type="local")), {})
    other = inv.get_endpoint("f").id
    nodes = [Node(name=f"n{i}.example.org", alias=(f"www.n{i}",), protocol="https",
                  ip="127.0.0.1", port=443 + i, fingerprint=f"{i:064x}", subject=f"CN=n{i}", not_after=end,
                  vendor="Apache", state="active", locator=f"f.conf:{i}") for i in range(4)]
    changed = {
        "name": "other", "alias": ("x",), "protocol": "http", "ip": "127.0.0.2", "port": 8443, "fingerprint": None,
        "subject": "CN=x", "not_after": end + dt.timedelta(days=1), "vendor": "V", "state": "active; note",
        "locator": "g.conf:1",
    }
    # a name in another encoding (stored as \\xNN: never "unchanged", always stored again)
    variants = [nodes, nodes[::-1], nodes[:3], [*nodes, nodes[0]], [], [attrs.evolve(nodes[0], alias=("b\udce9",))]]
    variants += [[*nodes[:2], attrs.evolve(nodes[2], **{f: v}), nodes[3]] for f, v in changed.items()]
    stamps = iter(f"2027-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00" for i in range(999))
    real_now = inventory_module.now
    try:
        inventory_module.now = lambda: next(stamps)
        for k, variant in enumerate(variants):
            inv.replace_nodes(ep_id, nodes)
            inv.replace_nodes(other, [Node(f"o{k}")])  # a row after e's: e's stored again get new IDs
            before = _stored(inv, ep_id)
            inv.replace_nodes(ep_id, nodes)  # unchanged: the same rows (IDs), a new time of discovery
            again = _stored(inv, ep_id)
            assert [r[:1] + r[2:] for r in again] == [r[:1] + r[2:] for r in before]
            assert len({r[1] for r in again}) == 1 and again[0][1] > before[0][1]
            inv.replace_nodes(ep_id, variant)
            after = _stored(inv, ep_id)
            assert [(n.name, n.alias, n.port, n.fingerprint, n.state, n.locator) for n in inv.nodes(ep_id)] == [
                (n.name, n.alias, n.port, n.fingerprint, n.state, n.locator) for n in variant]
            assert len({r[1] for r in after}) <= 1 and all(r[1] > again[0][1] for r in after)
            assert variant == nodes or not after or after[0][0] > max(r[0] for r in again)  # stored anew
    finally:
        inventory_module.now = real_now
