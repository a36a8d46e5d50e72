"""``LocalConnection.is_admin`` asks the gateway process itself (``os.geteuid`` on POSIX,
``shell32.IsUserAnAdmin`` on Windows), and the local transport's file writes call no POSIX-only
``os`` function on a Windows gateway. Windows itself cannot run here: the POSIX answer is checked
against ``id -u`` for real; the Windows branch is played by taking from ``os`` what a Windows
interpreter lacks (``geteuid``; ``fchmod`` before Python 3.13) and standing in for ctypes' ``windll``,
which Linux does not have."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tlsgate.transports import local
from tlsgate.transports.local import LocalConnection


def test_posix_answer_is_the_process_uid_as_id_reports_it() -> None:
    uid = subprocess.run(["id", "-u"], capture_output=True, text=True, check=True).stdout.strip()
    with LocalConnection() as conn:
        assert conn.is_admin() is (uid == "0")


class _Shell32:
    def __init__(self, answer: int) -> None:
        self.answer, self.calls = answer, 0

    def IsUserAnAdmin(self) -> int:  # the Win32 name
        self.calls += 1
        return self.answer


def _as_windows(monkeypatch: pytest.MonkeyPatch, answer: int) -> _Shell32:
    shell32 = _Shell32(answer)
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.delattr(os, "geteuid")
    monkeypatch.delattr(os, "fchmod")
    monkeypatch.setattr(ctypes, "windll", type("WinDLL", (), {"shell32": shell32})(), raising=False)
    return shell32


@pytest.mark.parametrize(("answer", "admin"), [(1, True), (0, False)])
def test_windows_answer_comes_from_is_user_an_admin_without_geteuid(monkeypatch: pytest.MonkeyPatch,
                                                                    answer: int, admin: bool) -> None:
    shell32 = _as_windows(monkeypatch, answer)
    conn = LocalConnection()
    assert conn.platform == "windows"
    assert conn.is_admin() is admin
    assert shell32.calls == 1  # the process token, not a PowerShell child


def test_windows_gateway_writes_without_posix_only_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "site.pem"
    target.write_bytes(b"old")
    ref = tmp_path / "ref"
    ref.write_bytes(b"")
    _as_windows(monkeypatch, 1)
    conn = LocalConnection()
    conn.write_file(str(target), b"new", mode=0o600)
    conn.chown_like(str(target), str(ref))  # no uid/gid to copy on Windows: a no-op, not AttributeError
    monkeypatch.undo()
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o600  # os.chmod of the temporary stood in for fchmod
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tlsgate-")] == []


def test_module_imports_where_os_has_no_geteuid() -> None:
    code = ("import os, sys; del os.geteuid; sys.modules.update(fcntl=None, pwd=None, grp=None);"
            "import tlsgate.transports.local as m; print(callable(m.process_is_admin))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "True", proc.stderr
    assert local.process_is_admin() is (os.geteuid() == 0)
