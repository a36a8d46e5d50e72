"""The inventory's two engines: placeholder translation (hypothesis), ``tlsgate db status |
migrate | copy`` through the CLI, and a SQLite inventory moved into a real PostgreSQL database
with its endpoints, nodes, certificates, audit log and sealed secrets unchanged."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlsgate.database import redact_url, translate

SECRET = "S3cr3t-moved-to-postgres"


def tg(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    full = {k: v for k, v in full.items() if v is not None}
    return subprocess.run([sys.executable, "-m", "tlsgate", *args], capture_output=True, text=True, input=stdin,
                          env=full, timeout=120)


def ok(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    res = tg(*args, **kw)  # type: ignore[arg-type]
    assert res.returncode == 0, f"{args}: {res.stderr}"
    return res


# -- translation ---------------------------------------------------------------------------------
_plain = st.text(alphabet=st.characters(blacklist_characters="'\"-%?", blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.tuples(_plain, st.sampled_from(["?", "%", "'a?%b'", '"c?"', ""])), max_size=8))
def test_translate_marks_only_placeholders_outside_quotes(parts: list[tuple[str, str]]) -> None:
    sql = "".join(a + b for a, b in parts)
    out = translate(sql)
    # undoing the translation (read left to right, as psycopg does) gives the input back
    assert re.sub(r"%%|%s", lambda m: "%" if m.group() == "%%" else "?", out) == sql
    outside = "".join(a + b for a, b in parts if not b.startswith(("'", '"')))
    assert re.findall(r"%%|%s", out).count("%s") == outside.count("?")
    # literals keep their question marks (psycopg sees no placeholder there)
    for _, b in parts:
        if b.startswith(("'", '"')):
            assert b.replace("%", "%%") in out


def test_translate_insert_or_ignore() -> None:
    assert translate("INSERT OR IGNORE INTO t(a) VALUES (?)") == "INSERT INTO t(a) VALUES (%s) ON CONFLICT DO NOTHING"


@given(user=st.text(alphabet="abcdefgh", min_size=1, max_size=8), password=st.text(
    alphabet=st.characters(blacklist_characters="@/", blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20))
def test_redact_url_hides_the_password(user: str, password: str) -> None:
    url = f"postgresql://{user}:{password}@127.0.0.1:5432/db"
    shown = redact_url(url)
    assert shown == f"postgresql://{user}:****@127.0.0.1:5432/db"
    from urllib.parse import quote

    assert redact_url(f"postgresql://{user}@h/db?password={quote(password, safe='')}&a=1") == \
        f"postgresql://{user}@h/db?password=****&a=1"


# -- db status / migrate on either engine ----------------------------------------------------
def test_db_status_and_migrate(tlsgate_home: Path, inventory_backend: str) -> None:
    ok("org", "add", "Acme")
    status = json.loads(ok("db", "status", "--json").stdout)
    assert status["engine"] == inventory_backend
    assert status["schema_version"] == status["latest_schema_version"] >= 2
    assert status["tables"]["organizations"] == 1 and status["tables"]["audit"] == 1
    assert ("queue" in status) == (inventory_backend == "postgresql")
    migrated = json.loads(ok("db", "migrate", "--json").stdout)
    assert migrated["from"] == migrated["to"] == status["schema_version"]
    assert "nothing to do" in ok("db", "migrate").stdout


def test_bad_database_url_is_exit_2(tlsgate_home: Path) -> None:
    res = tg("tls", "list", env={"TLSGATE_DATABASE_URL": "mysql://x"})
    assert res.returncode == 2 and res.stderr.startswith("error: TLSGATE_DATABASE_URL must be a postgresql:// URL")
    res = tg("db", "copy", "--to", "sqlite:///x")
    assert res.returncode == 2 and "--to: must be a postgresql:// URL" in res.stderr


def test_unreachable_postgres_fails_with_reason(tlsgate_home: Path) -> None:
    from tlsgate_testing.fixtures_core import free_port

    url = f"postgresql://nobody:pw-not-shown@127.0.0.1:{free_port()}/none"
    res = tg("tls", "list", env={"TLSGATE_DATABASE_URL": url})
    assert res.returncode == 1
    assert res.stderr.startswith("error: inventory database: cannot connect to postgresql://nobody:****@127.0.0.1")
    assert "pw-not-shown" not in res.stderr and "Traceback" not in res.stderr
    # libpq also takes the password as a query parameter (and sslpassword for the client key)
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/none?sslmode=disable&password=pw-in-query&sslpassword=kp"
    # a SQLite inventory for db copy to read (also on the PostgreSQL pass, whose URL is in the environment)
    ok("org", "add", "Acme", env={"TLSGATE_DATABASE_URL": None})  # type: ignore[dict-item]
    for res in (tg("db", "status", "--json", env={"TLSGATE_DATABASE_URL": url}), tg("db", "copy", "--to", url)):
        assert res.returncode == 1 and "sslmode=disable&password=****&sslpassword=****" in res.stderr
        assert "pw-in-query" not in res.stdout + res.stderr and "=kp" not in res.stdout + res.stderr
    # a bare '@' in the password: libpq takes its tail for the host name and prints it
    url = f"postgresql://nobody:pw@tail-not-shown@127.0.0.1:{free_port()}/none"
    for res in (tg("tls", "list", env={"TLSGATE_DATABASE_URL": url}), tg("db", "copy", "--to", url, "--json")):
        assert res.returncode == 2 and "as %40" in res.stderr, res.stderr
        assert "tail-not-shown" not in res.stdout + res.stderr and len(res.stderr.splitlines()) == 1


# -- db copy: SQLite -> PostgreSQL ----------------------------------------------------------------
def test_copy_sqlite_inventory_into_postgres(tmp_path: Path, postgres_database: str, test_ca,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("TLSGATE_HOME", str(home))
    monkeypatch.delenv("TLSGATE_DATABASE_URL", raising=False)
    folder = tmp_path / "certs"
    folder.mkdir()
    issued = test_ca.issue("svc.example.org")
    crt, key, chain = issued.write(tmp_path / "in", "svc")
    ok("org", "add", "Acme")
    ok("tls", "add", "certdir", "--name", "web", "--connection_type", "local", "--dir", str(folder))
    ok("tls", "add", "certdir", "--name", "remote", "--connection_type", "ssh", "--host", "127.0.0.1",
       "--user", "u", "--password", "-", "--dir", "/srv", stdin=SECRET + "\n")
    ok("tls", "delegate", "web", "--org", "Acme")
    ok("tls", "install", "web", "--cert", str(crt), "--key", str(key), "--chain", str(chain), "--alias", "svc")
    ok("tls", "discover", "web")
    ok("store", "add", "local", "--name", "gw")
    ok("store", "put", "gw", "--store_cred_id", "db", "--user", "u", "--password", "-", stdin=SECRET + "\n")
    views = ["tls list", "tls show remote", "tls nodes web", "cert list", "log", "store list", "org list"]
    before = {v: json.loads(ok(*v.split(), "--json").stdout) for v in views}

    res = ok("db", "copy", "--to", postgres_database, "--json")
    copied = json.loads(res.stdout)["rows"]
    assert copied["endpoints"] == 2 and copied["audit"] == len(before["log"]) and copied["certificates"] >= 1

    pg = {"TLSGATE_DATABASE_URL": postgres_database}
    after = {v: json.loads(ok(*v.split(), "--json", env=pg).stdout) for v in views}
    for v in views:
        if v != "log":
            assert after[v] == before[v], v
    # the audit log arrived whole and in order (IDs kept), followed by the copy's own entry
    assert after["log"][:-1] == before["log"]
    assert after["log"][-1]["action"] == "db copy"
    # the secrets were moved sealed: not in clear in the database, still readable with the key
    from tlsgate.inventory import Inventory
    from tlsgate_testing.postgres import database_text

    assert SECRET not in database_text(postgres_database)
    inv = Inventory(url=postgres_database)
    assert inv.get_store_secret("gw", "db")["password"] == SECRET
    assert inv.get_endpoint("remote").connection["password"].reveal() == SECRET
    # new rows continue after the copied IDs
    ok("org", "add", "Beta", env=pg)
    assert [o["name"] for o in json.loads(ok("org", "list", "--json", env=pg).stdout)] == ["Acme", "Beta"]
    inv.close()
    # a second copy into the same database is refused, nothing changed
    res = tg("db", "copy", "--to", postgres_database)
    assert res.returncode == 2 and "already holds an inventory" in res.stderr
    assert len(json.loads(ok("tls", "list", "--json", env=pg).stdout)) == 2


# -- zones ---------------------------------------------------------------------------------------
@given(zone=st.text(max_size=70))
def test_zone_names_are_validated(zone: str) -> None:
    import re

    from tlsgate.errors import ValidationError
    from tlsgate.queue import validate_zone, zone_queue

    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", zone):
        assert validate_zone(zone) == zone and zone_queue(zone) == f"zone:{zone}"
    else:
        with pytest.raises(ValidationError, match="--zone: a zone is 1 to 63"):
            validate_zone(zone)


def test_zone_on_add_show_and_audit_gateway(tlsgate_home: Path, tmp_path: Path) -> None:
    ok("tls", "add", "certdir", "--name", "z1", "--connection_type", "local", "--dir", str(tmp_path), "--zone", "dmz")
    ok("tls", "add", "certdir", "--name", "z2", "--connection_type", "local", "--dir", str(tmp_path))
    shown = {e["name"]: e["zone"] for e in json.loads(ok("tls", "list", "--json").stdout)}
    assert shown == {"z1": "dmz", "z2": "default"}
    res = tg("tls", "add", "certdir", "--name", "z3", "--connection_type", "local", "--dir", str(tmp_path),
             "--zone", "no spaces")
    assert res.returncode == 2 and res.stderr.startswith("error: --zone: a zone is 1 to 63")
    log = json.loads(ok("log", "--json", env={"TLSGATE_GATEWAY": "gw-test"}).stdout)
    assert log and all("gateway" in e for e in log)
    ok("org", "add", "Z", env={"TLSGATE_GATEWAY": "gw-test"})
    assert json.loads(ok("log", "--json").stdout)[-1]["gateway"] == "gw-test"


def test_threads_of_one_process_queue_for_the_sqlite_writer(tmp_path: Path) -> None:
    """A second thread's write transaction waits for the first one's commit on the process's
    writer lock (it wakes at the commit), not in SQLite's sleeping busy handler: with SQLite's
    own wait switched off, it still commits instead of failing 'database is locked'."""
    import threading

    from tlsgate.inventory import Inventory

    first = Inventory(tmp_path / "inventory.sqlite3")
    second = first.reopen()
    second.db.execute("PRAGMA busy_timeout = 0")
    outcome: list[object] = []

    def write_second() -> None:
        try:
            with second.write() as db:
                db.execute("INSERT INTO meta(key, value) VALUES ('second', '2')")
            outcome.append("committed")
        except Exception as exc:  # noqa: BLE001 - the test reports it
            outcome.append(exc)

    with first.write() as db:
        db.execute("INSERT INTO meta(key, value) VALUES ('first', '1')")
        thread = threading.Thread(target=write_second)
        thread.start()
        thread.join(0.3)
        assert thread.is_alive() and not outcome  # waiting for this commit
    thread.join(10)
    assert outcome == ["committed"]
    rows = dict(first.db.execute("SELECT key, value FROM meta WHERE key IN ('first', 'second')").fetchall())
    assert rows == {"first": "1", "second": "2"}
    first.close(), second.close()


def test_a_non_durable_write_commits_and_leaves_the_connection_durable(tmp_path: Path) -> None:
    """Leases and heartbeats commit without waiting for the disk (synchronous NORMAL for that
    commit only): the row is committed (another connection sees it), the connection is back at
    FULL afterwards, and a durable write cannot silently join a non-durable transaction."""
    from tlsgate.inventory import Inventory

    inv = Inventory(tmp_path / "inventory.sqlite3")
    other = inv.reopen()
    full = inv.db.execute("PRAGMA synchronous").fetchone()[0]
    assert full == 2  # FULL: every ordinary commit waits for the disk
    with inv.write(durable=False) as db:
        db.execute("INSERT INTO meta(key, value) VALUES ('lease', 'x')")
    assert other.db.execute("SELECT value FROM meta WHERE key = 'lease'").fetchone()[0] == "x"
    assert inv.db.execute("PRAGMA synchronous").fetchone()[0] == full
    with pytest.raises(RuntimeError, match="cannot join"), inv.write(durable=False), inv.write():
        pass
    assert not inv.db.in_transaction and inv.db.execute("PRAGMA synchronous").fetchone()[0] == full
    with inv.write() as db, inv.write(durable=False):  # the other way round: part of the durable one
        db.execute("INSERT INTO meta(key, value) VALUES ('audit', 'y')")
    assert other.db.execute("SELECT value FROM meta WHERE key = 'audit'").fetchone()[0] == "y"
    inv.close(), other.close()


def test_db_status_of_a_postgres_database_nobody_migrated_yet(tmp_path: Path, postgres_cluster,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # the first thing one types crashed: "internal error: relation procrastinate_jobs does not exist"
    name = f"empty_{os.getpid()}"
    postgres_cluster.admin(f"CREATE DATABASE {name}")
    monkeypatch.setenv("TLSGATE_HOME", str(tmp_path / "home"))
    res = tg("db", "status", "--json", env={"TLSGATE_DATABASE_URL": postgres_cluster.url(name)})
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    assert status["schema_version"] == 0 and status["queue"] == []
    assert "pending: tlsgate db migrate" in ok("db", "status", env={"TLSGATE_DATABASE_URL": postgres_cluster.url(name)}).stdout


def test_db_copy_from_a_file_that_is_no_inventory(tmp_path: Path, postgres_database: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # "internal error: DatabaseError: file is not a database"
    monkeypatch.setenv("TLSGATE_HOME", str(tmp_path / "home"))
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a database\n" * 100)
    for path in (tmp_path / "notes.txt", tmp_path / "empty"):
        res = tg("db", "copy", "--from", str(path), "--to", postgres_database)
        assert res.returncode == 2 and res.stderr.startswith("error: --from: ") and "not a SQLite inventory" in res.stderr
        assert "internal error" not in res.stderr and len(res.stderr.splitlines()) == 1
    assert (tmp_path / "empty").read_bytes() == b""  # not made an inventory by opening it
