"""The inventory: one SQLite file under $TLSGATE_HOME (WAL, versioned schema, safe for several
``tlsgate`` processes at once), or one PostgreSQL database that several gateways share
(``TLSGATE_DATABASE_URL=postgresql://...``; see :mod:`tlsgate.database`). Both engines run the
same methods and the same numbered migrations; SQL is written once in the dialect both accept
(``?`` placeholders, ``ON CONFLICT``, ``COALESCE``, ISO text timestamps). Where a migration's SQL
must differ, ``_DIALECT_MIGRATIONS`` gives that engine's text for the same version.
Secrets are stored only encrypted (see :mod:`tlsgate.crypto`); the database alone never holds the
master key. The audit log is append-only: triggers refuse UPDATE and DELETE on it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shlex
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import crypto, database
from .errors import NotFoundError, OperationError, ValidationError
from .secret import SealedSecret, Secret
from .validate import SURROGATES, without_surrogates

if TYPE_CHECKING:  # the models (attrs) load where they are used: ``tls list`` needs none (start-up)
    from .models import ConnectionSpec, Endpoint, Node

SCHEMA_VERSION = 7

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE organizations (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL);
    CREATE TABLE departments (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
        name TEXT NOT NULL, created TEXT NOT NULL, UNIQUE (org_id, name));
    CREATE TABLE endpoints (
        id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
        connection TEXT NOT NULL, options TEXT NOT NULL,
        org_id INTEGER REFERENCES organizations(id), dept_id INTEGER REFERENCES departments(id),
        created TEXT NOT NULL, updated TEXT NOT NULL);
    CREATE TABLE nodes (
        id INTEGER PRIMARY KEY,
        endpoint_id TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
        name TEXT NOT NULL, alias TEXT NOT NULL, protocol TEXT, ip TEXT, port INTEGER,
        fingerprint TEXT, subject TEXT, not_after TEXT, vendor TEXT, state TEXT, locator TEXT,
        discovered TEXT NOT NULL);
    CREATE INDEX nodes_endpoint ON nodes(endpoint_id);
    CREATE TABLE certificates (
        id INTEGER PRIMARY KEY AUTOINCREMENT, fingerprint TEXT NOT NULL UNIQUE,
        subject TEXT, issuer TEXT, names TEXT, not_before TEXT, not_after TEXT, pem TEXT,
        org_id INTEGER REFERENCES organizations(id), dept_id INTEGER REFERENCES departments(id),
        source TEXT NOT NULL, created TEXT NOT NULL);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, actor TEXT NOT NULL,
        action TEXT NOT NULL, endpoint_id TEXT, endpoint_name TEXT, result TEXT NOT NULL,
        before_fp TEXT, after_fp TEXT, details TEXT NOT NULL);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TABLE stores (
        name TEXT PRIMARY KEY, kind TEXT NOT NULL, options TEXT NOT NULL, created TEXT NOT NULL);
    CREATE TABLE store_secrets (
        store TEXT NOT NULL REFERENCES stores(name) ON DELETE CASCADE, cred_id TEXT NOT NULL,
        data TEXT NOT NULL, updated TEXT NOT NULL, PRIMARY KEY (store, cred_id));
    """,
    # The second wave: leases, jobs, the lifecycle, gateways and zones. Each feature owns its
    # tables; a later change adds a migration (3, 4, ...) rather than editing a released one.
    2: """
    -- a key check value of the master key (reliability: never re-create a key for an inventory
    -- that holds secrets); free-form settings
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    -- endpoint leases: at most one job changes an endpoint at a time, across processes and
    -- gateways; a lease whose holder died expires
    CREATE TABLE leases (
        endpoint_id TEXT PRIMARY KEY REFERENCES endpoints(id) ON DELETE CASCADE,
        holder TEXT NOT NULL, job_id INTEGER, acquired TEXT NOT NULL, expires TEXT NOT NULL);
    -- fleet jobs: one row per run, one item per endpoint
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, state TEXT NOT NULL,
        params TEXT NOT NULL, actor TEXT NOT NULL, gateway TEXT, created TEXT NOT NULL,
        started TEXT, finished TEXT, holder TEXT);
    CREATE TABLE job_items (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        endpoint_id TEXT, endpoint_name TEXT NOT NULL, zone TEXT NOT NULL DEFAULT 'default',
        state TEXT NOT NULL, reason TEXT, before_fp TEXT, after_fp TEXT, attempts INTEGER NOT NULL DEFAULT 0,
        gateway TEXT, started TEXT, finished TEXT, details TEXT NOT NULL DEFAULT '{}');
    CREATE INDEX job_items_job ON job_items(job_id);
    -- the lifecycle: ACME accounts and DNS providers (secrets sealed like every other)
    CREATE TABLE acme_accounts (
        name TEXT PRIMARY KEY, directory TEXT NOT NULL, email TEXT, uri TEXT,
        data TEXT NOT NULL, created TEXT NOT NULL);
    CREATE TABLE dns_providers (
        name TEXT PRIMARY KEY, kind TEXT NOT NULL, options TEXT NOT NULL, created TEXT NOT NULL);
    -- gateways (worker processes) and their zones
    CREATE TABLE gateways (
        name TEXT PRIMARY KEY, zones TEXT NOT NULL, host TEXT, version TEXT, plugins TEXT,
        started TEXT, heartbeat TEXT, running INTEGER NOT NULL DEFAULT 0);
    ALTER TABLE endpoints ADD COLUMN zone TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE audit ADD COLUMN gateway TEXT;
    -- certificates: the sealed private key (certificates whose key the inventory holds can be
    -- deployed by ID), the chain, where it came from, renewal, and what superseded it
    ALTER TABLE certificates ADD COLUMN key TEXT;
    ALTER TABLE certificates ADD COLUMN chain TEXT;
    ALTER TABLE certificates ADD COLUMN acme_account TEXT;
    ALTER TABLE certificates ADD COLUMN renewal TEXT;
    ALTER TABLE certificates ADD COLUMN superseded_by INTEGER REFERENCES certificates(id);
    CREATE INDEX nodes_fingerprint ON nodes(fingerprint);
    CREATE INDEX certificates_not_after ON certificates(not_after);
    """,
    # fleet jobs: the runner's heartbeat, so a job whose runner died (kill -9, a lost gateway)
    # is seen as interrupted even when it ran on another gateway
    3: """
    ALTER TABLE jobs ADD COLUMN heartbeat TEXT;
    """,
    # ACME renewal: a lease per certificate, so two renewal runs (two timers, two gateways) never
    # renew one certificate twice; the fleet's endpoint leases stay per endpoint.
    4: """
    CREATE TABLE certificate_leases (
        cert_id INTEGER PRIMARY KEY REFERENCES certificates(id) ON DELETE CASCADE,
        holder TEXT NOT NULL, acquired TEXT NOT NULL, expires TEXT NOT NULL);
    """,
    # the job queue (PostgreSQL): the procrastinate task that runs an item, NULL until deferred
    5: """
    ALTER TABLE job_items ADD COLUMN task_id INTEGER;
    """,
    # per-item parameters over the job's own (JSON, NULL: none): one renewal job deploys several
    # certificates, each item naming the certificate it installs and the one it replaces
    6: """
    ALTER TABLE job_items ADD COLUMN params TEXT;
    """,
    # every install reads its endpoint's journal and its own earlier writes from the audit log
    # (Inventory.journal / audit_details by endpoint): without an index each was a scan of every
    # endpoint's entries, LIKE-matching their JSON, so an install slowed with the whole log's size
    7: """
    CREATE INDEX audit_endpoint ON audit(endpoint_id);
    """,
}


# PostgreSQL's text of a migration where SQLite's does not run there. A version missing here runs
# SQLite's text through _postgresql_ddl (identity columns for INTEGER PRIMARY KEY); CREATE TRIGGER
# statements of SQLite's text are replaced by the "triggers" entry.
_DIALECT_MIGRATIONS: dict[str, dict[int, dict[str, list[str]]]] = {
    "postgresql": {
        1: {"triggers": [
            "CREATE FUNCTION tlsgate_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$",
            "CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit "
            "FOR EACH ROW EXECUTE FUNCTION tlsgate_audit_append_only()",
            "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit "
            "FOR EACH STATEMENT EXECUTE FUNCTION tlsgate_audit_append_only()",
        ]},
    },
}


def migration_statements(version: int, dialect: str) -> list[str]:
    """The statements of one migration for one engine ("sqlite" or "postgresql")."""
    statements = _split_sql(_MIGRATIONS[version])
    if dialect == "sqlite":
        return statements
    extra = _DIALECT_MIGRATIONS.get(dialect, {}).get(version, {})
    out = [_postgresql_ddl(s) for s in statements if not s.strip().upper().startswith("CREATE TRIGGER")]
    return out + list(extra.get("triggers", []))


def _postgresql_ddl(statement: str) -> str:
    import re

    statement = re.sub(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", "INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", statement)
    statement = re.sub(r"\bid INTEGER PRIMARY KEY\b", "id INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", statement)
    return statement.rstrip().rstrip(";")


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def actor() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def gateway_name() -> str:
    """The gateway this process acts as: ``TLSGATE_GATEWAY`` (a worker sets it to its
    ``--gateway``), else the host name. Recorded in audit entries, leases and job items."""
    import socket

    return os.environ.get("TLSGATE_GATEWAY") or socket.gethostname() or "localhost"


# -- secret-aware (de)serialisation -----------------------------------------------------------
def seal(value: Any) -> Any:
    """JSON-ready form of a value; Secrets become {"$secret": "enc:v1:..."}."""
    if isinstance(value, SealedSecret):
        return {"$secret": value.token}  # still sealed: kept as it is, no key needed
    if isinstance(value, Secret):
        return {"$secret": crypto.encrypt(value.reveal())}
    if isinstance(value, dict):
        return {k: seal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [seal(v) for v in value]
    return value


def unseal(value: Any, owner: str = "") -> Any:
    """The stored form back as values; sealed secrets become :class:`SealedSecret`, decrypted
    only where they are used (naming ``owner`` when the key cannot open them)."""
    if isinstance(value, dict):
        if set(value) == {"$secret"}:
            return SealedSecret(value["$secret"], owner)
        return {k: unseal(v, owner) for k, v in value.items()}
    if isinstance(value, list):
        return [unseal(v, owner) for v in value]
    return value


#: The largest integer SQLite and PostgreSQL store (bigint): an ID beyond it names no row.
MAX_ID = 2**63 - 1


def stored_id(value: int) -> bool:
    """Whether ``value`` can be an ID of a row (a larger one would not even bind as a parameter)."""
    return -MAX_ID - 1 <= value <= MAX_ID


def redact(value: Any) -> Any:
    """JSON-ready form for output: Secrets become "********"."""
    if isinstance(value, Secret):
        return str(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def url_without_userinfo(value: Any) -> Any:
    """``https://user:pw@host`` -> ``https://****@host`` (other values unchanged)."""
    if isinstance(value, str) and "://" in value and "@" in value.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = value.split("://", 1)
        netloc, sep, path = rest.partition("/")
        return f"{scheme}://****@{netloc.rsplit('@', 1)[1]}{sep}{path}"
    return value


# plain frozen dataclasses, not attrs: the records of a read (``tls list``) import no attrs
@dataclasses.dataclass(frozen=True, slots=True)
class CertificateRecord:
    id: int
    fingerprint: str
    subject: str | None
    issuer: str | None
    names: tuple[str, ...]
    not_before: str | None
    not_after: str | None
    organization: str | None
    department: str | None
    source: str
    created: str
    acme_account: str | None = None
    superseded_by: int | None = None
    has_key: bool = False
    renewal: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["names"] = list(self.names)
        return d


@dataclasses.dataclass(frozen=True, slots=True)
class StoredEndpoint:
    """An endpoint row whose options are kept raw (the type's plugin may not be installed)."""

    id: str
    name: str
    type: str
    connection: dict[str, Any]
    options: dict[str, Any]
    organization: str | None
    department: str | None
    created: str
    updated: str
    zone: str = "default"
    #: whether connection or options hold a sealed secret (else they are plain JSON values and
    #: need no redacting walk: ``tls list`` of 10,000 endpoints walked every value)
    sealed: bool = dataclasses.field(default=True, compare=False, repr=False)


#: One writer lock per SQLite file in this process, taken before ``BEGIN IMMEDIATE``. SQLite's
#: own busy handler waits for a writer by sleeping 1, 2, 5, 10 ... up to 100 ms between tries,
#: so 16 job threads queueing for the lock (an endpoint commits ~8 short transactions) slept
#: ~45% of their time, up to 1.8 s at once, while the lock was mostly free (measured, 60-endpoint
#: deploy with --parallel 16). Threads of this process now queue here and wake when the holder
#: commits; other processes still meet SQLite's lock and its busy handler, as before. Re-entrant,
#: and given up after the busy timeout (SQLite then decides), so no wait is longer than before.
_SQLITE_WRITERS: dict[str, threading.RLock] = {}
_SQLITE_WRITERS_GUARD = threading.Lock()


def _sqlite_writer(path: Path | str) -> Any:
    key = os.path.realpath(os.fspath(path))
    with _SQLITE_WRITERS_GUARD:
        lock = _SQLITE_WRITERS.get(key)
        if lock is None:
            lock = _SQLITE_WRITERS[key] = threading.RLock()
    return lock


def storable(text: str | None) -> str | None:
    r"""``text`` as the inventory can store it: a database holds UTF-8, and a name read from a
    configuration file in another encoding (a Latin-1 ``server_name``, a Latin-1 file name)
    arrives decoded with surrogateescape. Each such byte is kept as ``\xNN`` (as
    :func:`tlsgate.cli.output.escape` shows it), any other lone surrogate as ``\uNNNN``: the
    row is stored and shown, where storing it raised UnicodeEncodeError before."""
    if text is None or not SURROGATES.search(text):
        return text
    return without_surrogates(text)


class Inventory:
    """The inventory on one engine: ``Inventory(path)`` opens (creating) the SQLite file;
    ``Inventory(url="postgresql://...")`` a PostgreSQL database. Opening migrates the schema."""

    _write_depth = 0  # nesting of write(): only the outermost begins and commits
    _write_durable = True  # whether the open write transaction's commit waits for the disk
    _sync_relaxed = False  # the connection is at synchronous = NORMAL (a non-durable write's)

    def __init__(self, path: Path | None = None, *, url: str | None = None, migrate: bool = True) -> None:
        from .paths import home

        self.url = url
        if url is not None:
            self.path = path or home() / "inventory.sqlite3"  # not used: the state is in PostgreSQL
            self.db: Any = database.PostgresConnection(url)
        else:
            if path is None:
                raise TypeError("Inventory needs a SQLite path or a PostgreSQL url")
            self.path = path
            self.db = database.connect_sqlite(path)
        self.dialect = database.dialect_of(self.db)
        if migrate:
            self.migrate()

    @property
    def location(self) -> str:
        """Where the inventory lives, for output (a PostgreSQL URL without its password)."""
        return database.redact_url(self.url) if self.url else str(self.path)

    def close(self) -> None:
        self.db.close()

    def reopen(self) -> Inventory:
        """A new connection to the same inventory (for another thread: connections are not
        shared across threads)."""
        return type(self)(self.path, url=self.url)

    @contextmanager
    def write(self, *, exclusive: bool = True, durable: bool = True) -> Iterator[Any]:
        """A write transaction that takes the database's writer lock at once (no upgrade
        deadlocks): SQLite's BEGIN IMMEDIATE, PostgreSQL's transaction advisory lock. Nested in
        another ``write()`` of this connection, it is part of that one transaction (one commit).

        ``exclusive=False`` (PostgreSQL; SQLite has one writer whatever is asked): the lock is
        taken shared, so such writers run concurrently and only an exclusive writer waits for
        them. For code that stays correct next to a concurrent writer (see
        :mod:`tlsgate.database`): single statements, ``ON CONFLICT`` upserts, and
        :meth:`lock_endpoint` before replacing an endpoint's rows. An exclusive write cannot
        nest in a shared one (it would have to upgrade the lock: two upgraders deadlock).

        ``durable=False`` (SQLite): the commit does not wait for the disk (``synchronous =
        NORMAL`` for it; the default is FULL, an fsync of the write-ahead log per commit). For
        coordination rows only -- leases, heartbeats, an item's "running" mark: such a commit
        survives a killed process like any other (it is in the log file); only a power loss can
        lose it, and only until the next durable commit, whose fsync of the log covers every
        earlier commit (an install's "started" audit entry is one, before the endpoint is
        touched). A durable write cannot join a non-durable one (SQLite fixes the level at
        BEGIN): that is a programming error. Under load an fsync here cost ~1.7 ms, and a fleet
        deploy commits ~9 times per endpoint."""
        if self._write_depth:
            if exclusive and getattr(self.db, "shared_transaction", False):
                raise RuntimeError("an exclusive inventory write cannot nest in a shared one (exclusive=False)")
            if durable and not self._write_durable:
                raise RuntimeError("a durable inventory write cannot join a non-durable transaction")
            self._write_depth += 1
            try:
                yield self.db
            finally:
                self._write_depth -= 1
            return
        relaxed = not durable and self.dialect == "sqlite"
        if relaxed or self._sync_relaxed:  # (outside any transaction here)
            self.db.execute(f"PRAGMA synchronous = {'NORMAL' if relaxed else 'FULL'}")
            self._sync_relaxed = relaxed
        self._write_durable = durable or self.dialect != "sqlite"
        writer = None
        if self.dialect == "sqlite" and os.fspath(self.path) not in ("", ":memory:"):
            writer = _sqlite_writer(self.path)
            if not writer.acquire(timeout=30):  # the busy timeout: SQLite's lock decides
                writer = None
        try:
            if exclusive or self.dialect != "postgresql":
                self.db.execute("BEGIN IMMEDIATE")
            else:
                self.db.begin_shared()
            self._write_depth = 1
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            else:
                self.db.execute("COMMIT")
            finally:
                self._write_depth = 0
                self._write_durable = True
        finally:
            if writer is not None:
                writer.release()
            if relaxed and not self.db.in_transaction:
                # back to FULL for every other statement of this connection (else the next
                # write() sets it: a failed COMMIT leaves the transaction open)
                self.db.execute("PRAGMA synchronous = FULL")
                self._sync_relaxed = False

    def lock_endpoint(self, db: Any, endpoint_id: str) -> None:
        """Inside a write: the endpoint's row locked until commit (PostgreSQL; a SQLite writer
        is alone anyway), so two shared writers replacing its rows take turns."""
        if self.dialect == "postgresql":
            db.lock_endpoint(endpoint_id)

    def schema_version(self) -> int:
        if self.dialect == "sqlite":
            return int(self.db.execute("PRAGMA user_version").fetchone()[0])
        row = self.db.execute(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_name = 'tlsgate_schema'").fetchone()
        if not row[0]:
            return 0
        return int(self.db.execute("SELECT COALESCE(MAX(version), 0) FROM tlsgate_schema").fetchone()[0])

    def _set_schema_version(self, db: Any, version: int) -> None:
        if self.dialect == "sqlite":
            db.execute(f"PRAGMA user_version = {int(version)}")
        else:
            db.execute("CREATE TABLE IF NOT EXISTS tlsgate_schema (version INTEGER PRIMARY KEY, applied TEXT NOT NULL)")
            db.execute("INSERT INTO tlsgate_schema(version, applied) VALUES (?, ?)", (version, now()))

    def migrate(self) -> tuple[int, int]:
        """Apply the pending migrations (each engine's text, one transaction under the writer
        lock, so gateways starting at once migrate once); returns (version before, after)."""
        with self.write() as db:
            current = self.schema_version()
            if current > SCHEMA_VERSION:
                raise ValidationError(
                    f"{self.location}: inventory schema {current} is newer than this tlsgate ({SCHEMA_VERSION})"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in migration_statements(version, self.dialect):
                    db.execute(statement)
                self._set_schema_version(db, version)
            if self.dialect == "postgresql":
                from . import queue

                queue.ensure_schema(db)
        if self.dialect == "postgresql":
            self.db.forget_schema()
        return current, max(current, SCHEMA_VERSION)

    # -- organizations --------------------------------------------------------------------------
    def add_org(self, name: str) -> int:
        _check_name(name, "organization")
        with self.write() as db:
            try:
                return int(db.execute("INSERT INTO organizations(name, created) VALUES (?, ?)", (name, now())).lastrowid)  # type: ignore[arg-type]
            except sqlite3.IntegrityError:
                raise ValidationError(f"organization {name!r} already exists") from None

    def add_department(self, org: str, name: str) -> int:
        _check_name(name, "department")
        with self.write() as db:
            org_id = self._org_id(org)
            try:
                cur = db.execute("INSERT INTO departments(org_id, name, created) VALUES (?, ?, ?)", (org_id, name, now()))
            except sqlite3.IntegrityError:
                raise ValidationError(f"department {name!r} already exists in {org!r}") from None
            return int(cur.lastrowid)  # type: ignore[arg-type]

    def orgs(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT id, name FROM organizations ORDER BY name").fetchall()
        out = []
        for row in rows:
            depts = [r["name"] for r in self.db.execute(
                "SELECT name FROM departments WHERE org_id = ? ORDER BY name", (row["id"],))]
            out.append({"name": row["name"], "departments": depts})
        return out

    def _org_id(self, org: str) -> int:
        row = self.db.execute("SELECT id FROM organizations WHERE name = ?", (org,)).fetchone()
        if row is None:
            raise NotFoundError(f"no organization named {org!r} (create it with: tlsgate org add {shlex.quote(org)})", option="--org")
        return int(row["id"])

    def _dept_id(self, org_id: int, dept: str) -> int:
        row = self.db.execute("SELECT id FROM departments WHERE org_id = ? AND name = ?", (org_id, dept)).fetchone()
        if row is None:
            raise NotFoundError(f"no department named {dept!r} in that organization", option="--department")
        return int(row["id"])

    def org_ids(self, org: str, dept: str | None) -> tuple[int, int | None]:
        org_id = self._org_id(org)
        return org_id, (self._dept_id(org_id, dept) if dept else None)

    # -- endpoints ------------------------------------------------------------------------------
    def add_endpoint(self, endpoint: Endpoint, options: dict[str, Any], *, zone: str = "default") -> None:
        crypto.fernet()  # key checked (or created, with its check value) before the write lock
        with self.write() as db:
            try:
                db.execute(
                    "INSERT INTO endpoints(id, name, type, connection, options, zone, created, updated) VALUES (?,?,?,?,?,?,?,?)",
                    (endpoint.instance_id, endpoint.name, endpoint.type,
                     json.dumps(seal(connection_to_dict(endpoint.connection))),
                     json.dumps(seal(options)), zone, now(), now()),
                )
            except sqlite3.IntegrityError:
                raise ValidationError(f"an endpoint named {endpoint.name!r} already exists", option="--name") from None

    def update_endpoint(self, endpoint: Endpoint, options: dict[str, Any], *, zone: str | None = None) -> None:
        """Replace an endpoint's connection and options, and its zone when given (same ID:
        delegation, nodes, history kept)."""
        crypto.fernet()
        connection = json.dumps(seal(connection_to_dict(endpoint.connection)))
        sealed = json.dumps(seal(options))
        with self.write() as db:
            cur = db.execute("UPDATE endpoints SET connection = ?, options = ?, updated = ? WHERE id = ?",
                             (connection, sealed, now(), endpoint.instance_id))
            if cur.rowcount == 0:
                raise NotFoundError(f"no endpoint with ID {endpoint.instance_id!r}")
            if zone is not None:
                db.execute("UPDATE endpoints SET zone = ? WHERE id = ?", (zone, endpoint.instance_id))

    def endpoint_names(self) -> set[str]:
        return {r["name"] for r in self.db.execute("SELECT name FROM endpoints")}

    def _endpoint_row(self, ref: str) -> sqlite3.Row:
        row = self.db.execute(
            "SELECT e.*, o.name AS org, d.name AS dept FROM endpoints e "
            "LEFT JOIN organizations o ON o.id = e.org_id LEFT JOIN departments d ON d.id = e.dept_id "
            "WHERE e.id = ? OR e.name = ? ORDER BY e.id = ? DESC LIMIT 1",
            (ref, ref, ref),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no endpoint named or with ID {ref!r} (see: tlsgate tls list)")
        return row

    def get_endpoint(self, ref: str) -> StoredEndpoint:
        return _stored(self._endpoint_row(ref))

    def endpoints(self) -> list[StoredEndpoint]:
        rows = self.db.execute(
            "SELECT e.*, o.name AS org, d.name AS dept FROM endpoints e "
            "LEFT JOIN organizations o ON o.id = e.org_id LEFT JOIN departments d ON d.id = e.dept_id "
            "ORDER BY e.name"
        ).fetchall()
        return [_stored(r) for r in rows]

    def endpoint_views(self, insecure: Callable[[], Collection[str]]) -> list[dict[str, Any]]:
        """:func:`endpoint_view` of every endpoint, ordered by name, straight from the rows (no
        :class:`StoredEndpoint`; one JSON parse per row): ``tls list`` of 10,000 endpoints.
        ``insecure()``: the connection types that skip TLS verification (asked only when an
        endpoint is stored: it may need the plugins' declarations)."""
        rows = self.db.execute(
            "SELECT e.id, e.name, e.type, '[' || e.connection || ',' || e.options || ']' AS stored, e.zone, "
            "e.created, e.updated, o.name AS org, d.name AS dept FROM endpoints e "
            "LEFT JOIN organizations o ON o.id = e.org_id LEFT JOIN departments d ON d.id = e.dept_id "
            "ORDER BY e.name"
        ).fetchall()
        loads = json.loads
        views = []
        skips = insecure() if rows else ()
        for r in rows:
            text = r["stored"]
            connection, options = loads(text)
            if '"$secret"' in text:
                owner = f"endpoint {r['name']!r}"
                connection, options = redact(unseal(connection, owner)), redact(unseal(options, owner))
            views.append({
                "instance_id": r["id"], "name": r["name"], "type": r["type"], "connection": connection,
                "insecure": connection.get("type", "") in skips, "options": options,
                "organization": r["org"], "department": r["dept"], "zone": r["zone"] or "default",
                "created": r["created"], "updated": r["updated"],
            })
        return views

    def remove_endpoint(self, ref: str) -> StoredEndpoint:
        stored = self.get_endpoint(ref)
        with self.write() as db:
            db.execute("DELETE FROM endpoints WHERE id = ?", (stored.id,))
        return stored

    def delegate(self, ref: str, org: str, dept: str | None) -> None:
        stored = self.get_endpoint(ref)
        org_id, dept_id = self.org_ids(org, dept)
        with self.write() as db:
            db.execute("UPDATE endpoints SET org_id = ?, dept_id = ?, updated = ? WHERE id = ?",
                       (org_id, dept_id, now(), stored.id))

    def set_zone(self, ref: str, zone: str) -> StoredEndpoint:
        """Move an endpoint to another zone (the workers of that zone run its tasks from now on)."""
        stored = self.get_endpoint(ref)
        with self.write() as db:
            db.execute("UPDATE endpoints SET zone = ?, updated = ? WHERE id = ?", (zone, now(), stored.id))
        return self.get_endpoint(stored.id)

    # -- nodes ----------------------------------------------------------------------------------
    def replace_nodes(self, endpoint_id: str, nodes: Sequence[Node]) -> None:
        from json.encoder import encode_basestring_ascii as quoted

        stamp = now()
        # 10,000 rows in 5 ms rather than 26: the aliases written as json.dumps(list(alias))
        # writes them (the same text; dumps built an encoder per call), each distinct expiry
        # turned into text once (nodes share their certificates)
        expiry: dict[Any, str | None] = {None: None}
        rows = []
        for n in nodes:
            na = n.not_after
            try:
                text = expiry[na]
            except KeyError:
                text = expiry[na] = na.isoformat()  # type: ignore[union-attr]
            rows.append((endpoint_id, n.name, "[" + ", ".join(map(quoted, n.alias)) + "]", n.protocol, n.ip,
                         n.port, n.fingerprint, n.subject, text, n.vendor, n.state, n.locator, stamp))
        insert = ("INSERT INTO nodes(endpoint_id, name, alias, protocol, ip, port, fingerprint, subject, not_after, "
                  "vendor, state, locator, discovered) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")
        with self.write(exclusive=False) as db:
            self.lock_endpoint(db, endpoint_id)  # a concurrent replace would add its rows to ours
            if self._stored_as(db, endpoint_id, rows):
                # the same nodes in the same order (a rediscovery of an unchanged server): only
                # their time of discovery changes, one UPDATE instead of deleting and inserting
                # every row with its two index entries (10,000 nodes: ~40 ms against ~160 ms)
                db.execute("UPDATE nodes SET discovered = ? WHERE endpoint_id = ?", (stamp, endpoint_id))
                return
            db.execute("DELETE FROM nodes WHERE endpoint_id = ?", (endpoint_id,))
            try:
                db.executemany(insert, rows)
            except UnicodeEncodeError:
                # a name or path in another encoding (lone surrogates): the rows again, those
                # bytes as \xNN (storable). Only then: no check of every field of 20,000 nodes
                # on the usual path. The rows inserted before the failure go first.
                db.execute("DELETE FROM nodes WHERE endpoint_id = ?", (endpoint_id,))
                db.executemany(insert, [
                    (*(storable(v) if isinstance(v, str) else v for v in row[:2]),
                     "[" + ", ".join(map(quoted, map(storable, n.alias))) + "]",  # type: ignore[arg-type]
                     *(storable(v) if isinstance(v, str) else v for v in row[3:]))
                    for row, n in zip(rows, nodes, strict=True)])

    def _stored_as(self, db: Any, endpoint_id: str, rows: Sequence[tuple[Any, ...]]) -> bool:
        """Whether the endpoint's stored nodes are ``rows`` (as :meth:`replace_nodes` builds them)
        field for field and in order, their time of discovery aside."""
        query = ("SELECT name, alias, protocol, ip, port, fingerprint, subject, not_after, vendor, state, locator "
                 "FROM nodes WHERE endpoint_id = ? ORDER BY id")
        if isinstance(db, sqlite3.Connection):
            cursor = db.cursor()
            cursor.row_factory = None  # plain tuples: a sqlite3.Row per node costs more than the compare
            stored = cursor.execute(query, (endpoint_id,)).fetchall()
        else:
            stored = [tuple(r) for r in db.execute(query, (endpoint_id,)).fetchall()]
        return len(stored) == len(rows) and all(
            old == new[1:12] for old, new in zip(stored, rows, strict=True))

    def node_keys(self, endpoint_id: str) -> set[tuple[str, str | None]]:
        """(Node.key, fingerprint) of every stored node: what changed since the last discovery,
        without building 20,000 Node objects."""
        query = "SELECT name, ip, port, locator, fingerprint FROM nodes WHERE endpoint_id = ?"
        if isinstance(self.db, sqlite3.Connection):
            cursor = self.db.cursor()
            cursor.row_factory = None  # plain tuples: a sqlite3.Row and five lookups by name per node cost more
            rows = cursor.execute(query, (endpoint_id,))
        else:
            rows = self.db.execute(query, (endpoint_id,))
        return {(f"{name}|{ip or ''}|{port or ''}|{locator or ''}", fp) for name, ip, port, locator, fp in rows}

    def ever_discovered(self, endpoint_id: str) -> bool:
        """Whether a discovery of the endpoint ever succeeded (its audit entry), so that "no
        node" means "none found" rather than "never looked"."""
        row = self.db.execute("SELECT 1 FROM audit WHERE endpoint_id = ? AND action = 'tls discover' AND result = 'ok' "
                              "LIMIT 1", (endpoint_id,)).fetchone()
        return row is not None

    def nodes(self, endpoint_id: str) -> list[Node]:
        from .models import Node

        rows = self.db.execute("SELECT * FROM nodes WHERE endpoint_id = ? ORDER BY id", (endpoint_id,)).fetchall()
        return [
            Node(name=r["name"], alias=tuple(json.loads(r["alias"])), protocol=r["protocol"], ip=r["ip"],
                 port=r["port"], fingerprint=r["fingerprint"], subject=r["subject"],
                 not_after=dt.datetime.fromisoformat(r["not_after"]) if r["not_after"] else None,
                 vendor=r["vendor"] or "", state=r["state"] or "", locator=r["locator"] or "")
            for r in rows
        ]

    _NODE_FROM = (
        "FROM nodes n JOIN endpoints e ON e.id = n.endpoint_id "
        "LEFT JOIN certificates c ON c.fingerprint = n.fingerprint AND c.org_id IS NOT NULL "
    )

    def _node_query(self, columns: str, endpoint_ids: Collection[str] | None) -> list[Any]:
        """``SELECT e.name, n.id, COLUMNS`` over the nodes (of ``endpoint_ids`` when given, else
        every node), ordered by endpoint name, then as discovered: one query, or for a selection
        batches by the nodes_endpoint index that stay under every engine's bound on parameters."""
        select = f"SELECT e.name, n.id, {columns} " + self._NODE_FROM
        if endpoint_ids is None:
            return self.db.execute(select + "ORDER BY e.name, n.id").fetchall()
        ids = list(dict.fromkeys(endpoint_ids))
        rows: list[Any] = []
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            rows += self.db.execute(select + f"WHERE n.endpoint_id IN ({','.join('?' * len(batch))})",
                                    batch).fetchall()
        rows.sort(key=lambda r: (r[0], r[1]))
        return rows

    def node_rows(self, endpoint_ids: Collection[str] | None = None) -> list[dict[str, Any]]:
        """Every stored node (of ``endpoint_ids`` when given) in ``tls nodes --json``'s shape,
        with its endpoint's name first and "ssl" last (the certificate ID when the served
        certificate is assigned to an organization, "External" when not, None without one),
        ordered by endpoint name, then as discovered: one query, no :class:`Node` objects
        (100,000 nodes: ~1 s less than building them)."""
        rows = self._node_query("n.name, n.alias, n.protocol, n.ip, n.port, n.fingerprint, n.subject, "
                                "n.not_after, n.vendor, n.state, n.locator, c.id", endpoint_ids)
        # every alias list (stored as JSON) in one parse, not one json.loads per node
        aliases = json.loads("[" + ",".join([r[3] for r in rows]) + "]")
        return [{
            "endpoint": endpoint, "name": name, "alias": alias, "protocol": protocol, "ip": ip, "port": port,
            "fingerprint": fp, "subject": subject, "not_after": not_after, "vendor": vendor or "",
            "state": state or "", "locator": locator or "",
            "ssl": None if not fp else (str(cid) if cid is not None else "External"),
        } for (endpoint, _id, name, _a, protocol, ip, port, fp, subject, not_after, vendor, state, locator, cid), alias
            in zip(rows, aliases, strict=True)]

    def node_rows_json(self, endpoint_ids: Collection[str] | None = None) -> list[str]:
        """:meth:`node_rows`, each row already a JSON object's text (the same keys, order and
        values). On SQLite the engine builds them (``json_object``, in C): for 100,000 nodes
        that is ~0.6 s less than Python tuples, then dicts, then the JSON encoder."""
        if self.dialect == "sqlite":
            built = ("json_object('endpoint', e.name, 'name', n.name, 'alias', json(n.alias), "
                     "'protocol', n.protocol, 'ip', n.ip, 'port', n.port, 'fingerprint', n.fingerprint, "
                     "'subject', n.subject, 'not_after', n.not_after, 'vendor', coalesce(n.vendor, ''), "
                     "'state', coalesce(n.state, ''), 'locator', coalesce(n.locator, ''), 'ssl', "
                     "CASE WHEN n.fingerprint IS NULL OR n.fingerprint = '' THEN NULL "
                     "WHEN c.id IS NOT NULL THEN CAST(c.id AS TEXT) ELSE 'External' END)")
            try:
                if endpoint_ids is None:  # every node: one column, plain tuples (no sqlite3.Row each)
                    cursor = self.db.cursor()
                    cursor.row_factory = None
                    rows = cursor.execute(f"SELECT {built} " + self._NODE_FROM + "ORDER BY e.name, n.id").fetchall()
                    return [r[0] for r in rows]
                return [r[2] for r in self._node_query(built, endpoint_ids)]
            except sqlite3.OperationalError:  # an SQLite built without its JSON functions (< 3.38)
                pass
        return [json.dumps(r, ensure_ascii=False) for r in self.node_rows(endpoint_ids)]

    # -- certificates ---------------------------------------------------------------------------
    def record_certificate(
        self, cert: Any, *, source: str, org_id: int | None = None, dept_id: int | None = None
    ) -> int:
        """Record a certificate (idempotent by fingerprint); assign it when org_id is given and it
        has no owner yet. Returns the certificate ID."""
        return self.record_certificates([cert], source=source, org_id=org_id, dept_id=dept_id)[0]

    def record_certificates(
        self, certs: Sequence[Any], *, source: str, org_id: int | None = None, dept_id: int | None = None
    ) -> list[int]:
        """:meth:`record_certificate` for many certificates in one write transaction (discovery
        records thousands: one transaction each cost a commit each). IDs in the order given."""
        from . import certs as c

        ids: list[int] = []
        # a shared write: INSERT ... ON CONFLICT DO NOTHING, not a read then an insert (a
        # concurrent writer recording the same certificate waits on the unique fingerprint and
        # then finds the row), and the owner set only where there is none, in the statement
        with self.write(exclusive=False) as db:
            for cert in certs:
                fp = c.fingerprint(cert)
                row = db.execute("SELECT id, org_id FROM certificates WHERE fingerprint = ?", (fp,)).fetchone()
                if row is None:
                    cur = db.execute(
                        "INSERT INTO certificates(fingerprint, subject, issuer, names, not_before, not_after, pem, "
                        "org_id, dept_id, source, created) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                        "ON CONFLICT(fingerprint) DO NOTHING",
                        (fp, c.subject_text(cert), cert.issuer.rfc4514_string(), json.dumps(c.dns_names(cert)),
                         cert.not_valid_before_utc.isoformat(), cert.not_valid_after_utc.isoformat(),
                         c.to_pem(cert).decode(), org_id, dept_id, source, now()),
                    )
                    if cur.rowcount == 1 and cur.lastrowid is not None:
                        ids.append(int(cur.lastrowid))
                        continue
                    # a concurrent writer recorded it first (PostgreSQL): its row
                    row = db.execute("SELECT id, org_id FROM certificates WHERE fingerprint = ?", (fp,)).fetchone()
                if org_id is not None and row["org_id"] is None:
                    db.execute("UPDATE certificates SET org_id = ?, dept_id = ? WHERE id = ? AND org_id IS NULL",
                               (org_id, dept_id, row["id"]))
                ids.append(int(row["id"]))
        return ids

    def record_certificate_with_key(
        self, bundle: Any, *, source: str, org_id: int | None = None, dept_id: int | None = None
    ) -> int:
        """Record a certificate with its private key and chain, the key sealed with the master key
        (as every secret), so that it can be deployed by ID later (:meth:`load_bundle`). Idempotent
        by fingerprint; an existing record without a key gets this one."""
        cert_id = self.record_certificate(bundle.leaf, source=source, org_id=org_id, dept_id=dept_id)
        key = crypto.encrypt(bundle.key_pem())
        chain = bundle.chain_pem().decode() or None
        with self.write() as db:
            db.execute("UPDATE certificates SET key = ?, chain = ? WHERE id = ? AND key IS NULL", (key, chain, cert_id))
        return cert_id

    def load_bundle(self, cert_id: int) -> Any:
        """The CertificateBundle of a certificate whose key the inventory holds (NotFoundError when
        there is no such certificate, ValidationError when its key is not held)."""
        from .bundle import CertificateBundle

        row = self.db.execute("SELECT pem, key, chain FROM certificates WHERE id = ?",
                              (cert_id,)).fetchone() if stored_id(cert_id) else None
        if row is None:
            raise NotFoundError(f"no certificate with ID {cert_id} (see: tlsgate cert list)")
        if not row["key"]:
            raise ValidationError(
                f"the inventory does not hold the private key of certificate {cert_id} (it was discovered, not "
                "installed by tlsgate): deploy it from files with --cert/--key or --pfx")
        return CertificateBundle.from_pem(row["pem"].encode(), crypto.decrypt_bytes(row["key"]),
                                          row["chain"].encode() if row["chain"] else None)

    def certificate(self, ref: int | str) -> CertificateRecord:
        """A certificate by ID or SHA-256 fingerprint (hex, colons allowed)."""
        text = str(ref).strip()
        if text.isdigit():
            row = self.db.execute(_CERT_SELECT + "WHERE c.id = ?", (int(text),)).fetchone() if stored_id(int(text)) else None
        else:
            row = self.db.execute(_CERT_SELECT + "WHERE c.fingerprint = ?", (normalize_fingerprint(text),)).fetchone()
        if row is None:
            raise NotFoundError(f"no certificate {text!r} in the inventory (see: tlsgate cert list)")
        return _cert_record(row)

    def has_key(self, cert_id: int) -> bool:
        if not stored_id(cert_id):
            return False
        row = self.db.execute("SELECT key FROM certificates WHERE id = ?", (cert_id,)).fetchone()
        return bool(row and row["key"])

    def serving_nodes(self, fingerprint: str | None = None) -> list[dict[str, Any]]:
        """Every node of the last discoveries (with its endpoint's name and type) that serves
        ``fingerprint`` (every node with a certificate when None)."""
        sql = _SERVING_SELECT
        if fingerprint is None:
            rows = self.db.execute(sql + "WHERE n.fingerprint IS NOT NULL ORDER BY e.name, n.id").fetchall()
        else:
            rows = self.db.execute(sql + "WHERE n.fingerprint = ? ORDER BY e.name, n.id", (fingerprint,)).fetchall()
        return [dict(r) for r in rows]

    def serving_nodes_of(self, fingerprints: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """:meth:`serving_nodes` of each fingerprint, in a query per 500 (``cert expiring`` of a
        fleet asked once per certificate)."""
        out: dict[str, list[dict[str, Any]]] = {fp: [] for fp in fingerprints}
        for r in self._rows_by_fingerprint(_SERVING_SELECT, list(out)):
            out[r["fingerprint"]].append(dict(r))
        return out

    def serving_node_names_of(self, fingerprints: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Each fingerprint's serving nodes as ``cert expiring`` lists them (endpoint, type, name,
        port), ordered as :meth:`serving_nodes_of`: only those columns, tuples made dicts at
        once (100,000 nodes: ~0.25 s less than full rows through sqlite3.Row and dict(row))."""
        out: dict[str, list[dict[str, Any]]] = {fp: [] for fp in fingerprints}
        for fp, endpoint, kind, name, port in self._rows_by_fingerprint(_SERVING_NAMES, list(out)):
            out[fp].append({"endpoint": endpoint, "type": kind, "name": name, "port": port})
        return out

    def _rows_by_fingerprint(self, select: str, fingerprints: list[str]) -> list[Any]:
        """``select`` (of nodes ``n`` joined with endpoints ``e``) for nodes serving any of
        ``fingerprints``, a query per 500 (under every engine's bound on parameters), each
        batch ordered by endpoint name, then as discovered."""
        rows: list[Any] = []
        for start in range(0, len(fingerprints), 500):
            chunk = fingerprints[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows += self.db.execute(select + f"WHERE n.fingerprint IN ({marks}) ORDER BY e.name, n.id",
                                    tuple(chunk)).fetchall()
        return rows

    def unrecorded_serving_nodes(self) -> list[dict[str, Any]]:
        """Nodes whose certificate the inventory holds no record of (discovery saw its
        fingerprint and end date but could not read the certificate itself: an F5 virtual server
        the gateway cannot reach, for one), with the subject and end date discovery saw."""
        rows = self.db.execute(
            "SELECT e.id AS endpoint_id, e.name AS endpoint, e.type AS type, n.name, n.port, n.protocol, "
            "n.fingerprint, n.subject, n.not_after, n.ip, n.state FROM nodes n JOIN endpoints e ON e.id = n.endpoint_id "
            "WHERE n.fingerprint IS NOT NULL AND n.not_after IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.fingerprint = n.fingerprint) ORDER BY e.name, n.id"
        ).fetchall()
        return [dict(r) for r in rows]

    def certificates(self) -> list[CertificateRecord]:
        rows = self.db.execute(
            "SELECT c.*, o.name AS org, d.name AS dept FROM certificates c LEFT JOIN organizations o ON o.id = c.org_id "
            "LEFT JOIN departments d ON d.id = c.dept_id ORDER BY c.id"
        ).fetchall()
        return [_cert_record(r) for r in rows]

    def certificate_ids_assigned(self) -> dict[str, int]:
        """fingerprint -> certificate ID, for certificates assigned to an organization."""
        rows = self.db.execute("SELECT id, fingerprint FROM certificates WHERE org_id IS NOT NULL").fetchall()
        return {r["fingerprint"]: int(r["id"]) for r in rows}

    def assign_certificate(self, cert_id: int, org: str, dept: str | None) -> None:
        org_id, dept_id = self.org_ids(org, dept)
        if not stored_id(cert_id):
            raise NotFoundError(f"no certificate with ID {cert_id} (see: tlsgate cert list)")
        with self.write() as db:
            cur = db.execute("UPDATE certificates SET org_id = ?, dept_id = ? WHERE id = ?", (org_id, dept_id, cert_id))
            if cur.rowcount == 0:
                raise NotFoundError(f"no certificate with ID {cert_id} (see: tlsgate cert list)")

    # -- the ACME lifecycle ------------------------------------------------------------------------
    def set_acme_facts(self, cert_id: int, account: str, renewal: dict[str, Any]) -> None:
        """Mark a certificate as issued through ACME ``account``, renewed with ``renewal`` settings."""
        with self.write() as db:
            db.execute("UPDATE certificates SET acme_account = ?, renewal = ?, source = ? WHERE id = ?",
                       (account, json.dumps(renewal), f"acme:{account}", cert_id))

    def set_superseded(self, old_id: int, new_id: int) -> None:
        with self.write() as db:
            db.execute("UPDATE certificates SET superseded_by = ? WHERE id = ?", (new_id, old_id))

    def take_certificate_lease(self, cert_id: int, holder: str, seconds: int = 900) -> bool:
        """Take (in one statement) the renewal lease of a certificate; False when another live
        holder has it. An expired lease (its holder died) is taken over."""
        stamp = dt.datetime.now(dt.UTC)
        expires = (stamp + dt.timedelta(seconds=seconds)).isoformat(timespec="seconds")
        with self.write() as db:
            cur = db.execute(
                "INSERT INTO certificate_leases(cert_id, holder, acquired, expires) VALUES (?,?,?,?) "
                "ON CONFLICT(cert_id) DO UPDATE SET holder = excluded.holder, acquired = excluded.acquired, "
                "expires = excluded.expires WHERE certificate_leases.expires < ? OR certificate_leases.holder = ?",
                (cert_id, holder, stamp.isoformat(timespec="seconds"), expires,
                 stamp.isoformat(timespec="seconds"), holder))
            return cur.rowcount == 1

    def release_certificate_lease(self, cert_id: int, holder: str) -> None:
        with self.write() as db:
            db.execute("DELETE FROM certificate_leases WHERE cert_id = ? AND holder = ?", (cert_id, holder))

    # -- ACME accounts and DNS providers ----------------------------------------------------------
    def add_acme_account(self, name: str, directory: str, email: str | None, uri: str, data: dict[str, Any]) -> None:
        _check_name(name, "ACME account")
        with self.write() as db:
            try:
                db.execute("INSERT INTO acme_accounts(name, directory, email, uri, data, created) VALUES (?,?,?,?,?,?)",
                           (name, directory, email, uri, json.dumps(seal(data)), now()))
            except sqlite3.IntegrityError:
                raise ValidationError(f"an ACME account named {name!r} already exists", option="NAME") from None

    def update_acme_account(self, name: str, uri: str, data: dict[str, Any]) -> None:
        """A new URI (the account registered again) and sealed data for an existing account."""
        with self.write() as db:
            db.execute("UPDATE acme_accounts SET uri = ?, data = ? WHERE name = ?", (uri, json.dumps(seal(data)), name))

    def acme_account(self, name: str) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM acme_accounts WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no ACME account named {name!r} (see: tlsgate acme list)", option="--acme")
        return {"name": row["name"], "directory": row["directory"], "email": row["email"], "uri": row["uri"],
                "created": row["created"], **unseal(json.loads(row["data"]))}

    def acme_accounts(self) -> list[dict[str, Any]]:
        names = [r["name"] for r in self.db.execute("SELECT name FROM acme_accounts ORDER BY name")]
        return [self.acme_account(n) for n in names]

    def remove_acme_account(self, name: str) -> None:
        self.acme_account(name)
        with self.write() as db:
            db.execute("DELETE FROM acme_accounts WHERE name = ?", (name,))

    def add_dns_provider(self, name: str, kind: str, options: dict[str, Any]) -> None:
        _check_name(name, "DNS provider")
        with self.write() as db:
            try:
                db.execute("INSERT INTO dns_providers(name, kind, options, created) VALUES (?,?,?,?)",
                           (name, kind, json.dumps(seal(options)), now()))
            except sqlite3.IntegrityError:
                raise ValidationError(f"a DNS provider named {name!r} already exists", option="NAME") from None

    def dns_provider(self, name: str) -> tuple[str, dict[str, Any]]:
        row = self.db.execute("SELECT kind, options FROM dns_providers WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no DNS provider named {name!r} (see: tlsgate dns list)", option="--dns")
        return row["kind"], unseal(json.loads(row["options"]))

    def dns_providers(self) -> list[dict[str, Any]]:
        return [{"name": r["name"], "kind": r["kind"], "options": redact(unseal(json.loads(r["options"])))}
                for r in self.db.execute("SELECT name, kind, options FROM dns_providers ORDER BY name")]

    def remove_dns_provider(self, name: str) -> None:
        self.dns_provider(name)
        with self.write() as db:
            db.execute("DELETE FROM dns_providers WHERE name = ?", (name,))

    # -- audit ----------------------------------------------------------------------------------
    def audit(
        self,
        action: str,
        result: str,
        *,
        endpoint: StoredEndpoint | Endpoint | None = None,
        before: str | None = None,
        after: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        eid = getattr(endpoint, "id", None) or getattr(endpoint, "instance_id", None)
        with self.write(exclusive=False) as db:  # one insert
            db.execute(
                "INSERT INTO audit(ts, actor, action, endpoint_id, endpoint_name, result, before_fp, after_fp, details, "
                "gateway) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (now(), actor(), action, eid, getattr(endpoint, "name", None), result, before, after,
                 json.dumps(redact(details or {})), gateway_name()),
            )

    def journal(self, endpoint_id: str | None = None) -> list[dict[str, Any]]:
        """Audit entries that name a backup set (the install journal), oldest first."""
        # portable SQL (SQLite and PostgreSQL): a LIKE pre-filter, the exact test on the parsed JSON
        sql = "SELECT id, result, endpoint_id, details FROM audit WHERE details LIKE ?"
        args: tuple[Any, ...] = ('%"backup"%',)
        if endpoint_id is not None:
            sql += " AND endpoint_id = ?"
            args += (endpoint_id,)
        out = []
        for r in self.db.execute(sql + " ORDER BY id", args).fetchall():
            details = json.loads(r["details"])
            if details.get("backup") is not None:
                out.append({"id": r["id"], "result": r["result"], "endpoint_id": r["endpoint_id"], "details": details})
        return out

    def revocations(self) -> dict[str, str]:
        """The reason of each certificate revoked through ``cert revoke`` (by fingerprint), from
        its audit entries."""
        rows = self.db.execute("SELECT before_fp, details FROM audit WHERE action = 'cert revoke' AND result = 'ok' "
                               "AND before_fp IS NOT NULL").fetchall()
        return {r["before_fp"]: str(json.loads(r["details"]).get("reason") or "unspecified") for r in rows}

    def audit_log(self, limit: int | None = None) -> list[dict[str, Any]]:
        if limit:
            rows = self.db.execute("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (int(limit),)).fetchall()
        else:
            rows = self.db.execute("SELECT * FROM audit ORDER BY id DESC").fetchall()
        return [
            {"id": r["id"], "time": r["ts"], "actor": r["actor"], "action": r["action"],
             "endpoint": r["endpoint_name"], "endpoint_id": r["endpoint_id"], "result": r["result"],
             "before": r["before_fp"], "after": r["after_fp"], "details": json.loads(r["details"]),
             "gateway": r["gateway"]}
            for r in reversed(rows)
        ]

    def audit_details(self, endpoint_id: str, action: str | tuple[str, ...]) -> list[dict[str, Any]]:
        """The ``details`` of one endpoint's audit entries of one action (or of several), oldest
        first (what an install needs of the log, without decoding every entry of every endpoint)."""
        actions = (action,) if isinstance(action, str) else tuple(action)
        marks = ", ".join("?" * len(actions))
        rows = self.db.execute(f"SELECT details FROM audit WHERE endpoint_id = ? AND action IN ({marks}) "  # noqa: S608
                               "ORDER BY id", (endpoint_id, *actions)).fetchall()
        return [json.loads(r["details"]) for r in rows]

    # -- credential stores ----------------------------------------------------------------------
    def add_store(self, name: str, kind: str, options: dict[str, Any]) -> None:
        _check_name(name, "store")
        crypto.fernet()  # key checked (or created, with its check value) before the write lock
        with self.write() as db:
            try:
                db.execute("INSERT INTO stores(name, kind, options, created) VALUES (?,?,?,?)",
                           (name, kind, json.dumps(seal(options)), now()))
            except sqlite3.IntegrityError:
                raise ValidationError(f"a credential store named {name!r} already exists", option="--name") from None

    def store(self, name: str) -> tuple[str, dict[str, Any]]:
        row = self.db.execute("SELECT kind, options FROM stores WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no credential store named {name!r} (see: tlsgate store list)", option="--store")
        return row["kind"], unseal(json.loads(row["options"]), f"credential store {name!r}")

    def stores(self) -> list[dict[str, Any]]:
        out = []
        for r in self.db.execute("SELECT name, kind, options FROM stores ORDER BY name"):
            out.append({"name": r["name"], "kind": r["kind"], "options": {k: url_without_userinfo(v) for k, v in
                                    redact(unseal(json.loads(r["options"]))).items()}})  # no key needed
        return out

    def remove_store(self, name: str) -> None:
        self.store(name)
        with self.write() as db:
            db.execute("DELETE FROM stores WHERE name = ?", (name,))

    def put_store_secret(self, store: str, cred_id: str, data: dict[str, str]) -> None:
        self.store(store)
        sealed = crypto.encrypt(json.dumps(data))
        with self.write() as db:
            db.execute(
                "INSERT INTO store_secrets(store, cred_id, data, updated) VALUES (?,?,?,?) "
                "ON CONFLICT(store, cred_id) DO UPDATE SET data = excluded.data, updated = excluded.updated",
                (store, cred_id, sealed, now()),
            )

    def get_store_secret(self, store: str, cred_id: str) -> dict[str, str]:
        row = self.db.execute("SELECT data FROM store_secrets WHERE store = ? AND cred_id = ?", (store, cred_id)).fetchone()
        if row is None:
            raise NotFoundError(f"credential store {store!r} has no entry {cred_id!r}", option="--store_cred_id")
        try:
            return dict(json.loads(crypto.decrypt(row["data"])))
        except OperationError as exc:
            raise OperationError(f"credential store {store!r} entry {cred_id!r}: {exc}") from None

    def store_secret_ids(self, store: str) -> list[str]:
        return [r["cred_id"] for r in self.db.execute(
            "SELECT cred_id FROM store_secrets WHERE store = ? ORDER BY cred_id", (store,))]


def endpoint_view(stored: StoredEndpoint, insecure: bool) -> dict[str, Any]:
    """JSON shape of a stored endpoint (secrets redacted), as ``tls list`` / ``tls show`` print
    it; ``insecure``: its connection type skips TLS verification."""
    return {
        "instance_id": stored.id,
        "name": stored.name,
        "type": stored.type,
        "connection": redact(stored.connection) if stored.sealed else stored.connection,
        "insecure": insecure,
        "options": redact(stored.options) if stored.sealed else stored.options,
        "organization": stored.organization,
        "department": stored.department,
        "zone": stored.zone,
        "created": stored.created,
        "updated": stored.updated,
    }


def connection_to_dict(spec: ConnectionSpec) -> dict[str, Any]:
    import attrs

    return {k: v for k, v in attrs.asdict(spec, recurse=False).items() if v not in (None, {})}


def connection_from_dict(data: dict[str, Any]) -> ConnectionSpec:
    from .models import ConnectionSpec

    return ConnectionSpec(**data)


def _stored(row: sqlite3.Row) -> StoredEndpoint:
    connection, options = row["connection"], row["options"]
    sealed = '"$secret"' in connection or '"$secret"' in options
    owner = f"endpoint {row['name']!r}" if sealed else ""
    return StoredEndpoint(
        id=row["id"], name=row["name"], type=row["type"],
        connection=_unseal_text(connection, owner), options=_unseal_text(options, owner),
        organization=row["org"], department=row["dept"], created=row["created"], updated=row["updated"],
        zone=row["zone"] or "default", sealed=sealed,
    )


def _unseal_text(text: str, owner: str = "") -> Any:
    """:func:`unseal` of stored JSON text; the walk only when the text holds a sealed value
    (``tls list`` of 10,000 endpoints walked every value of every endpoint)."""
    value = json.loads(text)
    return unseal(value, owner) if '"$secret"' in text else value


_SERVING_SELECT = ("SELECT e.id AS endpoint_id, e.name AS endpoint, e.type AS type, n.name, n.port, n.protocol, "
                   "n.fingerprint, n.not_after, n.ip, n.state FROM nodes n JOIN endpoints e ON e.id = n.endpoint_id ")
_SERVING_NAMES = "SELECT n.fingerprint, e.name, e.type, n.name, n.port FROM nodes n JOIN endpoints e ON e.id = n.endpoint_id "
_CERT_SELECT = ("SELECT c.*, o.name AS org, d.name AS dept FROM certificates c LEFT JOIN organizations o ON "
                "o.id = c.org_id LEFT JOIN departments d ON d.id = c.dept_id ")


def normalize_fingerprint(text: str) -> str:
    """A SHA-256 fingerprint as 64 lower-case hex digits (colons and spaces dropped); raises
    ValidationError otherwise."""
    hexed = text.replace(":", "").replace(" ", "").lower()
    if len(hexed) != 64 or any(ch not in "0123456789abcdef" for ch in hexed):
        raise ValidationError("must be a certificate ID or a SHA-256 fingerprint (64 hex digits, colons allowed)")
    return hexed


def _cert_record(r: sqlite3.Row) -> CertificateRecord:
    return CertificateRecord(
        id=int(r["id"]), fingerprint=r["fingerprint"], subject=r["subject"], issuer=r["issuer"],
        names=tuple(json.loads(r["names"] or "[]")), not_before=r["not_before"], not_after=r["not_after"],
        organization=r["org"], department=r["dept"], source=r["source"], created=r["created"],
        acme_account=r["acme_account"], superseded_by=r["superseded_by"], has_key=r["key"] is not None,
        renewal=json.loads(r["renewal"]) if r["renewal"] else None,
    )


def _check_name(name: str, what: str) -> None:
    from .validate import bad_character

    if not name or len(name) > 128 or bad_character(name) is not None or not name.strip():
        raise ValidationError(f"{what} name must be 1 to 128 printable characters, not only spaces")


def _split_sql(script: str) -> list[str]:
    """Statements of a migration script (triggers keep their inner ';')."""
    out, buf, depth = [], [], 0
    for line in script.strip().splitlines():
        buf.append(line)
        upper = line.strip().upper()
        if upper.startswith("CREATE TRIGGER"):
            depth = 1
        if depth and upper.endswith("END;"):
            depth = 0
            out.append("\n".join(buf))
            buf = []
        elif not depth and line.rstrip().endswith(";"):
            out.append("\n".join(buf))
            buf = []
    return [s for s in out if s.strip()]


def open_inventory(path: Path | None = None, *, migrate: bool = True) -> Inventory:
    """The configured inventory: PostgreSQL when ``TLSGATE_DATABASE_URL`` names one (and no path
    is given), else the SQLite file under ``$TLSGATE_HOME``."""
    from .paths import home

    url = None if path is not None else database.database_url()
    if url is not None:
        return Inventory(url=url, migrate=migrate)
    return Inventory(path or home() / "inventory.sqlite3", migrate=migrate)
