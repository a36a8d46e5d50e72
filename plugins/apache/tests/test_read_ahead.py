"""Reading ahead while httpd dumps (speculate.py) changes nothing discovery reports: the nodes of a
discovery that read the last one's files and certificates ahead are those of one that did not,
also when the configuration changed since (a file gone, a new one, a certificate path changed)
and when the hint names files and certificates httpd does not read. Real httpd dumps, through
the generated configurations of test_discovery_generated."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
from apache_peer import apache_binary
from test_discovery_generated import _generate
from tlsgate import ConnectionSpec, Endpoint, OperationError
from tlsgate_apache import plugin, speculate
from tlsgate_apache.control import PendingDump
from tlsgate_apache.plugin import ApacheOptions
from tlsgate_testing.certs import TestCA
from tlsgate_testing.connections import LocalConnection

from .conftest import local_endpoint


def _discover(endpoint: Endpoint) -> list[tuple]:
    return [attrs.astuple(n) for n in plugin.discover_nodes(endpoint, LocalConnection())]


@pytest.mark.parametrize("per_file", [1, 100])
def test_read_ahead_gives_the_nodes_of_a_discovery_without(
    tmp_path: Path, test_ca: TestCA, per_file: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if apache_binary() is None:
        pytest.skip("apache2/httpd is not installed")
    monkeypatch.setenv("TLSGATE_CACHE_DIR", str(tmp_path / "cache"))
    # the whole hint is read before the dump is taken (else how much is read ahead depends on
    # how fast httpd is)
    monkeypatch.setattr(PendingDump, "done", lambda self: False)
    root = tmp_path / "gen root"
    ctl, _, _ = _generate(root, test_ca, 250, per_file)
    endpoint = Endpoint(name="gen", type="apache", connection=ConnectionSpec(type="local"),
                        options=ApacheOptions(apachectl_path=str(ctl)))
    hint_file = speculate.hint_file(endpoint)

    cold = _discover(endpoint)
    hint = json.loads(hint_file.read_text())
    sites = sorted(str(p) for p in (root / "sites").glob("*.conf"))
    assert sorted(f for f in hint["files"] if "/sites/" in f) == sites
    assert f"{root}/certs/fallback.crt" in hint["certificates"] and len(hint["certificates"]) >= 7
    assert _discover(endpoint) == cold  # everything read ahead

    # the configuration changes after the hint was written: a site file gone, a new one, a
    # certificate path changed; and the hint names what httpd does not read
    Path(sites[0]).unlink()
    changed = next(Path(f) for f in sites[1:] if b"certs/c0.crt" in Path(f).read_bytes())
    changed.write_bytes(changed.read_bytes().replace(b"certs/c0.crt", b"certs/c1.crt"))
    (root / "sites" / "zz-new.conf").write_text(
        "<VirtualHost 127.0.0.1:1>\n    ServerName new.gen.test\n    SSLEngine on\n"
        "    SSLCertificateFile certs/c2.crt\n</VirtualHost>\n")
    stray = root / "not-included.conf"  # a vhost httpd never sees, read ahead
    stray.write_text("<VirtualHost 127.0.0.1:2>\n    ServerName stray.gen.test\n</VirtualHost>\n")
    hint["files"] += [str(stray), str(root / "no-such.conf")]
    hint["certificates"] = [str(root / "certs" / "no-such.crt"), *hint["certificates"]]
    hint_file.write_text(json.dumps(hint))
    stale = _discover(endpoint)
    hint_file.unlink()
    fresh = _discover(endpoint)
    assert stale == fresh
    assert fresh != cold and any(n[0] == "new.gen.test" for n in fresh)
    assert not any(n[0] == "stray.gen.test" for n in fresh)
    assert str(stray) not in json.loads(hint_file.read_text())["files"]  # the new hint: what was read


def test_a_broken_hint_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TLSGATE_CACHE_DIR", str(tmp_path / "cache"))
    endpoint = Endpoint(name="gen", type="apache", connection=ConnectionSpec(type="local"),
                        options=ApacheOptions(apachectl_path="/usr/sbin/apache2ctl"))
    other = attrs.evolve(endpoint, instance_id="another")
    speculate.save_hint(endpoint, speculate.Hint(["/etc/a.conf", "relative.conf"], ["/etc/c.crt"]))
    assert speculate.load_hint(endpoint) == speculate.Hint(["/etc/a.conf"], ["/etc/c.crt"])
    assert speculate.hint_file(endpoint).stat().st_mode & 0o777 == 0o600
    assert speculate.load_hint(other) is None
    for text in ("{", "[]", '{"ident": 1}', json.dumps({"ident": speculate._ident(endpoint), "files": "x"})):
        speculate.hint_file(endpoint).write_text(text)
        assert speculate.load_hint(endpoint) in (None, speculate.Hint())


def test_a_spooled_dump_is_the_piped_one(tmp_path: Path, test_ca: TestCA, monkeypatch: pytest.MonkeyPatch) -> None:
    """httpd's dump through a temporary file says what it says through a pipe; the file is
    removed, and without a writable temporary directory the pipe is used."""
    if apache_binary() is None:
        pytest.skip("apache2/httpd is not installed")
    import tempfile

    from tlsgate_apache.control import ApacheControl

    ctl, _, _ = _generate(tmp_path / "root", test_ca, 30, 10)
    control = ApacheControl(LocalConnection(), str(ctl))
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    piped = control.dump()
    assert len(piped.vhosts) >= 30 and piped.includes
    assert control.dump(spool=True) == piped
    assert list(spool.iterdir()) == []
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no such dir"))
    assert control.dump(spool=True) == piped
    # a failing apachectl is named as before (not the shell that ran it)
    bad = ApacheControl(LocalConnection(), str(tmp_path / "nope"))
    with pytest.raises(OperationError, match=r"nope -t -D DUMP_VHOSTS .* failed: exit 127"):
        bad.dump(spool=True)


def test_read_ahead_against_a_live_server(apache_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real peer's nodes (served certificates confirmed by handshake) with and without a
    read-ahead hint."""
    site, _server = apache_server
    monkeypatch.setenv("TLSGATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(PendingDump, "done", lambda self: False)
    endpoint = local_endpoint(site)
    cold = _discover(endpoint)
    hint = speculate.load_hint(endpoint)
    assert hint is not None and any(f.endswith("10-alpha.conf") for f in hint.files) and hint.certificates
    assert _discover(endpoint) == cold
    assert {n[0] for n in cold} >= {"plain.test", "alpha.test", "beta.test", "gamma.test"}
    assert all("not reachable" not in n[9] for n in cold)  # probed: served what its files say
