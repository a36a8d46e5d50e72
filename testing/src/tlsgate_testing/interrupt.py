"""Killing a real ``tlsgate`` process at a chosen stage of an install, deterministically.

* :func:`die_at_env`: environment for a ``tlsgate`` subprocess that SIGKILLs itself at the n-th
  creation (``open``) or rename (``rename``) of one of its ``.tlsgate-*`` temporaries. It is a
  ``sitecustomize`` on ``PYTHONPATH`` installing a Python audit hook (PEP 578): tlsgate's code
  is not changed, the process really dies by SIGKILL at that instant.
* :class:`PauseBinary`: a wrapper around a real program (``nginx``) that, while a pause file
  exists, stops at a given call (``-t``, ``-s reload``), says so in a file (with its pid) and
  sleeps, so the test can kill tlsgate while it waits there. The wrapper execs the real binary
  under its own name, so a master started through it reports the wrapper as its binary.
* :func:`tlsgate_cli`: run ``tlsgate`` (subprocess, stdout piped) with a private home.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

_SITECUSTOMIZE = '''
import os, signal, sys
_spec = os.environ.get("TLSGATE_TEST_DIE_AT", "")
if _spec:
    _event, _nth = _spec.split(":")
    _seen = [0]

    def _ours(path):
        try:
            return os.path.basename(os.fsdecode(path)).startswith(".tlsgate-")
        except TypeError:
            return False

    def _hook(event, args):
        if _event == "open" and event == "open" and _ours(args[0]) and (args[2] or 0) & os.O_CREAT:
            pass
        elif _event == "rename" and event == "os.rename" and _ours(args[0]):
            pass
        else:
            return
        _seen[0] += 1
        if _seen[0] == int(_nth):
            os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(_hook)
'''


def die_at_env(directory: Path, event: str, nth: int = 1) -> dict[str, str]:
    """Environment additions that make a tlsgate process SIGKILL itself at the ``nth``
    ``event`` ("open": a temporary is about to be created; "rename": a complete temporary is
    about to be renamed over its target)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    path = os.pathsep.join(p for p in (str(directory), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "TLSGATE_TEST_DIE_AT": f"{event}:{nth}"}


class PauseBinary:
    """``<dir>/bin/<name>``: runs ``real``; while ``<dir>/pause-<stage>`` exists, a call whose
    argv contains ``match`` (before: ``-t``; after: ``-s reload``, run first) writes its pid to
    ``<dir>/at-<stage>`` and sleeps."""

    def __init__(self, directory: Path, real: str, stages: dict[str, tuple[str, bool]]) -> None:
        self.dir = directory
        (directory / "bin").mkdir(parents=True, exist_ok=True)
        name = Path(real).name
        self.path = directory / "bin" / name
        lines = ["#!/bin/bash", 'args=" $* "']
        for stage, (match, after) in stages.items():
            at = f"{directory}/at-{stage}"
            run_first = f'"{real}" "$@"; rc=$?; ' if after else ""
            lines.append(f'if [[ "$args" == *" {match} "* && -e {directory}/pause-{stage} ]]; then '
                         f"{run_first}echo $$ > {at}.tmp; mv {at}.tmp {at}; sleep 120; "
                         + ("exit $rc; " if after else "") + "fi")
        lines.append(f'exec -a "$0" "{real}" "$@"')
        self.path.write_text("\n".join(lines) + "\n")
        self.path.chmod(0o755)

    def pause(self, stage: str) -> None:
        (self.dir / f"pause-{stage}").touch()

    def release(self, stage: str) -> None:
        (self.dir / f"pause-{stage}").unlink(missing_ok=True)
        marker = self.dir / f"at-{stage}"
        if marker.exists():
            try:
                os.kill(int(marker.read_text()), signal.SIGKILL)  # the sleeping wrapper we made
            except (ProcessLookupError, ValueError):
                pass
            marker.unlink()

    def wait_at(self, stage: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
        """Block until a call stopped at ``stage`` (or fail if ``proc`` ended first)."""
        marker = self.dir / f"at-{stage}"
        end = time.monotonic() + timeout
        while not marker.exists():
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"tlsgate ended ({proc.returncode}) before {stage}: {out} {err}")
            if time.monotonic() > end:
                raise TimeoutError(f"no call reached {stage} in {timeout} s")
            time.sleep(0.02)


def tlsgate_cli(home: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run(*args, stdin=None, env=None)``: the ``tlsgate`` command with ``TLSGATE_HOME=home``."""
    exe = str(Path(sys.executable).with_name("tlsgate"))
    base = {k: v for k, v in os.environ.items() if not k.startswith("TLSGATE_")}
    base["TLSGATE_HOME"] = str(home)

    def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args], input=stdin, capture_output=True, text=True,
                              env={**base, **(env or {})}, timeout=timeout, check=False)

    def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([exe, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**base, **(env or {})})

    run.spawn = spawn  # type: ignore[attr-defined]
    return run
