"""The transaction helper over a real file system: backup, atomic write, restore, dry run."""

from __future__ import annotations

import os

import pytest
from tlsgate import OperationError, Transaction
from tlsgate.transaction import current_backup_sink
from tlsgate.transports.local import LocalConnection


def test_failure_restores_every_file_and_removes_new_ones(tmp_path) -> None:
    conf = tmp_path / "site.conf"
    conf.write_bytes(b"original\n")
    os.chmod(conf, 0o640)
    new_key = tmp_path / "new.key"
    rolled = []
    with LocalConnection() as conn:
        with pytest.raises(OperationError) as err:
            with Transaction(conn) as tx:
                tx.write(str(conf), b"changed\n")
                tx.write(str(new_key), b"secret", mode=0o600)
                tx.on_rollback(lambda: rolled.append("reload"), "reload")
                assert conf.read_bytes() == b"changed\n" and oct(conf.stat().st_mode & 0o777) == "0o640"
                assert new_key.stat().st_mode & 0o777 == 0o600
                tx.run(["sh", "-c", "echo config test failed >&2; exit 3"], what="config test")
    assert err.value.rolled_back
    assert "config test failed" in str(err.value)
    assert conf.read_bytes() == b"original\n" and conf.stat().st_mode & 0o777 == 0o640
    assert not new_key.exists()
    assert rolled == ["reload"]
    assert [p.name for p in tmp_path.iterdir()] == ["site.conf"]  # no temporary files left behind


def test_dry_run_plans_and_changes_nothing(tmp_path) -> None:
    conf = tmp_path / "a.conf"
    conf.write_text("x")
    with LocalConnection() as conn, Transaction(conn, dry_run=True) as tx:
        tx.write(str(conf), b"y")
        tx.write(str(tmp_path / "b.key"), b"k", mode=0o600)
        assert tx.run(["false"], what="never runs") is None
    assert conf.read_text() == "x" and not (tmp_path / "b.key").exists()
    assert [(s.action, s.target) for s in tx.plan] == [
        ("replace", str(conf)), ("write", str(tmp_path / "b.key")), ("run", "false")]


def test_backup_sink_receives_originals(tmp_path) -> None:
    saved = []

    class Sink:
        def save(self, host, path, data, mode):  # type: ignore[no-untyped-def]
            saved.append((path, data, mode))
            return f"ref:{path}"

    conf = tmp_path / "c"
    conf.write_bytes(b"old")
    os.chmod(conf, 0o640)
    token = current_backup_sink.set(Sink())
    try:
        with LocalConnection() as conn, Transaction(conn) as tx:
            tx.write(str(conf), b"new")
            tx.write(str(tmp_path / "fresh"), b"n")
    finally:
        current_backup_sink.reset(token)
    assert saved == [(str(conf), b"old", 0o640), (str(tmp_path / "fresh"), None, None)]
    assert tx.backups == [f"ref:{conf}", f"ref:{tmp_path / 'fresh'}"]


def test_atomic_write_never_exposes_a_partial_file(tmp_path) -> None:
    """The target is replaced by rename: readers see the old or the new content, whole."""
    target = tmp_path / "big"
    target.write_bytes(b"a" * 100000)
    with LocalConnection() as conn:
        conn.write_file(str(target), b"b" * 200000, mode=0o600)
    assert target.read_bytes() == b"b" * 200000 and target.stat().st_mode & 0o777 == 0o600
