"""Starting and stopping a forking server a test owns (nginx, httpd, ...): the shape every
``<name>_peer.py`` shares. The server is found only through its own pid file, so a test stops
exactly what it started, never a process by name."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from .fixtures_core import wait_for_port


def read_pid(pid_file: Path) -> int | None:
    """The pid a server wrote to ``pid_file`` (None: no file yet, or not a number)."""
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not reaped, counts as gone). Linux ``/proc``."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (a master's workers)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def start_daemon(argv: Sequence[str], what: str, ports: Sequence[int], *, pid_file: Path | None = None,
                 timeout: float = 15.0) -> None:
    """Run ``argv`` (a command that forks the server and returns), fail with its message if it
    fails, then wait until every port in ``ports`` accepts connections and, with ``pid_file``,
    until that file names a live process (a parent may write it only after it detaches)."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} did not start: {proc.stderr.strip() or proc.stdout.strip()}")
    for port in ports:
        wait_for_port(port, timeout=timeout)
    if pid_file is None:
        return
    end = time.monotonic() + timeout
    while (pid := read_pid(pid_file)) is None or not process_alive(pid):
        if time.monotonic() > end:
            raise RuntimeError(f"{what} wrote no live pid to {pid_file}")
        time.sleep(0.02)


def kill_daemon(pid_file: Path, timeout: float = 10.0) -> None:
    """SIGKILL the process ``pid_file`` names, then its children (the parent first, so it cannot
    fork new ones), and wait until all of them are gone. SIGKILL, not SIGTERM: a test's server
    holds nothing worth a graceful stop, and nginx's master needs ~2 s per instance to stop
    gracefully, which adds up over a session."""
    pid = read_pid(pid_file)
    if pid is None or not process_alive(pid):
        return
    victims = [pid, *children(pid)]
    for victim in victims:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass
    end = time.monotonic() + timeout
    while time.monotonic() < end and any(process_alive(v) for v in victims):
        time.sleep(0.02)


class Daemon(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


D = TypeVar("D", bound=Daemon)


@contextlib.contextmanager
def running(server: D) -> Iterator[D]:
    """``server`` started for the block, stopped when it ends (whatever the block raised)."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
