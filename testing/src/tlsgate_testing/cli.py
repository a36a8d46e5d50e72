"""Driving the documented command line from tests: ``tlsgate ...`` as a subprocess (stdout
piped, the test's environment, so its private $TLSGATE_HOME), and the input files it takes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def tg(*args: str, timeout: float = 600, input: str | None = None,
       stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``tlsgate ARGS`` and return what it did (any exit code); ``input`` (or ``stdin``): its
    standard input (a secret option given as '-')."""
    return subprocess.run([sys.executable, "-m", "tlsgate", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=timeout, input=input if input is not None else stdin)


def ok(*args: str, timeout: float = 600, input: str | None = None,
       stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``tlsgate ARGS``; it must exit 0 (the failure message shows its output)."""
    res = tg(*args, timeout=timeout, input=input, stdin=stdin)
    assert res.returncode == 0, f"tlsgate {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


#: ``tlsgate`` itself with every TLS client handshake of the process counted (the count written to
#: $TLSGATE_TEST_HANDSHAKES at exit): the CLI as a script runs it, nothing of tlsgate replaced.
_COUNTING_CLI = """
import atexit, os, ssl, sys
from pathlib import Path
count = [0]
wrap = ssl.SSLContext.wrap_socket
def counted(self, *args, **kwargs):
    count[0] += 1
    return wrap(self, *args, **kwargs)
ssl.SSLContext.wrap_socket = counted
atexit.register(lambda: Path(os.environ["TLSGATE_TEST_HANDSHAKES"]).write_text(str(count[0])))
from tlsgate.cli import run
sys.argv[0] = "tlsgate"
run()
"""


def tg_counting_handshakes(count_file: Path, *args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``tlsgate ARGS`` (any exit code) and return what it did and how many TLS handshakes
    it made (probes and verification), counted in its own process."""
    res = subprocess.run([sys.executable, "-c", _COUNTING_CLI, *args], capture_output=True, text=True,
                         env={**os.environ, "TLSGATE_TEST_HANDSHAKES": str(count_file)}, timeout=timeout)
    return res, int(count_file.read_text())


def pem_files(directory: Path, issued: Any) -> list[str]:
    """``--cert``/``--key`` options for an issued certificate (leaf + chain in the cert file)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "c.pem").write_bytes(issued.cert_pem + issued.chain_pem)
    (directory / "k.pem").write_bytes(issued.key_pem)
    return ["--cert", str(directory / "c.pem"), "--key", str(directory / "k.pem")]


def settle() -> None:
    """Let the clock pass the pending-change check's slack, so that an edit a test makes next is
    clearly later than the server's last load (/proc start times have 1 s resolution)."""
    from tlsgate.policy import START_SLACK

    time.sleep(START_SLACK + 0.3)


def cli_runner(tmp_path: Path, *, timeout: float = 180) -> Any:
    """``run(*args)``: the installed ``tlsgate`` command, stdout piped, with a private
    ``$TLSGATE_HOME`` and ``$HOME`` under ``tmp_path`` (never the real ~/.ssh/known_hosts), no
    master key from the environment, and no traceback allowed on stderr (a user mistake must be
    an error message, not a crash)."""
    exe = str(Path(sys.executable).with_name("tlsgate"))
    home = tmp_path / "user-home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "TLSGATE_HOME": str(tmp_path / "home"), "HOME": str(home)}
    env.pop("TLSGATE_MASTER_KEY", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)
        assert "Traceback" not in res.stderr, res.stderr
        return res

    return run


def tree_snapshot(root: Path, *, skip: tuple[str, ...] = ()) -> dict[Path, bytes]:
    """Every file under ``root`` and its bytes, but those under the named subfolders (logs, pid
    and temp folders a running server writes): what "every other file byte-identical" compares."""
    skipped = {root / s for s in skip}
    return {p: p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not any(s in p.parents for s in skipped)}
