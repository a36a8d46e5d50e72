"""``cert deploy`` of more than 10 endpoints without ``--yes``: on a terminal it asks first. The
real ``tlsgate`` command runs in a pseudo-terminal (stdin and stdout a TTY, as an operator's
shell has them): answering no changes nothing and exits 1, answering yes deploys. With stdout
piped (a script, CI, cron) there is no prompt by design: nobody could answer it, and the
command must not hang; the deploy runs as asked (``--dry-run`` is how a script previews).
Eleven p12 keystores (the legacy profile: quick to write) over the local connection."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tlsgate.api import Gateway
from tlsgate_testing.certs import TestCA

TLSGATE = str(Path(sys.executable).with_name("tlsgate"))
PW = "changeit"
N = 11  # one more than the confirmation threshold


def run_in_terminal(args: list[str], answer: bytes | None, timeout: float = 120) -> tuple[int, str]:
    """Run ``tlsgate args`` with a pseudo-terminal as stdin, stdout and stderr; when ``answer``
    is given, send it once the confirmation question shows. Returns (exit status, output)."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120"}
    proc = subprocess.Popen([TLSGATE, *args], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    out = b""
    sent = answer is None
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
                if not sent and b"[y/N]" in out:
                    os.write(master, answer)
                    sent = True
            elif proc.poll() is not None:
                break
        status = proc.wait(timeout=max(1.0, end - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return status, out.decode("utf-8", "replace")


@pytest.fixture
def fleet11(tlsgate_home: Path, tmp_path: Path, test_ca: TestCA):  # type: ignore[no-untyped-def]
    gw = Gateway()
    gw.add_org("Ops")
    old = test_ca.issue("svc.test")
    files = []
    for i in range(N):
        path = tmp_path / f"ks{i:02d}.p12"
        path.write_bytes(old.pfx(PW))
        files.append(path)
        gw.add_endpoint("p12", name=f"ks{i:02d}", connection_type="local",
                        options={"path": str(path), "store_password": PW, "is_legacy": True})
        gw.delegate(f"ks{i:02d}", "Ops")
    gw.close()

    def new_files(tag: str) -> list[str]:
        new = test_ca.issue("svc.test")
        (tmp_path / f"{tag}.pem").write_bytes(new.cert_pem + new.chain_pem)
        (tmp_path / f"{tag}.key").write_bytes(new.key_pem)
        return ["--cert", str(tmp_path / f"{tag}.pem"), "--key", str(tmp_path / f"{tag}.key")]

    return files, new_files


def jobs_json() -> list[dict]:  # type: ignore[type-arg]
    r = subprocess.run([TLSGATE, "job", "list", "--json"], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_no_on_a_terminal_changes_nothing_and_exits_1(fleet11) -> None:  # type: ignore[no-untyped-def]
    files, new_files = fleet11
    before = [f.read_bytes() for f in files]
    status, out = run_in_terminal(["cert", "deploy", *new_files("n"), "--all", "--parallel", "4"], b"n\n")
    assert "to 11 endpoints?" in out and "[y/N]" in out, out
    assert status == 1, out
    assert [f.read_bytes() for f in files] == before  # no keystore touched
    assert jobs_json() == []  # no job was created
    certs = json.loads(subprocess.run([TLSGATE, "cert", "list", "--json"], capture_output=True, text=True,
                                      check=True).stdout)
    assert certs == []  # the files were not even recorded as a certificate


def test_yes_on_a_terminal_deploys(fleet11) -> None:  # type: ignore[no-untyped-def]
    files, new_files = fleet11
    before = [f.read_bytes() for f in files]
    status, out = run_in_terminal(["cert", "deploy", *new_files("y"), "--all", "--parallel", "4"], b"y\n")
    assert "[y/N]" in out, out
    assert status == 0, out
    assert all(f.read_bytes() != b for f, b in zip(files, before, strict=True))
    (job,) = jobs_json()
    assert job["state"] == "done" and job["counts"]["changed"] == N


def test_piped_output_does_not_ask(fleet11) -> None:  # type: ignore[no-untyped-def]
    files, new_files = fleet11
    before = [f.read_bytes() for f in files]
    r = subprocess.run([TLSGATE, "cert", "deploy", *new_files("p"), "--all", "--parallel", "4"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[y/N]" not in r.stdout + r.stderr
    assert all(f.read_bytes() != b for f, b in zip(files, before, strict=True))
    (job,) = jobs_json()
    assert job["counts"]["changed"] == N
