"""Core fixtures: a private TLSGATE_HOME, a test CA, and a CLI runner."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .certs import TestCA


@pytest.fixture(scope="session", autouse=True)
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """tlsgate's cache (the plugins' declarations, Apache's read-ahead hints) in the session's
    temporary directory, not the user's ~/.cache, unless the run names one."""
    if os.environ.get("TLSGATE_CACHE_DIR"):
        yield
        return
    os.environ["TLSGATE_CACHE_DIR"] = str(tmp_path_factory.mktemp("tlsgate-cache"))
    try:
        yield
    finally:
        os.environ.pop("TLSGATE_CACHE_DIR", None)


@pytest.fixture(scope="session")
def test_ca() -> TestCA:
    """A throw-away root + intermediate CA (EC P-256) for the whole session."""
    return TestCA()


@pytest.fixture
def tlsgate_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inventory_backend: str,
                 request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh, private ``$TLSGATE_HOME`` (inventory, master key, known_hosts) for one test.
    With ``--inventory=postgresql`` (or ``both``) the inventory is a fresh PostgreSQL database
    named by ``$TLSGATE_DATABASE_URL`` (see :mod:`tlsgate_testing.postgres`)."""
    home = tmp_path / "tlsgate-home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("TLSGATE_HOME", str(home))
    if inventory_backend == "postgresql":
        monkeypatch.setenv("TLSGATE_DATABASE_URL", request.getfixturevalue("postgres_database"))
        # fleet jobs run in the test's process (no worker serves this database); the queue's
        # own tests start workers
        monkeypatch.setenv("TLSGATE_JOB_RUNNER", "inprocess")
    else:
        monkeypatch.delenv("TLSGATE_DATABASE_URL", raising=False)
    monkeypatch.delenv("TLSGATE_MASTER_KEY", raising=False)
    from tlsgate import registry

    registry.set_registry(None)
    yield home
    registry.set_registry(None)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 60.0) -> None:
    """Block until something accepts TCP connections on host:port (or raise TimeoutError)."""
    import socket
    import time

    end = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > end:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.1)


def env_without_secrets() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "PASSWORD" not in k and "TOKEN" not in k}


@contextlib.contextmanager
def world_readable_dir(prefix: str) -> Iterator[Path]:
    """A fresh root-owned directory, mode 0755, outside pytest's 0700 tmp tree (so a non-root
    account over ssh can read what is inside); removed when the block ends."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)
