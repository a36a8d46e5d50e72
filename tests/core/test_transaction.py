"""The transaction helper over a real file system: backup, atomic write, restore, dry run."""

from __future__ import annotations

import os

import pytest
from tlsgate import OperationError, Transaction
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
    with Transaction.backups_to(Sink()), LocalConnection() as conn, Transaction(conn) as tx:
        tx.write(str(conf), b"new")
        tx.write(str(tmp_path / "fresh"), b"n")
    assert saved == [(str(conf), b"old", 0o640), (str(tmp_path / "fresh"), None, None)]
    assert tx.backups == [f"ref:{conf}", f"ref:{tmp_path / 'fresh'}"]


def test_atomic_write_never_exposes_a_partial_file(tmp_path) -> None:
    """The target is replaced by rename: readers see the old or the new content, whole."""
    target = tmp_path / "big"
    target.write_bytes(b"a" * 100000)
    with LocalConnection() as conn:
        conn.write_file(str(target), b"b" * 200000, mode=0o600)
    assert target.read_bytes() == b"b" * 200000 and target.stat().st_mode & 0o777 == 0o600


def test_rollback_is_one_journal_undone_last_in_first_out(tmp_path) -> None:
    """Files and undo steps interleave; rollback walks them newest first, and on_rollback
    actions come last, once every file is back (each undo sees the state it was written for)."""
    conf = tmp_path / "a.conf"
    conf.write_bytes(b"v0")
    seen: list[tuple[str, bytes]] = []

    def note(what: str):  # type: ignore[no-untyped-def]
        return lambda: seen.append((what, conf.read_bytes()))

    with LocalConnection() as conn, pytest.raises(OperationError) as err:
        with Transaction(conn) as tx:
            tx.write(str(conf), b"v1")
            tx.undo(note("undo object 1"), "delete object 1")
            tx.on_rollback(note("reload"), "reload with the restored files")
            tx.write(str(conf), b"v2")  # the same file again: restored once, to v0
            tx.undo(note("undo object 2"), "delete object 2")
            raise RuntimeError("verification failed")
    assert err.value.rolled_back and "RuntimeError: verification failed" in str(err.value)
    assert seen == [("undo object 2", b"v2"), ("undo object 1", b"v2"), ("reload", b"v0")]
    assert conf.read_bytes() == b"v0"


def test_an_undo_that_fails_is_reported_and_the_rest_still_runs(tmp_path) -> None:
    conf = tmp_path / "b.conf"
    conf.write_bytes(b"old")
    ran = []

    def broken() -> None:
        raise OperationError("device unreachable")

    with LocalConnection() as conn, pytest.raises(OperationError) as err:
        with Transaction(conn, label="F5 install") as tx:
            tx.undo(lambda: ran.append("first"), "remove uploads")
            tx.write(str(conf), b"new")
            tx.undo(broken, "repoint /Common/cs_www")
            raise OperationError("handshake shows the old certificate")
    assert not err.value.rolled_back
    assert "RESTORE INCOMPLETE: repoint /Common/cs_www: device unreachable" in str(err.value)
    assert ran == ["first"] and conf.read_bytes() == b"old"


def test_success_and_dry_run_undo_nothing_and_save_backup_reaches_the_sink(tmp_path) -> None:
    saved = []

    class Sink:
        def save(self, host, path, data, mode):  # type: ignore[no-untyped-def]
            saved.append((host, path, data))
            return f"job-backup-{len(saved)}"

    ran: list[str] = []
    with LocalConnection() as conn:
        with Transaction.backups_to(Sink()), Transaction(conn) as tx:
            tx.undo(lambda: ran.append("undo"))
            assert tx.save_backup("/profiles/cs_www#certKeyChain", b'{"old": 1}') == "job-backup-1"
        assert ran == [] and tx.result().backups == ("job-backup-1",)
        with pytest.raises(RuntimeError), Transaction.backups_to(Sink()), Transaction(conn, dry_run=True) as dry:
            dry.undo(lambda: ran.append("dry undo"))
            dry.save_backup("/x", b"y")
            raise RuntimeError("a dry run does not roll back")
    assert ran == [] and saved == [(conn.host, "/profiles/cs_www#certKeyChain", b'{"old": 1}')]


def test_ctrl_c_is_undone_then_re_raised_as_it_is(tmp_path) -> None:
    conf = tmp_path / "c.conf"
    conf.write_bytes(b"old")
    with LocalConnection() as conn, pytest.raises(KeyboardInterrupt):
        with Transaction(conn) as tx:
            tx.write(str(conf), b"new")
            raise KeyboardInterrupt
    assert conf.read_bytes() == b"old" and tx.rolled_back


def test_run_with_explain_names_the_step_and_the_servers_reason(tmp_path) -> None:
    with LocalConnection() as conn, pytest.raises(OperationError) as err:
        with Transaction(conn) as tx:
            tx.run(["sh", "-c", "echo 'line 3: unknown directive' >&2; exit 1"], what="nginx -t",
                   explain=lambda r: r.stderr.strip())
    assert "nginx -t failed: line 3: unknown directive" in str(err.value)


def test_relink_points_a_link_elsewhere_and_back_on_rollback(tmp_path) -> None:
    """An own copy of a package's site: the link a2ensite made is pointed at it, atomically (no
    moment without the link), and at the package's file again when the install fails."""
    available = tmp_path / "sites-available"
    available.mkdir()
    (available / "default-ssl.conf").write_text("packaged\n")
    enabled = tmp_path / "sites-enabled"
    enabled.mkdir()
    link = enabled / "default-ssl.conf"
    link.symlink_to("../sites-available/default-ssl.conf")
    copy = tmp_path / "own" / "default-ssl.conf"
    copy.parent.mkdir()
    with LocalConnection() as conn:
        with Transaction(conn, dry_run=True) as tx:
            tx.relink(str(link), str(copy))
        assert [(s.action, s.target) for s in tx.plan] == [("relink", str(link))]
        assert os.readlink(link) == "../sites-available/default-ssl.conf"
        with pytest.raises(OperationError), Transaction(conn) as tx:
            tx.write(str(copy), b"edited\n")
            tx.relink(str(link), str(copy))
            assert os.readlink(link) == str(copy) and link.read_text() == "edited\n"
            tx.run(["false"], what="config test")
        assert os.readlink(link) == "../sites-available/default-ssl.conf" and not copy.exists()
        assert sorted(p.name for p in enabled.iterdir()) == ["default-ssl.conf"]  # no temporary link left
        with pytest.raises(OperationError, match="not a symbolic link"), Transaction(conn) as tx:
            tx.relink(str(available / "default-ssl.conf"), str(copy))


def test_a_rewrite_with_the_same_bytes_gets_its_old_mtime_back_on_rollback(tmp_path) -> None:
    """Installing the certificate a file already names writes the same bytes again (the same
    config, the same key file): a rollback finds the content as it was, and must still put the
    old mtime back, or the server's pending-change check refuses the next install."""
    conf = tmp_path / "site.conf"
    conf.write_bytes(b"same\n")
    os.utime(conf, (1_700_000_000, 1_700_000_000))
    with LocalConnection() as conn:
        with pytest.raises(OperationError) as err:
            with Transaction(conn) as tx:
                tx.write(str(conf), b"same\n")
                assert conf.stat().st_mtime != 1_700_000_000
                tx.run(["false"], what="config test")
    assert err.value.rolled_back
    assert conf.read_bytes() == b"same\n" and conf.stat().st_mtime == 1_700_000_000


def test_ctrl_c_just_after_a_rename_still_restores_that_file(tmp_path) -> None:
    """Ctrl-C can land inside the atomic write after its rename (while it syncs the directory):
    the file is new then, and the rollback must put the original back, not only remove the
    other files (a config left naming the removed key and certificate breaks the next reload)."""
    conf = tmp_path / "site.conf"
    conf.write_bytes(b"ssl_certificate old.crt;\n")
    key = tmp_path / "new.key"

    class CtrlCAfterRename(LocalConnection):
        interrupted = False

        def write_file_if(self, path, data, **kwargs):  # type: ignore[no-untyped-def,override]
            super().write_file_if(path, data, **kwargs)
            if path == str(conf) and not self.interrupted:
                self.interrupted = True
                raise KeyboardInterrupt

    with CtrlCAfterRename() as conn:
        with pytest.raises(KeyboardInterrupt):
            with Transaction(conn) as tx:
                tx.write(str(key), b"secret", mode=0o600)
                tx.write(str(conf), b"ssl_certificate new.crt;\n")
    assert conf.read_bytes() == b"ssl_certificate old.crt;\n"
    assert not key.exists()
