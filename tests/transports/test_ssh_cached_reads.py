"""The ssh transport's ``cached_reads`` block (what one install opens around its discovery, load,
backup, read-back and re-discovery), against the real sshd: a repeated read is answered from
memory, but never a read after a change made through the connection (a write, a rename, a
command), and never the late "unchanged?" check before a write's rename."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from tlsgate.errors import FileChanged
from tlsgate.transports import ssh
from tlsgate_testing.sshd import SshdServer


def _sftp_opens(conn: ssh.SSHConnection, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the connection opens over SFTP from now on (what reaches the server)."""
    from paramiko.sftp import CMD_OPEN

    opened: list[str] = []
    sftp = conn.sftp
    real = sftp._async_request

    def counting(fileobj: object, t: int, *args: object) -> int:
        if t == CMD_OPEN:
            opened.append(str(args[0]))
        return real(fileobj, t, *args)

    monkeypatch.setattr(sftp, "_async_request", counting)
    return opened


def test_a_repeated_read_in_the_block_is_not_sent_again(conn: ssh.SSHConnection, trusted: SshdServer,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = trusted.user_path("cached.txt")
    Path(path).write_bytes(b"one")
    opened = _sftp_opens(conn, monkeypatch)
    with conn.cached_reads():
        assert conn.read_file(path) == b"one"
        assert conn.stat(path).size == 3  # type: ignore[union-attr]  # from the read's own fstat
        assert conn.read_file(path) == b"one"
        assert opened == [path]
        Path(path).write_bytes(b"two, changed on the host")  # not through the connection: not seen
        assert conn.read_file(path) == b"one"
    assert conn.read_file(path) == b"two, changed on the host"  # outside the block: always the host's
    assert conn.read_file(path) == b"two, changed on the host"
    assert opened == [path, path, path]


def test_a_read_after_a_write_reads_the_host(conn: ssh.SSHConnection, trusted: SshdServer) -> None:
    path = trusted.user_path("written.txt")
    Path(path).write_bytes(b"old")
    with conn.cached_reads():
        assert conn.read_file(path) == b"old"
        conn.write_file(path, b"new", mode=0o640)
        Path(path).write_bytes(b"changed after our write")  # e.g. a damaged write: the read-back sees it
        assert conn.read_file(path) == b"changed after our write"
        assert stat.S_IMODE(conn.stat(path).mode) == stat.S_IMODE(os.stat(path).st_mode)  # type: ignore[union-attr]


def test_the_late_check_compares_the_host_file(conn: ssh.SSHConnection, trusted: SshdServer) -> None:
    path = trusted.user_path("raced.txt")
    Path(path).write_bytes(b"as discovered")
    with conn.cached_reads():
        seen = conn.read_file(path)
        Path(path).write_bytes(b"someone else's edit")  # between the discovery and the install's write
        assert conn.read_file(path) == seen  # the cached copy the driver would build on
        with pytest.raises(FileChanged):
            conn.write_file_if(path, b"ours", expect=seen)
    assert Path(path).read_bytes() == b"someone else's edit"  # not overwritten
    assert [n for n in os.listdir(trusted.workdir) if n.startswith(".tlsgate-")] == []


@pytest.mark.parametrize("change", ["command", "rename", "remove", "mtime"])
def test_every_change_through_the_connection_forgets(conn: ssh.SSHConnection, trusted: SshdServer,
                                                     change: str) -> None:
    path = trusted.user_path("forgotten.txt")
    other = trusted.user_path("other.txt")
    Path(path).write_bytes(b"before")
    Path(other).write_bytes(b"x")
    with conn.cached_reads():
        assert conn.read_file(path) == b"before"
        Path(path).write_bytes(b"after")
        if change == "command":
            assert conn.run(["true"]).ok
        elif change == "rename":
            conn.rename(other, other + ".moved")
        elif change == "remove":
            conn.remove(other)
        else:
            conn.set_mtime(other, 1_000_000)
        assert conn.read_file(path) == b"after"


def test_after_a_command_every_read_polls_the_host(conn: ssh.SSHConnection, trusted: SshdServer) -> None:
    """A command may start what changes files after it returned (a reload retiring workers, a
    restart writing its pid file) and the waits that follow poll such files: from the first
    command of the block on, nothing is kept (an nginx install over ssh waited out its deadline
    polling /proc entries the cache answered). Kernel views (/proc) are never kept."""
    import time

    path = trusted.user_path("later.txt")
    conn.write_file(path, b"before", mode=0o644)  # the account's own file: its command may rewrite it
    with conn.cached_reads():
        assert conn.read_file("/proc/self/stat") != b""  # a /proc read: not kept either
        res = conn.run(["sh", "-c", f"(sleep 0.5; echo after > {path}) </dev/null >/dev/null 2>&1 &"])
        assert res.ok
        assert conn.read_file(path) == b"before"
        deadline = time.monotonic() + 10
        while conn.read_file(path) != b"after\n":  # the poll sees the background change
            assert time.monotonic() < deadline, "a read after the command was answered from memory"
            time.sleep(0.05)
        assert conn._files == {} and conn._stats == {}  # nothing kept since the command
