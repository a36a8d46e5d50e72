"""The install policy's shared checks: names coverage (RFC 6125 wildcards), process start times
read from /proc, pending files and tlsgate's own writes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlsgate import CertificateBundle, Node, OperationError, ValidationError
from tlsgate.policy import (
    InstallPolicy,
    node_names,
    pending_files,
    policy,
    process_start_time,
    refuse_pending,
    require_names_covered,
    uncovered_names,
)
from tlsgate_testing.connections import LocalConnection

LABEL = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)


def bundle(test_ca, *names: str) -> CertificateBundle:  # type: ignore[no-untyped-def]
    issued = test_ca.issue(*names)
    return CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)


def test_uncovered_names_are_refused_and_listed(test_ca) -> None:  # type: ignore[no-untyped-def]
    b = bundle(test_ca, "alpha.test")
    node = Node(name="alpha.test", alias=("www.alpha.test", "alpha.test", "_", "127.0.0.1"))
    with pytest.raises(ValidationError, match=r"does not cover www\.alpha\.test served") as exc:
        require_names_covered(b, [node])
    assert exc.value.option == "--allow_name_mismatch"
    with policy(InstallPolicy(allow_name_mismatch=True)):
        assert require_names_covered(b, [node]) == ["www.alpha.test"]
    assert node_names(Node(name="_default_", alias=("localhost", "~^re$", "[::1]"))) == []


@settings(max_examples=40, deadline=None)
@given(sub=LABEL, deeper=LABEL)
def test_wildcards_cover_one_label_only(test_ca, sub: str, deeper: str) -> None:  # type: ignore[no-untyped-def]
    b = bundle(test_ca, "*.x.test")
    assert uncovered_names(b, [f"{sub}.x.test"]) == []
    assert uncovered_names(b, [f"{deeper}.{sub}.x.test", "x.test"]) == [f"{deeper}.{sub}.x.test", "x.test"]
    assert uncovered_names(b, ["*.x.test"]) == []  # a wildcard server name, by the same wildcard


def test_process_start_time_reads_proc_even_for_odd_names(tmp_path: Path) -> None:
    odd = tmp_path / "a) b"  # comm with a space and a parenthesis: /proc/<pid>/stat's hard case
    odd.symlink_to("/bin/sleep")
    before = time.time()
    proc = subprocess.Popen([str(odd), "30"])
    try:
        started = process_start_time(LocalConnection(), proc.pid)
        assert started is not None and before - 1.5 <= started <= time.time() + 0.5
    finally:
        proc.kill()
        proc.wait()
    assert process_start_time(LocalConnection(), 2**22 + 12345) is None


def test_pending_files_and_own_writes(tmp_path: Path) -> None:
    conn = LocalConnection()
    proc = subprocess.Popen(["sleep", "30"])
    try:
        old, new, own = tmp_path / "old.conf", tmp_path / "new.conf", tmp_path / "own.conf"
        for p in (old, new, own):
            p.write_text("x\n")
        started = process_start_time(conn, proc.pid)
        assert started is not None
        os.utime(old, (started - 60, started - 60))
        os.utime(new, (started + 30, started + 30))
        os.utime(own, (started + 40, started + 40))
        files = [str(old), str(new), str(own), str(tmp_path / "missing.conf")]
        rules = InstallPolicy(own_writes={str(own): own.stat().st_mtime})
        link = tmp_path / "enabled.conf"  # a server names the symlink; tlsgate wrote its target
        link.symlink_to(own)
        with policy(rules):
            assert pending_files(conn, [*files, str(link)], started) == [str(new)]
            with pytest.raises(OperationError, match=r"has not loaded changes .* in: .*new\.conf; .*--apply-pending"):
                refuse_pending(conn, files, proc.pid, "demo")
        applying = InstallPolicy(apply_pending=True)
        with policy(applying):
            assert refuse_pending(conn, files, proc.pid, "demo") == [str(new), str(own)]
        assert applying.applied == {str(new): new.stat().st_mtime, str(own): own.stat().st_mtime}
        assert refuse_pending(conn, files, None, "demo") == []  # not running: nothing to compare
    finally:
        proc.kill()
        proc.wait()


_LABEL = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)  # a name, not an address


@given(st.lists(_LABEL, min_size=2, max_size=4).map(".".join))
def test_a_leading_dot_name_is_the_domain_and_every_name_under_it(domain: str) -> None:
    from tlsgate.probe import sni_for

    # nginx's "server_name .example.org": coverage asks for both names, the probe sends the domain
    assert node_names(Node(name="." + domain)) == [domain, "*." + domain]
    assert sni_for("." + domain) == sni_for(domain)
