"""Reusing the last discovery's node model (reuse.py) changes nothing discovery reports: a
discovery that takes the record gives the nodes of one made from scratch (no record, no hint, no
last dump), and any change to what the nodes were made from (a byte of a site file, a
certificate's bytes, a new file a glob matches, an ``<IfFile>`` target appearing) makes the
discovery from scratch again; a record others may write, or another endpoint's, is not used.
Real httpd dumps, through the generated configurations of test_discovery_generated."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
from apache_peer import apache_binary
from test_discovery_generated import _generate
from tlsgate import ConnectionSpec, Endpoint
from tlsgate_apache import discovery, plugin, reuse
from tlsgate_apache.plugin import ApacheOptions
from tlsgate_testing.certs import TestCA
from tlsgate_testing.connections import LocalConnection


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many node models were made from the files (not taken from a record)."""
    calls: list[int] = []
    real = discovery.discover
    monkeypatch.setattr(discovery, "discover", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def _endpoint(ctl: Path, instance_id: str | None = None) -> Endpoint:
    ep = Endpoint(name="gen", type="apache", connection=ConnectionSpec(type="local"),
                  options=ApacheOptions(apachectl_path=str(ctl)))
    return attrs.evolve(ep, instance_id=instance_id) if instance_id else ep


def _discover(endpoint: Endpoint) -> list[tuple]:
    return [attrs.astuple(n) for n in plugin.discover_nodes(endpoint, LocalConnection())]


def _cold(endpoint: Endpoint, cache: Path) -> list[tuple]:
    for f in (cache / "apache").iterdir():
        f.unlink()
    return _discover(endpoint)


@pytest.mark.parametrize("per_file", [1, 100])
def test_a_reused_discovery_gives_the_nodes_of_one_made_from_scratch(
    tmp_path: Path, test_ca: TestCA, per_file: int, monkeypatch: pytest.MonkeyPatch, made: list[int]
) -> None:
    if apache_binary() is None:
        pytest.skip("apache2/httpd is not installed")
    cache = tmp_path / "cache"
    monkeypatch.setenv("TLSGATE_CACHE_DIR", str(cache))
    root = tmp_path / "gen root"
    ctl, _, _ = _generate(root, test_ca, 250, per_file)
    endpoint = _endpoint(ctl)

    cold = _discover(endpoint)
    record = reuse.record_file(endpoint)
    assert record.stat().st_mode & 0o777 == 0o600 and made == [1]
    assert _discover(endpoint) == cold and made == [1]  # taken from the record

    # a certificate's bytes change (the same path): made again, with the new certificate
    c0 = root / "certs" / "c0.crt"
    c0.write_bytes((root / "certs" / "c1.crt").read_bytes())
    renewed = _discover(endpoint)
    assert made == [1, 1] and renewed != cold and renewed == _cold(endpoint, cache)
    assert _discover(endpoint) == renewed and made == [1, 1, 1]

    # one byte of a site file: made again
    site = next(p for p in sorted((root / "sites").glob("*.conf")) if b"ServerName site" in p.read_bytes())
    site.write_bytes(site.read_bytes().replace(b"ServerName site", b"ServerName sitf", 1))
    del made[:]
    renamed = _discover(endpoint)
    assert made == [1] and renamed != renewed and any(n[0].startswith("sitf") for n in renamed)
    assert renamed == _cold(endpoint, cache)

    if per_file != 1:
        return  # (the record's own checks below do not depend on the layout)

    # a damaged record (well-formed JSON, nodes of the wrong shape) is not used
    data = json.loads(record.read_text())
    data["nodes"] = [["only a name"] for _ in data["nodes"]]
    record.write_text(json.dumps(data))
    del made[:]
    assert _discover(endpoint) == renamed and made == [1]

    # a record others may write, or one of another endpoint, is not used
    del made[:]
    assert _discover(endpoint) == renamed and made == []  # (recorded again above)
    record.chmod(0o622)
    assert _discover(endpoint) == renamed and made == [1]
    assert record.stat().st_mode & 0o777 == 0o600  # written again, private
    other = _endpoint(ctl, "another")
    reuse.record_file(other).write_bytes(record.read_bytes())
    reuse.record_file(other).chmod(0o600)
    assert _discover(other) == renamed and made == [1, 1]
    assert json.loads(reuse.record_file(other).read_text())["ident"] != json.loads(record.read_text())["ident"]


def test_the_record_is_not_taken_when_a_question_the_walk_asked_has_another_answer(
    tmp_path: Path, test_ca: TestCA, monkeypatch: pytest.MonkeyPatch, made: list[int]
) -> None:
    """The answers of ``glob`` and ``exists`` are checked too, not only the files read: a new
    file where an Include's glob looks, an ``<IfFile>`` target that appears (httpd's dump would
    list a file it then includes, but the record must not depend on that)."""
    if apache_binary() is None:
        pytest.skip("apache2/httpd is not installed")
    monkeypatch.setenv("TLSGATE_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "root"
    ctl, _, _ = _generate(root, test_ca, 12, 4)
    with (root / "httpd.conf").open("a") as fh:
        fh.write("<IfFile flag.txt>\n    ServerName flagged\n</IfFile>\n")
    endpoint = _endpoint(ctl)
    _discover(endpoint)
    reused = reuse.load(endpoint)
    assert reused is not None and reused.unchanged(LocalConnection())
    kinds = {kind for kind, _, _ in reused.answers}
    assert {"glob", "exists"} <= kinds

    (root / "sites" / "zz-new.conf").write_text("# nothing yet\n")
    assert not reused.unchanged(LocalConnection())
    (root / "sites" / "zz-new.conf").unlink()
    assert reused.unchanged(LocalConnection())
    (root / "flag.txt").write_text("")
    assert not reused.unchanged(LocalConnection())


def test_a_broken_record_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TLSGATE_CACHE_DIR", str(tmp_path / "cache"))
    endpoint = _endpoint(Path("/usr/sbin/apache2ctl"))
    path = reuse.record_file(endpoint)
    path.parent.mkdir(parents=True, mode=0o700)
    for body in (b"", b"[]", b"{", json.dumps({"ident": reuse._ident(endpoint)}).encode()):
        path.write_bytes(body)
        path.chmod(0o600)
        assert reuse.load(endpoint) is None
