"""An estate for the queue tests: one fresh PostgreSQL database (the session's private cluster),
a shared master key, ``tlsgate worker`` processes started and stopped by the test, and p12
keystore endpoints on local files, each in a zone.

A keystore path can be turned into a FIFO (:meth:`Estate.hold`): a worker that installs into it
blocks reading it until the test serves the original bytes (:meth:`Estate.release`), so a test
can kill -9 a worker or restart PostgreSQL at a known point of an install, before anything was
written; releasing it serves the blocked read and puts the original file back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PASSWORD = "store-pw"


def tg_env(estate: Estate) -> dict[str, str]:
    return {**os.environ, **estate.env}


class Estate:
    def __init__(self, tmp: Path, url: str, test_ca: Any) -> None:
        self.tmp = tmp
        self.url = url
        self.ca = test_ca
        home = tmp / "home"
        home.mkdir(mode=0o700)
        from cryptography.fernet import Fernet

        self.env = {
            "TLSGATE_HOME": str(home),
            "TLSGATE_DATABASE_URL": url,
            "TLSGATE_MASTER_KEY": Fernet.generate_key().decode(),  # shared by every gateway
            "TLSGATE_WORKER_HEARTBEAT": "0.5",
            "TLSGATE_WORKER_STALLED": "6",
            "TLSGATE_LEASE_TTL": "5",
            "TLSGATE_LEASE_WAIT": "60",
            "TLSGATE_GATEWAY": "cli",
            "TLSGATE_JOB_RUNNER": "queue",
        }
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self._servers: list[threading.Thread] = []
        self._stop = threading.Event()
        self.original: dict[str, bytes] = {}
        self.modes: dict[str, int] = {}
        self.pids_to_kill: list[int] = []

    # -- CLI ---------------------------------------------------------------------------------------
    def tg(self, *args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tlsgate", *args], capture_output=True, text=True, input=stdin,
                              env=tg_env(self), timeout=timeout)

    def ok(self, *args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        res = self.tg(*args, stdin=stdin, timeout=timeout)
        assert res.returncode == 0, f"{args}: {res.stdout}\n{res.stderr}"
        return res

    def json(self, *args: str, timeout: float = 60) -> Any:
        return json.loads(self.ok(*args, "--json", timeout=timeout).stdout)

    # -- endpoints ---------------------------------------------------------------------------------
    def add_p12(self, name: str, zone: str, *extra: str) -> Path:
        path = self.tmp / "stores" / f"{name}.p12"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(self.ca.issue(f"{name}.old.example").pfx(PASSWORD))
        self.ok("tls", "add", "p12", "--name", name, "--connection_type", "local", "--path", str(path),
                "--store_password", "-", "--zone", zone, *extra, stdin=PASSWORD + "\n")
        return path

    # -- workers -----------------------------------------------------------------------------------
    def start_worker(self, name: str, *zones: str, concurrency: int = 2) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "tlsgate", "worker", "--gateway", name, "--concurrency", str(concurrency)]
        for z in zones:
            argv += ["--zone", z]
        log = open(self.tmp / f"worker-{name}.log", "wb")
        proc = subprocess.Popen(argv, env=tg_env(self), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.workers[name] = proc
        return proc

    def wait_gateways(self, *names: str, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            alive = {g["name"] for g in self.json("gateway", "list") if g["alive"]}
            if set(names) <= alive:
                return
            for n in names:
                if n in self.workers and self.workers[n].poll() is not None:
                    raise AssertionError(f"worker {n} exited: {self.worker_log(n)}")
            time.sleep(0.3)
        raise AssertionError(f"gateways {names} did not register: {self.json('gateway', 'list')}")

    def worker_log(self, name: str) -> str:
        return (self.tmp / f"worker-{name}.log").read_text(errors="replace")[-4000:]

    def kill9(self, name: str) -> None:
        proc = self.workers[name]
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and any child it started
        proc.wait(10)

    def stop_workers(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.workers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    # -- holding an install at its first read --------------------------------------------------
    def hold(self, path: Path) -> None:
        """Make ``path`` a FIFO: the next install into it blocks reading it."""
        self.original[str(path)] = path.read_bytes()
        self.modes[str(path)] = path.stat().st_mode & 0o7777
        path.unlink()
        os.mkfifo(path, 0o600)

    def release(self, path: Path) -> None:
        """Serve the original bytes to the reader blocked on the FIFO, and put the original file
        back (an atomic rename, while the FIFO is still open for writing) before that reader sees
        end-of-file: every later read (the transaction's backup, its compare just before the
        rename) finds the regular file. Serving the FIFO twice could hand one reader the bytes
        twice (a writer that re-opens before the reader's EOF), which reads as a changed file."""
        data = self.original[str(path)]

        def serve() -> None:
            while not self._stop.is_set():
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:  # ENXIO: nobody reads yet
                    time.sleep(0.02)
                    continue
                try:
                    os.set_blocking(fd, True)
                    tmp = path.with_name(path.name + ".orig")
                    tmp.write_bytes(data)
                    os.chmod(tmp, self.modes[str(path)])
                    os.write(fd, data)
                    os.replace(tmp, path)
                finally:
                    os.close(fd)
                return

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        self._servers.append(t)

    @staticmethod
    def wait_for(predicate: Any, timeout: float = 60, what: str = "condition") -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def db(self) -> Any:
        """A raw connection to the estate's database (rows as the inventory sees them)."""
        from tlsgate.database import PostgresConnection

        return PostgresConnection(self.url)

    def close(self) -> None:
        self._stop.set()
        self.stop_workers()
        for name in self.workers:  # shown by pytest when the test failed
            print(f"--- worker {name} ---\n{self.worker_log(name)}")


@pytest.fixture
def estate(tmp_path: Path, postgres_database: str, test_ca: Any) -> Iterator[Estate]:
    e = Estate(tmp_path, postgres_database, test_ca)
    try:
        yield e
    finally:
        e.close()

