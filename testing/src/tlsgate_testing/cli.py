"""Driving the documented command line from tests: ``tlsgate ...`` as a subprocess (stdout
piped, the test's environment, so its private $TLSGATE_HOME), and the input files it takes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def tg(*args: str, timeout: float = 600, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``tlsgate ARGS`` and return what it did (any exit code); ``input``: its standard input
    (a secret option given as '-')."""
    return subprocess.run([sys.executable, "-m", "tlsgate", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=timeout, input=input)


def ok(*args: str, timeout: float = 600, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``tlsgate ARGS``; it must exit 0 (the failure message shows its output)."""
    res = tg(*args, timeout=timeout, input=input)
    assert res.returncode == 0, f"tlsgate {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


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
