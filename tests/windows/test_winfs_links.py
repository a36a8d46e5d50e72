"""The simulated Windows host's NTFS links (the model the Windows transports' link tests rely
on): opening follows links, delete and rename act on the link itself, and the ``file-realpath``
template's handler gives the same answer on the in-memory and the directory-backed file system."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tlsgate_testing.winfs import DirectoryFS, MemoryFS, PSError, WinFS
from tlsgate_testing.winhost import SimulatedWindowsHost


def _fs(kind: str, tmp_path: Path) -> WinFS:
    return MemoryFS() if kind == "memory" else DirectoryFS(tmp_path / "root")


def _realpath(host: SimulatedWindowsHost, path: str) -> str:
    return json.loads(base64.b64decode(host._t_file_realpath(host, {"path": path})))["path"]


@pytest.mark.parametrize("kind", ["memory", "directory"])
def test_open_follows_rename_and_delete_act_on_the_link(kind: str, tmp_path: Path) -> None:
    host = SimulatedWindowsHost(_fs(kind, tmp_path))
    host.seed(r"C:\real\a.p12", b"A")
    host.link(r"C:\app\a.p12", r"..\real\a.p12")
    host.link(r"C:\cur", r"C:\real", "Junction")
    assert host.read(r"C:\APP\a.p12") == b"A" and host.read(r"C:\cur\A.P12") == b"A"
    assert host.fs.link(r"C:\app\a.p12") == ("SymbolicLink", r"..\real\a.p12")
    assert host.fs.link(r"C:\cur\a.p12") is None  # a file under a junction is no link
    assert _realpath(host, r"C:\app\.\a.p12") == r"C:\real\a.p12"
    assert _realpath(host, r"C:\cur\a.p12") == r"C:\cur\a.p12"
    host.fs.write(r"C:\cur\a.p12", b"B")  # through the junction: the target changes
    assert host.read(r"C:\real\a.p12") == b"B"
    host.seed(r"C:\app\new.tmp", b"N")
    host.fs.rename(r"C:\app\new.tmp", r"C:\app\a.p12")  # MoveFileEx/ReplaceFile onto a link
    assert host.fs.link(r"C:\app\a.p12") is None and host.read(r"C:\real\a.p12") == b"B"
    host.link(r"C:\app\b.p12", r"C:\real\a.p12")
    host.fs.remove(r"C:\app\b.p12")
    assert not host.exists(r"C:\app\b.p12") and host.read(r"C:\real\a.p12") == b"B"
    with pytest.raises(PSError, match="absolute"):
        host.link(r"C:\j2", r"real", "Junction")


def test_a_link_loop_is_an_error(tmp_path: Path) -> None:
    host = SimulatedWindowsHost(MemoryFS())
    host.link(r"C:\a", r"C:\b")
    host.link(r"C:\b", r"C:\a")
    with pytest.raises(PSError, match="too many levels"):
        _realpath(host, r"C:\a")


_name = st.text(alphabet="abcXYZ09-_", min_size=1, max_size=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(link_dir=st.lists(_name, min_size=0, max_size=3), target_dir=st.lists(_name, min_size=0, max_size=3),
       relative=st.booleans())
def test_both_file_systems_resolve_a_link_alike(tmp_path_factory: pytest.TempPathFactory, link_dir: list[str],
                                                target_dir: list[str], relative: bool) -> None:
    target = "C:\\t\\" + "\\".join([*target_dir, "f.bin"])
    link = "C:\\l\\" + "\\".join([*link_dir, "f.lnk"])
    stored = ("..\\" * (len(link_dir) + 1)) + "t\\" + "\\".join([*target_dir, "f.bin"]) if relative else target
    answers = []
    for fs in (MemoryFS(), DirectoryFS(tmp_path_factory.mktemp("fs"))):
        host = SimulatedWindowsHost(fs)
        host.seed(target, b"x")
        host.link(link, stored)
        answers.append((_realpath(host, link), host.read(link)))
    assert answers[0] == answers[1] == (target, b"x")
