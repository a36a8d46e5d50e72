"""Concurrent inventory writers on PostgreSQL (real server, two connections): the per-endpoint
writes of a fleet job (``Inventory.write(exclusive=False)``) run side by side, and the rows they
share stay right when two of them race: an endpoint's nodes replaced twice at once end as one
set, a certificate recorded twice at once is one row, a lease taken by eight at once has one
holder. An exclusive write still runs alone."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography import x509
from tlsgate import leases
from tlsgate.inventory import Inventory, now
from tlsgate.models import Node


@pytest.fixture
def url(postgres_database: str) -> str:
    inv = Inventory(url=postgres_database)
    try:
        with inv.write() as db:
            for eid in ("e1", "e2"):
                db.execute("INSERT INTO endpoints(id, name, type, connection, options, zone, created, updated) "
                           "VALUES (?,?,?,?,?,?,?,?)", (eid, eid, "pem", "{}", "{}", "default", now(), now()))
        inv.replace_nodes("e1", [Node("old")])
    finally:
        inv.close()
    return postgres_database


@pytest.fixture
def two(url: str) -> Iterator[tuple[Inventory, Inventory]]:
    a, b = Inventory(url=url), Inventory(url=url)
    yield a, b
    a.close()
    b.close()


class Later:
    """``fn`` on a thread of its own; its result or exception once it ends."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def done(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def value(self) -> Any:
        assert self.done(30), "the second writer never finished"
        if self.error is not None:
            raise self.error
        return self.result


def waits_on(watcher: Inventory, backend_pid: int, timeout: float = 10) -> str:
    """The kind of lock the backend ``backend_pid`` waits for (pg_locks), once it waits."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        row = watcher.db.execute("SELECT locktype FROM pg_locks WHERE pid = ? AND NOT granted", (backend_pid,)).fetchone()
        if row is not None:
            return str(row[0])
        time.sleep(0.02)
    raise AssertionError(f"backend {backend_pid} never waited for a lock")


def pid(inv: Inventory) -> int:
    return int(inv.db.raw.info.backend_pid)


def test_shared_writers_of_different_endpoints_do_not_wait(two: tuple[Inventory, Inventory]) -> None:
    a, b = two
    with a.write(exclusive=False):
        a.replace_nodes("e1", [Node("a1")])
        a.audit("tls install", "ok", details={"n": 1})
        other = Later(lambda: (b.replace_nodes("e2", [Node("b1")]), b.audit("tls install", "ok"),
                               leases.try_acquire(b, "e2", "holder-b", 1)))
        # the old global writer lock made this wait for a's commit
        assert other.done(10), "a shared writer of another endpoint waited for this transaction"
        assert other.value()[2] is None  # b took e2's lease
    assert [n.name for n in a.nodes("e2")] == ["b1"]


def test_two_writers_replacing_one_endpoints_nodes_take_turns(url: str, two: tuple[Inventory, Inventory]) -> None:
    a, b = two
    watcher = Inventory(url=url)
    try:
        with a.write(exclusive=False):
            a.replace_nodes("e1", [Node("a1"), Node("a2")])
            second = Later(lambda: b.replace_nodes("e1", [Node("b1"), Node("b2"), Node("b3")]))
            # on the endpoint's row, not on a lock of the whole inventory
            assert waits_on(watcher, pid(b)) in ("tuple", "transactionid")
        second.value()
        # without the endpoint's row lock b's DELETE missed a's new rows: five nodes
        assert sorted(n.name for n in watcher.nodes("e1")) == ["b1", "b2", "b3"]
    finally:
        watcher.close()


def test_one_certificate_recorded_by_two_writers_at_once_is_one_row(url: str, two: tuple[Inventory, Inventory],
                                                                     test_ca: Any) -> None:
    a, b = two
    cert = x509.load_pem_x509_certificate(test_ca.issue("race.test").cert_pem)
    watcher = Inventory(url=url)
    try:
        with a.write(exclusive=False):
            first = a.record_certificate(cert, source="a")
            second = Later(lambda: b.record_certificate(cert, source="b"))
            assert waits_on(watcher, pid(b)) == "transactionid"  # on the unique fingerprint
        # a read then an insert would fail here: the unique constraint refused b's insert
        assert second.value() == first
        rows = watcher.db.execute("SELECT id, source FROM certificates WHERE subject LIKE ?", ("%race.test%",)).fetchall()
        assert [(r[0], r[1]) for r in rows] == [(first, "a")]
    finally:
        watcher.close()


def test_a_lease_taken_by_eight_writers_at_once_has_one_holder(url: str) -> None:
    invs = [Inventory(url=url) for _ in range(8)]
    try:
        for round_ in range(5):
            gate = threading.Barrier(len(invs))
            results: dict[int, Any] = {}

            def take(i: int, inv: Inventory, round_: int = round_, gate: threading.Barrier = gate,
                     results: dict[int, Any] = results) -> None:
                gate.wait()
                results[i] = leases.try_acquire(inv, "e2", f"holder-{round_}-{i}", round_)

            threads = [threading.Thread(target=take, args=(i, inv)) for i, inv in enumerate(invs)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            winners = [i for i, r in results.items() if r is None]
            assert len(results) == 8 and len(winners) == 1, results
            held = leases.current(invs[0], "e2")
            assert held is not None and held.holder == f"holder-{round_}-{winners[0]}"
            assert all(r.holder == held.holder for r in results.values() if r is not None)
            leases.release(invs[0], "e2", held.holder)
    finally:
        for inv in invs:
            inv.close()


def test_an_exclusive_writer_runs_alone(url: str, two: tuple[Inventory, Inventory]) -> None:
    a, b = two
    watcher = Inventory(url=url)
    try:
        def exclusive() -> None:
            with b.write() as db:
                db.execute("UPDATE endpoints SET updated = ? WHERE id = 'e2'", (now(),))

        with a.write(exclusive=False):
            a.audit("x", "ok")
            blocked = Later(exclusive)
            assert waits_on(watcher, pid(b)) == "advisory"  # the exclusive writer waits for the shared one
        blocked.value()
        with a.write():
            shared = Later(lambda: b.audit("y", "ok"))
            assert waits_on(watcher, pid(b)) == "advisory"  # and a shared one for the exclusive one
            a.db.execute("UPDATE endpoints SET updated = ? WHERE id = 'e1'",
                         (dt.datetime.now(dt.UTC).isoformat(),))
        shared.value()
    finally:
        watcher.close()


def test_an_exclusive_write_cannot_nest_in_a_shared_one(two: tuple[Inventory, Inventory]) -> None:
    a, _ = two
    with pytest.raises(RuntimeError, match="cannot nest"), a.write(exclusive=False), a.write():
        pass
    with a.write(), a.write(exclusive=False):  # the other way round is one exclusive transaction
        a.audit("nested", "ok")
    assert a.audit_log(limit=1)[0]["action"] == "nested"
