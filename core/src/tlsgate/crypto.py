"""Encryption of secrets at rest with the gateway's master key.

The key is ``TLSGATE_MASTER_KEY`` (a Fernet key, or any passphrase, stretched with scrypt), else
a random key in ``$TLSGATE_HOME/master.key`` created with mode 0600. Values are stored as
``enc:v1:<Fernet token>`` (AES-128-CBC + HMAC-SHA256, from ``cryptography``).

The inventory's ``meta`` table holds a key check value (a token of a fixed text sealed with the
key). A key is created only for an inventory that holds no secrets (no check value, no sealed
value): a missing ``master.key`` is never silently replaced, and a wrong key is refused before
anything is sealed with it. ``master.key`` is created atomically (written to a temporary file,
then linked into place), so a process starting at the same time never reads half a key.
"""

from __future__ import annotations

import base64
import os
import re
import sqlite3
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import OperationError
from .paths import home

if TYPE_CHECKING:  # cryptography loads with the first secret sealed or opened (start-up time)
    from cryptography.fernet import Fernet

PREFIX = "enc:v1:"
_SALT = b"tlsgate master key v1"  # fixed: the passphrase itself must carry the entropy


_CHECK_TEXT = b"tlsgate master key check v1"
_CHECK_KEY = "master_key_check"


@lru_cache(maxsize=8)
def _fernet_for(env_key: str | None, key_file: str, database: str = "") -> Fernet:
    # ``database`` (the URL, or "" for the SQLite file) is part of the cache key: a key checked
    # against one inventory is not taken as checked against another
    from cryptography.fernet import Fernet

    if env_key:
        try:
            f = Fernet(env_key.encode())
        except ValueError:
            from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

            kdf = Scrypt(salt=_SALT, length=32, n=2**15, r=8, p=1)
            f = Fernet(base64.urlsafe_b64encode(kdf.derive(env_key.encode())))
        _check(f, Path(key_file).parent, "TLSGATE_MASTER_KEY")
        return f
    path = Path(key_file)
    if not path.exists():
        if _holds_secrets(path.parent):
            raise OperationError(
                f"{path} is missing but the inventory holds secrets sealed with a master key; "
                "restore master.key or set TLSGATE_MASTER_KEY (no new key is created)")
        _create_key(path)
    try:
        f = Fernet(path.read_bytes().strip())
    except ValueError:
        raise OperationError(f"{path}: not a valid master key file") from None
    _check(f, path.parent, str(path))
    return f


def _create_key(path: Path) -> None:
    """Write a new key under a temporary name, then link it into place: readers see no file or
    the whole key; of several processes creating at once, the first link wins, the rest read it."""
    from cryptography.fernet import Fernet

    tmp = path.with_name(f".master.key.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key())
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
    finally:
        tmp.unlink(missing_ok=True)


def _db(directory: Path) -> Any:
    """The inventory's database: PostgreSQL when ``TLSGATE_DATABASE_URL`` names one (the check
    value lives with the secrets, shared by every gateway of the estate), else the SQLite file
    under ``directory`` (None when there is none yet)."""
    from .database import database_url

    url = database_url()
    if url:
        from .database import PostgresConnection

        return PostgresConnection(url)
    db_path = directory / "inventory.sqlite3"
    if not db_path.exists():
        return None
    db = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 30000")
    return db


def _has_table(db: Any, name: str) -> bool:
    if isinstance(db, sqlite3.Connection):
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    else:
        sql = "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?"
    return db.execute(sql, (name,)).fetchone() is not None


#: Where the inventory keeps values sealed with the master key: (table, column, what names the
#: owner in a message). Every sealed value is ``enc:v1:<token>``, alone or inside JSON.
SEALED = (
    ("endpoints", "connection", "name", "endpoint {!r}"),
    ("endpoints", "options", "name", "endpoint {!r}"),
    ("stores", "options", "name", "credential store {!r}"),
    ("store_secrets", "data", "store", "credential store {!r}"),
    ("certificates", "key", "id", "certificate ID {}"),
    ("acme_accounts", "data", "name", "ACME account {!r}"),
    ("dns_providers", "options", "name", "DNS provider {!r}"),
)
_TOKEN = re.compile(re.escape(PREFIX) + r"([A-Za-z0-9_\-]+=*)")


def _sealed(db: Any, limit: int | None = 1) -> list[tuple[str, str]]:
    """Up to ``limit`` sealed values of the inventory, as (owner, Fernet token)."""
    found: list[tuple[str, str]] = []
    like = f"%{PREFIX}%"
    for table, column, owner, label in SEALED:
        if not _has_table(db, table):
            continue
        rows = db.execute(f"SELECT {owner}, {column} FROM {table} WHERE {column} LIKE ?"  # noqa: S608 - constants
                          + (f" LIMIT {int(limit)}" if limit else ""), (like,)).fetchall()
        for row in rows:
            match = _TOKEN.search(row[1] or "")
            if match:
                found.append((label.format(row[0]), match.group(1)))
            if limit and len(found) >= limit:
                return found
    return found


def _holds_secrets(directory: Path) -> bool:
    """Whether the inventory has a key check value or any sealed value."""
    db = _db(directory)
    if db is None:
        return False
    try:
        if _has_table(db, "meta") and db.execute("SELECT 1 FROM meta WHERE key = ?", (_CHECK_KEY,)).fetchone():
            return True
        return bool(_sealed(db))
    finally:
        db.close()


def _check(f: Fernet, directory: Path, source: str) -> None:
    """Compare the key with the inventory's check value. An inventory without one (made before
    check values existed) that holds secrets gets one only once the key has decrypted one of
    them: an old inventory never adopts an unverified key; a key that cannot is refused, naming
    the endpoint (or store, certificate, account) whose secret it tried."""
    from cryptography.fernet import InvalidToken

    db = _db(directory)
    if db is None:
        return
    try:
        if not _has_table(db, "meta"):
            return
        row = db.execute("SELECT value FROM meta WHERE key = ?", (_CHECK_KEY,)).fetchone()
        if row is not None:
            try:
                f.decrypt(row[0].encode())
            except InvalidToken:
                raise OperationError(
                    f"the master key ({source}) is not the one this inventory's secrets were sealed with "
                    "(key check value differs); use the original key") from None
            return
        for owner, token in _sealed(db):
            try:
                f.decrypt(token.encode())
            except InvalidToken:
                raise OperationError(
                    f"the master key ({source}) cannot decrypt the secret of {owner}: it is not the key "
                    "this inventory's secrets were sealed with; use the original key (the inventory has no "
                    "key check value yet, so none is recorded for this one)") from None
        # recorded on the side: this process may itself hold the inventory's write lock (sealing
        # inside a transaction), so do not wait; a later process records it then
        if isinstance(db, sqlite3.Connection):
            db.execute("PRAGMA busy_timeout = 0")
        try:
            db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
                       (_CHECK_KEY, f.encrypt(_CHECK_TEXT).decode()))
        except sqlite3.Error:  # PostgreSQL's errors are mapped onto sqlite3's
            pass
    finally:
        db.close()


def fernet() -> Fernet:
    return _fernet_for(os.environ.get("TLSGATE_MASTER_KEY"), str(home() / "master.key"),
                       os.environ.get("TLSGATE_DATABASE_URL", ""))


def encrypt(value: str | bytes) -> str:
    data = value.encode() if isinstance(value, str) else value
    return PREFIX + fernet().encrypt(data).decode()


def decrypt_bytes(token: str) -> bytes:
    if not token.startswith(PREFIX):
        raise OperationError("stored secret is not in the expected encrypted form")
    from cryptography.fernet import InvalidToken

    try:
        return fernet().decrypt(token[len(PREFIX):].encode())
    except InvalidToken:
        raise OperationError(
            "cannot decrypt a stored secret: the master key (TLSGATE_MASTER_KEY or "
            "$TLSGATE_HOME/master.key) is not the one it was stored with"
        ) from None


def decrypt(token: str) -> str:
    return decrypt_bytes(token).decode()
