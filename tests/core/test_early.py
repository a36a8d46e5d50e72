"""tlsgate.early: the command a driver offered is started by the next ``tls discover NAME`` of
the same inventory, and handed only to a driver asking for exactly that command line; a record
that is not private, or is another inventory's or NAME's, runs nothing."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tlsgate import early


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("TLSGATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TLSGATE_HOME", str(tmp_path / "home"))
    yield tmp_path / "cache" / "early"
    early.end()


def _record(argv: list[str], name: str = "web") -> None:
    early.start_for_cli(["tls", "discover", name])
    early.remember(argv)
    early.end()


def test_the_offered_command_runs_early_and_is_taken_once(cache: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    argv = ["sh", "-c", f'echo out; echo err >&2; echo x >> "{marker}"; exit 3']
    _record(argv)
    (record,) = cache.glob("discover-*.json")
    assert record.stat().st_mode & 0o777 == 0o600 and json.loads(record.read_text())["argv"] == argv

    early.start_for_cli(["tls", "discover", "web", "--json"])
    got = early.take(argv)
    assert got is not None and early.take(argv) is None
    result = got.wait()
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert marker.read_text() == "x\n" and sorted(p.name for p in cache.iterdir()) == [record.name]
    # what changed (the cache, made just now) or is gone since shortly before it started: run it again
    assert got.changed_since_start([str(cache)]) and got.changed_since_start([str(tmp_path / "gone")])
    assert not got.changed_since_start([os.path.realpath(sys.executable)])


def test_another_command_line_gets_nothing_and_the_early_one_is_killed(cache: Path, tmp_path: Path) -> None:
    _record(["sleep", "30"])
    early.start_for_cli(["tls", "discover", "web"])
    started = early._session.early  # type: ignore[union-attr]
    assert started is not None
    assert early.take(["sleep", "31"]) is None
    assert started.finished()  # killed, not left running


@pytest.mark.parametrize("args", [
    ["tls", "discover", "other"],  # another endpoint's name
    ["tls", "discover", "web", "--all"],  # a fleet job
    ["tls", "discover", "--endpoint", "web"],
    ["tls", "nodes", "web"],
])
def test_only_the_same_single_discovery_starts_it(cache: Path, tmp_path: Path, args: list[str]) -> None:
    _record(["true"])
    early.start_for_cli(args)
    assert early.take(["true"]) is None


def test_a_record_others_may_write_or_of_another_inventory_runs_nothing(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _record(["true"])
    (record,) = cache.glob("discover-*.json")
    record.chmod(0o620)
    early.start_for_cli(["tls", "discover", "web"])
    assert early.take(["true"]) is None
    record.chmod(0o600)
    cache.chmod(0o777)
    early.start_for_cli(["tls", "discover", "web"])
    assert early.take(["true"]) is None
    cache.chmod(0o700)
    monkeypatch.setenv("TLSGATE_HOME", str(tmp_path / "another home"))
    early.start_for_cli(["tls", "discover", "web"])
    assert early.take(["true"]) is None


def test_nothing_is_recorded_outside_a_cli_discovery(cache: Path) -> None:
    early.remember(["true"])  # a library call, a test, a fleet job's worker
    assert not cache.exists()


def test_the_environment_must_be_the_same(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _record(["true"])
    early.start_for_cli(["tls", "discover", "web"])
    monkeypatch.setenv("TLSGATE_SOMETHING_NEW", "1")
    assert early.take(["true"]) is None
    assert os.environ["TLSGATE_SOMETHING_NEW"] == "1"
