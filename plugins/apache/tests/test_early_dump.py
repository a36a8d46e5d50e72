"""``tlsgate tls discover NAME`` starts httpd's dump before tlsgate has loaded (``tlsgate.early``):
the nodes are those of a discovery that ran its own dump, also when a file httpd reads changed
meanwhile, when the recorded command is not the one the endpoint needs, and when the record is
not private. Through the command line in a subprocess, against real httpd dumps; each apachectl
run is logged with where its output went (the early run's is an unlinked file in tlsgate's cache
directory, the driver's own a temporary file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apache_peer import apache_binary
from test_discovery_generated import _generate
from tlsgate.early import MARGIN_SECONDS
from tlsgate_testing.certs import TestCA

pytestmark = pytest.mark.slow


def _tg(*args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "tlsgate", *args], capture_output=True, text=True,
                         env=dict(os.environ), timeout=180)
    assert res.returncode == 0, f"tlsgate {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stdout


@pytest.fixture
def gen(tmp_path: Path, test_ca: TestCA, tlsgate_home: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """An apache endpoint "gen" on a generated ServerRoot, whose apachectl logs each run."""
    if apache_binary() is None:
        pytest.skip("apache2/httpd is not installed")
    cache = tmp_path / "cache"
    monkeypatch.setenv("TLSGATE_CACHE_DIR", str(cache))
    root = tmp_path / "root"
    ctl, _, _ = _generate(root, test_ca, 12, 4)
    log = tmp_path / "runs.log"
    logged = tmp_path / "apachectl"
    logged.write_text(f'#!/bin/sh\necho "$(readlink /proc/$$/fd/1) $*" >> "{log}"\nexec "{ctl}" "$@"\n')
    logged.chmod(0o755)
    _tg("tls", "add", "apache", "--name", "gen", "--connection_type", "local", "--apachectl_path", str(logged))
    _tg("org", "add", "Acme")
    _tg("tls", "delegate", "gen", "--org", "Acme")
    return root, log, cache / "early"


def _discover(log: Path) -> tuple[list[dict], list[str]]:
    """The nodes after one ``tls discover gen`` (without the discovery time) and where the
    output of each apachectl run of it went ("early" / "own")."""
    before = len(log.read_text().splitlines()) if log.exists() else 0
    _tg("tls", "discover", "gen")
    runs = log.read_text().splitlines()[before:]
    nodes = [{k: v for k, v in n.items() if k != "discovered"} for n in json.loads(_tg("tls", "nodes", "gen", "--json"))]
    return nodes, ["early" if "/cache/early/" in run.split(" ", 1)[0] else "own" for run in runs]


def _settle(root: Path) -> None:
    """Wait until no file of the ServerRoot changed within the early run's margin."""
    newest = max(p.stat().st_ctime for p in [root, *root.rglob("*")])
    time.sleep(max(0.0, newest + MARGIN_SECONDS + 0.1 - time.time()))


def test_the_next_discovery_takes_the_dump_started_early(gen) -> None:  # type: ignore[no-untyped-def]
    root, log, early_dir = gen
    cold, runs = _discover(log)
    assert runs == ["own"] and len(cold) >= 12
    (record,) = early_dir.glob("discover-*.json")
    assert record.stat().st_mode & 0o777 == 0o600
    assert json.loads(record.read_text())["argv"][1:] == ["-t", "-D", "DUMP_VHOSTS", "-D", "DUMP_RUN_CFG",
                                                         "-D", "DUMP_INCLUDES", "-D", "DUMP_MODULES"]
    _settle(root)
    warm, runs = _discover(log)
    assert runs == ["early"] and warm == cold
    assert [p.name for p in early_dir.iterdir()] == [record.name]  # its output files left nothing behind

    # a site file changes (its new inode time is after the early start's margin): httpd is asked again
    site = sorted((root / "sites").glob("*.conf"))[0]
    site.write_bytes(site.read_bytes().replace(b"ServerName ", b"ServerName renamed-"))
    changed, runs = _discover(log)
    assert runs == ["early", "own"]
    assert changed != cold and any(n["name"].startswith("renamed-") for n in changed)
    record.unlink()
    assert _discover(log) == (changed, ["own"])


def test_an_early_command_the_endpoint_does_not_run_is_not_used(gen) -> None:  # type: ignore[no-untyped-def]
    root, log, early_dir = gen
    cold, _ = _discover(log)
    (record,) = early_dir.glob("discover-*.json")
    data = json.loads(record.read_text())
    data["argv"] = [data["argv"][0], "-t", "-D", "DUMP_VHOSTS"]  # not what the driver runs
    record.write_text(json.dumps(data))
    _settle(root)
    nodes, runs = _discover(log)
    assert runs == ["early", "own"] and nodes == cold
    assert json.loads(record.read_text())["argv"][-1] == "DUMP_MODULES"  # recorded again

    # a record (or its directory) others may write is not run
    _settle(root)
    record.chmod(0o622)
    nodes, runs = _discover(log)
    assert runs == ["own"] and nodes == cold


def test_the_discovery_made_on_the_last_dump_while_httpd_runs_is_taken_only_if_httpd_prints_the_same(
    gen, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """In-process, with the early dump started as the CLI starts it and the discovery made on the
    last dump's parse before the new dump is taken (``done()`` says "not yet" until then)."""
    import attrs
    from tlsgate import Gateway, early
    from tlsgate_apache import plugin, reuse
    from tlsgate_apache.control import ApacheControl, EarlyDump, comparable
    from tlsgate_testing.connections import LocalConnection

    root, log, _ = gen
    _discover(log)  # records the early command and the dump
    endpoint = Gateway().endpoint("gen")  # its instance ID names the hint and the last dump
    monkeypatch.setattr(EarlyDump, "done", lambda self: False)
    # the path without a reusable record of the last discovery (reuse.py: a first discovery
    # after an upgrade, a changed file); test_reuse.py covers the record
    monkeypatch.setattr(reuse, "load", lambda endpoint: None)
    taken: list[bool] = []
    speculate, parsed = plugin._speculate, ApacheControl.parsed
    monkeypatch.setattr(plugin, "_speculate", lambda *a: taken.append(True) or speculate(*a))
    monkeypatch.setattr(ApacheControl, "parsed", lambda self, result, guess=None: (
        r := parsed(self, result, guess), taken.append(r is guess))[0])

    def discover() -> list[tuple]:
        early.start_for_cli(["tls", "discover", "gen"])
        try:
            return [attrs.astuple(n) for n in plugin.discover_nodes(endpoint, LocalConnection())]
        finally:
            early.end()

    def cold() -> list[tuple]:  # no early dump, no hint: nothing guessed or read ahead
        for f in (root.parent / "cache" / "apache").iterdir():
            f.unlink()
        return [attrs.astuple(n) for n in plugin.discover_nodes(endpoint, LocalConnection())]

    _settle(root)
    warm = discover()
    assert taken == [True, True]  # speculated, and httpd printed the same: that discovery is the result
    assert warm == cold()

    # a new site (older than the early start's margin): httpd prints another dump, the guess is dropped
    (root / "sites" / "zz-new.conf").write_text(
        "<VirtualHost 127.0.0.1:1>\n    ServerName new.gen.test\n    SSLEngine on\n"
        "    SSLCertificateFile certs/c2.crt\n</VirtualHost>\n")
    _discover(log)  # the dump and the record as the last discovery left them
    (root / "sites" / "zz-new.conf").unlink()
    _settle(root)
    taken.clear()
    changed = discover()
    assert taken == [True, False]
    assert changed == cold() == warm and not any(n[0] == "new.gen.test" for n in changed)

    # httpd prints its Mutex lines in hash order, which changes between runs: they are not compared
    text = subprocess.run([str(log.parent / "apachectl"), "-t", "-D", "DUMP_RUN_CFG"], capture_output=True,
                          text=True, check=True).stdout
    mutexes = [ln for ln in text.splitlines() if ln.startswith("Mutex ")]
    assert len(mutexes) >= 2
    shuffled = text.replace("\n".join(mutexes), "\n".join(reversed(mutexes)))
    assert shuffled != text and comparable(shuffled) == comparable(text)
    assert "Mutex" not in comparable(text)


@pytest.mark.parametrize("recorded", [False, True], ids=["speculated", "reusable-record"])
def test_httpd_s_dump_wins_over_the_last_one_when_a_define_from_outside_its_files_changes(
    gen, monkeypatch: pytest.MonkeyPatch, recorded: bool
) -> None:  # type: ignore[no-untyped-def]
    """The discovery made on the last dump while httpd runs (and the files read ahead by the last
    discovery's hint) is dropped when httpd prints another dump although no file it reads
    changed: a ``-D`` its control script takes from a file of its own decides, through
    ``<IfDefine>``, ``<IfModule>`` and a globbed ``Include``, which vhosts exist. The nodes are
    those of a discovery without an early dump, a hint or a last dump, each way round; also
    when the last discovery's record (reuse.py) says no file changed (``recorded``)."""
    import attrs
    from tlsgate import Gateway, early
    from tlsgate_apache import plugin
    from tlsgate_apache.control import ApacheControl, EarlyDump
    from tlsgate_testing.connections import LocalConnection

    root, log, _ = gen
    flag = log.parent / "flag"
    flag.write_text("")
    wrapper = log.parent / "apachectl"
    text = wrapper.read_text()  # the logging wrapper: ...exec "<apachectl>" "$@"
    assert text.endswith('"$@"\n')
    wrapper.write_text(text[:-1] + f' $(cat "{flag}")\n')  # its words are httpd's last arguments
    (root / "extra").mkdir()
    (root / "extra" / "x.conf").write_text(
        "<VirtualHost 127.0.0.1:1>\n    ServerName extra.gen.test\n    SSLEngine on\n"
        "    SSLCertificateFile certs/c1.crt\n</VirtualHost>\n")
    (root / "alt.conf").write_text(
        "<VirtualHost 127.0.0.1:1>\n    ServerName alt.gen.test\n    SSLEngine on\n"
        "    SSLCertificateFile certs/c2.crt\n</VirtualHost>\n")
    with (root / "httpd.conf").open("a") as fh:
        fh.write("<IfDefine EXTRA>\n    IncludeOptional extra/*.conf\n</IfDefine>\n"
                 "<IfDefine !EXTRA>\n    <IfModule ssl_module>\n        Include alt.conf\n    </IfModule>\n</IfDefine>\n")
    _discover(log)  # records the early command and the dump
    endpoint = Gateway().endpoint("gen")
    monkeypatch.setattr(EarlyDump, "done", lambda self: False)
    if not recorded:
        from tlsgate_apache import reuse

        monkeypatch.setattr(reuse, "load", lambda endpoint: None)
    taken: list[bool] = []
    speculate, parsed = plugin._speculate, ApacheControl.parsed
    monkeypatch.setattr(plugin, "_speculate", lambda *a: taken.append(True) or speculate(*a))
    monkeypatch.setattr(ApacheControl, "parsed", lambda self, result, guess=None: (
        r := parsed(self, result, guess), taken.append(r is guess))[0])

    def discover() -> list[tuple]:
        early.start_for_cli(["tls", "discover", "gen"])
        try:
            return [attrs.astuple(n) for n in plugin.discover_nodes(endpoint, LocalConnection())]
        finally:
            early.end()

    def cold() -> list[tuple]:
        for f in (root.parent / "cache" / "apache").iterdir():
            f.unlink()
        return [attrs.astuple(n) for n in plugin.discover_nodes(endpoint, LocalConnection())]

    _settle(root)
    plain = discover()
    assert taken == ([True] if recorded else [True, True]) and plain == cold()
    assert any(n[0] == "alt.gen.test" for n in plain) and not any(n[0] == "extra.gen.test" for n in plain)
    discover()  # the last dump and the hint are this layout's again (cold() removed them)

    for words, present, absent in (("-D EXTRA", "extra.gen.test", "alt.gen.test"),
                                   ("", "alt.gen.test", "extra.gen.test")):
        flag.write_text(words)
        taken.clear()
        got = discover()
        # made on the last dump (or the record checked), dropped: httpd printed another
        assert taken == ([False] if recorded else [True, False])
        assert got == cold()
        assert any(n[0] == present for n in got) and not any(n[0] == absent for n in got)
        discover()  # the last dump and the hint of this layout, for the next round
