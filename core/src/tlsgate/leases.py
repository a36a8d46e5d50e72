"""Endpoint leases: at most one job changes an endpoint at a time, across threads, processes and
gateways sharing one inventory.

A lease is a row of the ``leases`` table (endpoint_id, holder, job_id, acquired, expires), taken
in ONE statement (an upsert that only overwrites a row whose ``expires`` has passed), renewed by a
heartbeat thread while held, and deleted on release. A holder that dies (kill -9, a lost host)
stops renewing, so its lease expires after the TTL; a holder on this host whose process is gone is
recognised at once (its pid is in the holder string) and its lease is broken without waiting.

The SQL is portable: ``?`` placeholders (the PostgreSQL backend translates them), timestamps
compared as fixed-width ISO-8601 UTC text computed in Python (no database date functions), and
``INSERT ... ON CONFLICT ... DO UPDATE ... WHERE``, which SQLite (3.24+) and PostgreSQL share.

Environment (seconds): ``TLSGATE_LEASE_TTL`` (default 30; the heartbeat renews every TTL/3),
``TLSGATE_LEASE_WAIT`` (default 60: how long a second job waits for a busy endpoint).
``TLSGATE_GATEWAY`` names this gateway in holders (default: the host name).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import attrs

from .errors import OperationError

if TYPE_CHECKING:
    from .inventory import Inventory

DEFAULT_TTL = 30.0
DEFAULT_WAIT = 60.0


class EndpointBusy(OperationError):
    """The endpoint is leased by another job and did not become free in time."""

    def __init__(self, message: str, *, endpoint: str, holder: str, job_id: int | None, since: str) -> None:
        self.endpoint = endpoint
        self.holder = holder
        self.job_id = job_id
        self.since = since
        super().__init__(message)


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        return default
    return value if value > 0 else default


def ttl() -> float:
    return _env_seconds("TLSGATE_LEASE_TTL", DEFAULT_TTL)


def wait_limit() -> float:
    return _env_seconds("TLSGATE_LEASE_WAIT", DEFAULT_WAIT)


def gateway_name() -> str:
    """This gateway's name: ``TLSGATE_GATEWAY`` or the host name."""
    return os.environ.get("TLSGATE_GATEWAY") or socket.gethostname() or "localhost"


def stamp(at: dt.datetime | None = None) -> str:
    """Fixed-width ISO-8601 UTC text (microseconds), so text order is time order everywhere."""
    return (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).isoformat(timespec="microseconds")


def new_holder() -> str:
    """A holder string: gateway/pid/random (unique per lease or job runner)."""
    return f"{gateway_name()}/{os.getpid()}/{secrets.token_hex(6)}"


def parse_holder(holder: str) -> tuple[str, int | None]:
    """(gateway, pid) of a holder string (pid None when it is not of our form)."""
    gw, _, rest = holder.partition("/")
    pid_text = rest.partition("/")[0]
    return gw, int(pid_text) if pid_text.isdigit() else None


def holder_dead(holder: str) -> bool:
    """True only when the holder is sure to be gone: it ran on this gateway and its process no
    longer exists. Holders elsewhere are judged by expiry alone."""
    gw, pid = parse_holder(holder)
    if gw != gateway_name() or pid is None:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    # a zombie (killed, not yet reaped by its parent) is gone too
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def describe_holder(holder: str) -> str:
    gw, pid = parse_holder(holder)
    return f"{gw} pid {pid}" if pid is not None else holder


@attrs.frozen
class LeaseInfo:
    endpoint_id: str
    holder: str
    job_id: int | None
    acquired: str
    expires: str


class Heartbeat:
    """A daemon thread that calls ``beat(inventory)`` every ``interval`` seconds on its OWN
    inventory connection (database connections are not shared across threads), opened lazily
    with ``reopen`` so short jobs never open one. ``beat`` returning False stops it."""

    def __init__(self, reopen: Callable[[], Inventory], beat: Callable[[Inventory], bool], interval: float,
                 name: str = "tlsgate-heartbeat") -> None:
        self._reopen = reopen
        self._beat = beat
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.failures = 0

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _run(self) -> None:
        inventory = None
        try:
            while not self._stop.wait(self._interval):
                try:
                    if inventory is None:
                        inventory = self._reopen()
                    if not self._beat(inventory):
                        return
                except Exception:  # noqa: BLE001 - a missed beat is retried; expiry is the backstop
                    self.failures += 1
        finally:
            if inventory is not None:
                inventory.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


class Lease:
    """A held lease. ``lost`` turns True if a renewal found the row gone or taken (the holder was
    stalled past the TTL); the owner then must not trust that it was alone."""

    def __init__(self, endpoint_id: str, endpoint_name: str, holder: str, job_id: int | None) -> None:
        self.endpoint_id = endpoint_id
        self.endpoint_name = endpoint_name
        self.holder = holder
        self.job_id = job_id
        self.lost = False
        self._heartbeat: Heartbeat | None = None

    def _renew(self, inventory: Inventory, lease_ttl: float) -> bool:
        expires = stamp(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lease_ttl))
        with inventory.write(exclusive=False, durable=False) as db:  # one statement (see tlsgate.database)
            cur = db.execute("UPDATE leases SET expires = ? WHERE endpoint_id = ? AND holder = ?",
                             (expires, self.endpoint_id, self.holder))
            ok = cur.rowcount == 1
        if not ok:
            self.lost = True
        return ok


def try_acquire(inventory: Inventory, endpoint_id: str, holder: str, job_id: int | None,
                lease_ttl: float | None = None) -> LeaseInfo | None:
    """Take the lease in one statement; None when taken. Returns the current holder's row when
    it is someone else's (as a LeaseInfo with that holder)."""
    lease_ttl = ttl() if lease_ttl is None else lease_ttl
    now = dt.datetime.now(dt.UTC)
    now_s = stamp(now)
    expires = stamp(now + dt.timedelta(seconds=lease_ttl))
    with inventory.write(exclusive=False, durable=False) as db:  # one statement (see tlsgate.database)
        cur = db.execute(
            "INSERT INTO leases(endpoint_id, holder, job_id, acquired, expires) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(endpoint_id) DO UPDATE SET holder = excluded.holder, job_id = excluded.job_id, "
            "acquired = excluded.acquired, expires = excluded.expires WHERE leases.expires < ?",
            (endpoint_id, holder, job_id, now_s, expires, now_s),
        )
        if cur.rowcount == 1:
            return None
        row = db.execute("SELECT endpoint_id, holder, job_id, acquired, expires FROM leases WHERE endpoint_id = ?",
                         (endpoint_id,)).fetchone()
    if row is None:  # released between the two statements: try again at once
        return LeaseInfo(endpoint_id, "", None, now_s, now_s)
    return _info(row)


def _info(row: Any) -> LeaseInfo:
    return LeaseInfo(row["endpoint_id"], row["holder"], row["job_id"], row["acquired"], row["expires"])


def break_dead(inventory: Inventory, info: LeaseInfo) -> bool:
    """Delete a lease whose holder is sure to be dead (see :func:`holder_dead`)."""
    if not info.holder or not holder_dead(info.holder):
        return False
    with inventory.write(exclusive=False, durable=False) as db:  # one statement (see tlsgate.database)
        cur = db.execute("DELETE FROM leases WHERE endpoint_id = ? AND holder = ?", (info.endpoint_id, info.holder))
        return cur.rowcount == 1


def release(inventory: Inventory, endpoint_id: str, holder: str) -> None:
    with inventory.write(exclusive=False, durable=False) as db:  # one statement (see tlsgate.database)
        db.execute("DELETE FROM leases WHERE endpoint_id = ? AND holder = ?", (endpoint_id, holder))


def current(inventory: Inventory, endpoint_id: str) -> LeaseInfo | None:
    """The live lease on an endpoint, if any (expired rows are not leases)."""
    row = inventory.db.execute(
        "SELECT endpoint_id, holder, job_id, acquired, expires FROM leases WHERE endpoint_id = ? AND expires >= ?",
        (endpoint_id, stamp()),
    ).fetchone()
    return _info(row) if row else None


def busy_message(endpoint_name: str, info: LeaseInfo) -> str:
    job = f"job {info.job_id}" if info.job_id is not None else "a job"
    return f"endpoint {endpoint_name} is busy ({job} on {describe_holder(info.holder)} since {info.acquired[:19]}Z)"


@contextmanager
def hold(
    inventory: Inventory,
    endpoint_id: str,
    endpoint_name: str,
    *,
    job_id: int | None = None,
    wait: float | None = None,
    lease_ttl: float | None = None,
) -> Iterator[Lease]:
    """Hold the endpoint's lease for the body: wait up to ``wait`` seconds for a busy endpoint
    (then raise :class:`EndpointBusy`), renew it from a heartbeat thread, release it at the end
    (also on errors; a killed process leaves it to expire)."""
    lease_ttl = ttl() if lease_ttl is None else lease_ttl
    wait = wait_limit() if wait is None else wait
    holder = new_holder()
    deadline = time.monotonic() + wait
    delay = 0.02
    while True:
        info = try_acquire(inventory, endpoint_id, holder, job_id, lease_ttl)
        if info is None:
            break
        if break_dead(inventory, info):
            continue
        if not info.holder:
            continue
        if time.monotonic() >= deadline:
            raise EndpointBusy(busy_message(endpoint_name, info), endpoint=endpoint_name, holder=info.holder,
                               job_id=info.job_id, since=info.acquired)
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.6, 0.5)
    lease = Lease(endpoint_id, endpoint_name, holder, job_id)
    lease._heartbeat = Heartbeat(inventory.reopen, lambda inv: lease._renew(inv, lease_ttl), lease_ttl / 3,
                                 name=f"tlsgate-lease-{endpoint_name}").start()
    try:
        yield lease
    finally:
        lease._heartbeat.stop()
        release(inventory, endpoint_id, holder)


def leases(inventory: Inventory) -> list[dict[str, Any]]:
    """Every live lease (for status output)."""
    rows = inventory.db.execute(
        "SELECT l.endpoint_id, e.name AS endpoint, l.holder, l.job_id, l.acquired, l.expires FROM leases l "
        "LEFT JOIN endpoints e ON e.id = l.endpoint_id WHERE l.expires >= ? ORDER BY l.acquired",
        (stamp(),),
    ).fetchall()
    return [dict(r) for r in rows]
