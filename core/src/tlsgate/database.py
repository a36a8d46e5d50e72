"""The inventory's two engines behind one small connection interface.

:class:`tlsgate.inventory.Inventory` writes its SQL once, in the dialect both engines accept
(``?`` placeholders, ``ON CONFLICT ... DO UPDATE``, ``COALESCE``, ISO-8601 text timestamps), and
talks to ``self.db``, which is either

* a plain :class:`sqlite3.Connection` (the embedded default, one file under ``$TLSGATE_HOME``), or
* a :class:`PostgresConnection` (psycopg 3), chosen by ``TLSGATE_DATABASE_URL=postgresql://...``.

:class:`PostgresConnection` offers the part of the sqlite3 API the inventory uses: ``execute`` /
``executemany`` returning a cursor with ``fetchone``, ``fetchall``, iteration, ``rowcount`` and
``lastrowid`` (an ``INSERT`` into a table with an identity ``id`` gets ``RETURNING id``), rows that
index by position and by name like :class:`sqlite3.Row`, and psycopg's integrity / database
errors raised as subclasses of sqlite3's, so an ``except sqlite3.IntegrityError`` in an inventory
method means the same on both engines.

Writers on PostgreSQL. A write transaction is ``BEGIN`` plus the inventory's writer lock, a
transaction-scoped advisory lock, in one of two modes:

* **exclusive** (``BEGIN`` / ``BEGIN IMMEDIATE`` through :meth:`PostgresConnection.execute`, and
  :meth:`Inventory.write` by default): the transaction runs alone, exactly as SQLite's
  ``BEGIN IMMEDIATE`` serialises writers, so any read-then-write inside it is safe;
* **shared** (:meth:`PostgresConnection.begin_shared`, ``Inventory.write(exclusive=False)``):
  shared writers run at the same time (PostgreSQL's row locks order them) and wait only for an
  exclusive one. Only code that is safe against a concurrent shared writer uses it: single
  statements (a lease upsert, a job item's state, an audit insert), ``INSERT ... ON CONFLICT``
  instead of a read then an insert, and a row lock (``SELECT ... FOR NO KEY UPDATE``) on the
  endpoint whose rows a transaction replaces. This is the per-endpoint work of a fleet job, so
  16 threads or two workers deploying to different endpoints no longer queue behind one lock.

psycopg is imported only when the URL is a PostgreSQL one.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

#: the variable that selects the engine; unset: the SQLite file under $TLSGATE_HOME
URL_VARIABLE = "TLSGATE_DATABASE_URL"
# one advisory lock key for "the inventory's writer" (pg_advisory_xact_lock takes a bigint)
WRITE_LOCK_KEY = 0x746C7367  # "tlsg"


class IntegrityError(sqlite3.IntegrityError):
    """A constraint refused a write (PostgreSQL's error, seen as sqlite3's)."""


class DatabaseError(sqlite3.DatabaseError):
    """Any other PostgreSQL error, seen as sqlite3's DatabaseError (the reason is kept)."""


def database_url() -> str | None:
    """The configured PostgreSQL URL, or None for the SQLite file."""
    url = os.environ.get(URL_VARIABLE, "").strip()
    if not url or url.startswith("sqlite:"):
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        from .errors import ValidationError

        raise ValidationError(f"{URL_VARIABLE} must be a postgresql:// URL (or unset for the SQLite file)")
    check_userinfo(url, URL_VARIABLE)
    return url


def check_userinfo(url: str, name: str) -> None:
    """Refuse a URL whose user name or password holds a bare '@': libpq ends the password at the
    first one and takes the rest for the host, which its errors then print (the password's tail)."""
    if url.split("://", 1)[-1].split("?", 1)[0].count("@") > 1:
        from .errors import ValidationError

        raise ValidationError(f"{name}: write '@' in the user name or password as %40 (only the one before "
                              "the host is literal)")


def sqlite_path_from_url(url: str) -> Path | None:
    """``sqlite:///abs/path`` -> the path; other URLs -> None."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite://"):])
    return None


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``****`` (for output and errors): the userinfo's,
    and libpq's ``password`` and ``sslpassword`` query parameters."""
    url = re.sub(r"(://[^:/@]*:).*@", r"\1****@", url)  # to the last '@': a password may hold any byte
    return re.sub(r"([?&](?:ssl)?password=)[^&#]*", r"\1****", url, flags=re.IGNORECASE)


class Row(Sequence[Any]):
    """A result row addressable by position and by column name, like :class:`sqlite3.Row`."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: Sequence[Any]) -> None:
        self._index = index
        self._values = tuple(values)

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._index)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


def _row_factory(cursor: Any) -> Any:
    if cursor.description is None:
        return None
    index: dict[str, int] = {}
    for i, col in enumerate(cursor.description):
        index.setdefault(col.name, i)
    return lambda values: Row(index, values)


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """sqlite3-style SQL -> psycopg: ``?`` outside quotes becomes ``%s``, ``%`` becomes ``%%``,
    ``INSERT OR IGNORE INTO`` becomes ``INSERT INTO ... ON CONFLICT DO NOTHING``.
    Hand-written because psycopg has no qmark paramstyle."""
    out: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(sql):
        ch = sql[i]
        if quote:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            end = len(sql) if end < 0 else end
            out.append(sql[i:end].replace("%", "%%").replace("?", " "))
            i = end
            continue
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
        i += 1
    text = "".join(out)
    if re.match(r"\s*INSERT\s+OR\s+IGNORE\s+INTO\b", text, re.IGNORECASE):
        text = re.sub(r"INSERT\s+OR\s+IGNORE\s+INTO", "INSERT INTO", text, count=1, flags=re.IGNORECASE)
        text = text.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    return text


_INSERT_TABLE = re.compile(r"\s*INSERT\s+INTO\s+\"?(\w+)\"?", re.IGNORECASE)


class PostgresCursor:
    """What ``PostgresConnection.execute`` returns: the sqlite3 cursor surface the inventory uses."""

    def __init__(self, cursor: Any, lastrowid: int | None = None, rows: list[Any] | None = None) -> None:
        self._cursor = cursor
        self.lastrowid = lastrowid
        self.rowcount = cursor.rowcount
        self._rows = rows

    def fetchone(self) -> Any:
        if self._rows is not None:
            return self._rows.pop(0) if self._rows else None
        if self._cursor.description is None:
            return None
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        if self._rows is not None:
            rows, self._rows = self._rows, []
            return rows
        if self._cursor.description is None:
            return []
        return list(self._cursor.fetchall())

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PostgresConnection:
    """A psycopg 3 connection with the sqlite3 connection surface the inventory uses.

    Autocommit outside :meth:`begin` (each statement its own transaction, as sqlite3 with
    ``isolation_level=None``); ``BEGIN``/``COMMIT``/``ROLLBACK`` through execute work as in SQLite;
    ``BEGIN IMMEDIATE`` takes the inventory's writer lock (exclusive; :meth:`begin_shared` takes
    it shared)."""

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        import psycopg

        self._psycopg = psycopg
        self.url = url
        try:
            self.raw = psycopg.connect(url, autocommit=True, row_factory=_row_factory, connect_timeout=30)
        except psycopg.Error as exc:
            from .errors import OperationError

            raise OperationError(f"inventory database: cannot connect to {redact_url(url)}: {_first_line(exc)}") from None
        self._identity_tables: set[str] | None = None
        self._shared = False

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> PostgresConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sqlite3.Connection surface ---------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> PostgresCursor:
        word = sql.strip().split(None, 1)[0].upper() if sql.strip() else ""
        if word == "BEGIN":
            self._shared = False
            self._execute_raw("BEGIN")
            self._execute_raw("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
            return PostgresCursor(self.raw.cursor())
        if word in ("COMMIT", "ROLLBACK", "END"):
            self._shared = False
            return PostgresCursor(self._execute_raw(word))
        text = translate(sql)
        if word == "INSERT" and " RETURNING " not in text.upper():
            match = _INSERT_TABLE.match(text)
            if match and match.group(1).lower() in self.identity_tables():
                cur = self._execute_raw(text + " RETURNING id", params)
                rows = list(cur.fetchall())
                return PostgresCursor(cur, lastrowid=rows[0][0] if rows else None, rows=[])
        return PostgresCursor(self._execute_raw(text, params))

    def begin_shared(self) -> None:
        """``BEGIN`` with the writer lock in shared mode: other shared writers run meanwhile (see
        the module's docstring for what may run so); an exclusive writer waits for them."""
        self._execute_raw("BEGIN")
        self._execute_raw("SELECT pg_advisory_xact_lock_shared(%s)", (WRITE_LOCK_KEY,))
        self._shared = True

    @property
    def shared_transaction(self) -> bool:
        """True inside a transaction opened by :meth:`begin_shared`."""
        return self._shared and self.in_transaction

    def lock_endpoint(self, endpoint_id: str) -> None:
        """Lock one endpoint's row until the transaction ends: the shared writers that replace
        that endpoint's rows (its nodes) take turns. ``NO KEY UPDATE``: the foreign-key checks of
        rows that reference the endpoint (``FOR KEY SHARE``) do not wait for it."""
        self._execute_raw("SELECT id FROM endpoints WHERE id = %s FOR NO KEY UPDATE", (endpoint_id,))

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> PostgresCursor:
        cur = self.raw.cursor()
        try:
            cur.executemany(translate(sql), list(seq))
        except self._psycopg.Error as exc:
            raise _mapped(self._psycopg, exc) from None
        return PostgresCursor(cur)

    def executescript(self, script: str) -> None:
        self._execute_raw(script, None)

    @property
    def in_transaction(self) -> bool:
        status = self.raw.info.transaction_status
        return status not in (self._psycopg.pq.TransactionStatus.IDLE, self._psycopg.pq.TransactionStatus.UNKNOWN)

    def _execute_raw(self, sql: str, params: Any = ()) -> Any:
        idle = not self.in_transaction
        try:
            return self.raw.execute(sql, params if params is not None else None, prepare=False)
        except self._psycopg.OperationalError as exc:
            # the server restarted or the network dropped: outside a transaction nothing is lost,
            # so connect again and run the statement once more (inside one, the caller's
            # transaction is gone and the error is theirs)
            if not (idle and self.raw.broken):
                raise _mapped(self._psycopg, exc) from None
            self._reconnect()
            try:
                return self.raw.execute(sql, params if params is not None else None, prepare=False)
            except self._psycopg.Error as exc2:
                raise _mapped(self._psycopg, exc2) from None
        except self._psycopg.Error as exc:
            raise _mapped(self._psycopg, exc) from None

    def _reconnect(self, attempts: int = 30, delay: float = 1.0) -> None:
        import time

        for attempt in range(attempts):
            try:
                self.raw = self._psycopg.connect(self.url, autocommit=True, row_factory=_row_factory,
                                                 connect_timeout=10)
                return
            except self._psycopg.OperationalError as exc:
                if attempt == attempts - 1:
                    raise _mapped(self._psycopg, exc) from None
                time.sleep(delay)

    def identity_tables(self) -> set[str]:
        """Tables whose ``id`` column the database numbers (identity or serial)."""
        if self._identity_tables is None:
            rows = self.raw.execute(
                "SELECT table_name FROM information_schema.columns WHERE column_name = 'id' "
                "AND table_schema = current_schema() AND (is_identity = 'YES' OR column_default LIKE 'nextval%%')"
            ).fetchall()
            self._identity_tables = {r[0].lower() for r in rows}
        return self._identity_tables

    def forget_schema(self) -> None:
        self._identity_tables = None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _mapped(psycopg: Any, exc: Any) -> sqlite3.Error:
    if isinstance(exc, psycopg.errors.IntegrityError):
        return IntegrityError(_first_line(exc))
    if isinstance(exc, psycopg.OperationalError | psycopg.errors.RaiseException | psycopg.DatabaseError):
        return DatabaseError(_first_line(exc))
    return DatabaseError(_first_line(exc))


def connect_sqlite(path: Path) -> sqlite3.Connection:
    """The embedded engine: WAL, foreign keys, a 30 s busy timeout, autocommit outside BEGIN."""
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    # check_same_thread off: a connection is used by one thread at a time, but a fleet run's
    # worker connections are closed by the thread that started the run
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA busy_timeout = 30000")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA journal_mode = WAL")
    return db


def dialect_of(db: Any) -> str:
    return "postgresql" if isinstance(db, PostgresConnection) else "sqlite"
