"""A private PostgreSQL cluster for the tests (``initdb`` + ``pg_ctl`` in a temporary directory,
listening on 127.0.0.1 at a free port, no Unix socket, never a pre-existing server).

* ``postgres_cluster`` (session): the running cluster; ``cluster.url(db)``, ``cluster.restart()``.
* ``postgres_database``: a fresh database for one test, made by ``CREATE DATABASE ... TEMPLATE``
  from a template on which tlsgate's migrations (and procrastinate's schema) already ran, so a
  test pays milliseconds, not a migration.
* ``--inventory=sqlite|postgresql|both`` (default ``sqlite``): which engine ``tlsgate_home``
  gives a test. With ``both`` every test that uses ``tlsgate_home`` runs once per engine
  (``[sqlite]`` / ``[postgresql]``); with ``postgresql`` ``TLSGATE_DATABASE_URL`` names the
  test's own database, so a ``tlsgate`` subprocess inherits it.

initdb refuses to run as root: when the tests run as root (as CI does) the cluster runs as the
``postgres`` system user (Debian's package creates it) in a directory that user owns.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .fixtures_core import free_port, wait_for_port

BACKENDS = ("sqlite", "postgresql")
TEMPLATE = "tlsgate_template"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tlsgate")
    group.addoption("--inventory", default=os.environ.get("TLSGATE_TEST_INVENTORY", "sqlite"),
                    choices=(*BACKENDS, "both"),
                    help="inventory engine for tests that use tlsgate_home: sqlite, postgresql or both")


def selected_backends(config: pytest.Config) -> list[str]:
    value = config.getoption("--inventory", default="sqlite")
    return list(BACKENDS) if value == "both" else [value]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "inventory_backend" in metafunc.fixturenames:
        backends = selected_backends(metafunc.config)
        if len(backends) > 1:
            metafunc.parametrize("inventory_backend", backends, indirect=True)


@pytest.fixture
def inventory_backend(request: pytest.FixtureRequest) -> str:
    """The engine this test's inventory runs on ("sqlite" or "postgresql")."""
    return getattr(request, "param", None) or selected_backends(request.config)[0]


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL server's bin directory (Debian layout), or pg_config's."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        return Path(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip())
    raise RuntimeError("PostgreSQL server binaries not found: install Debian's postgresql (scripts/bootstrap.sh)")


class PostgresCluster:
    """A throw-away cluster: superuser ``tlsgate``, trust authentication on 127.0.0.1 only."""

    def __init__(self, base: Path) -> None:
        self.bindir = postgres_bindir()
        self.base = base
        self.data = base / "data"
        self.port = free_port()
        self.user = "tlsgate"
        self._as: list[str] = []
        if os.geteuid() == 0:
            # initdb and postgres refuse root: run them as the postgres system user
            pw = pwd.getpwnam("postgres")
            os.chown(base, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._names = itertools.count(1)

    def _run(self, *argv: str) -> None:
        proc = subprocess.run([*self._as, *argv], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {proc.stdout}{proc.stderr}")

    def init(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust",
                  "--encoding=UTF8", "--no-instructions", "--no-sync")
        # loopback only, no Unix socket; durability off: the cluster lives as long as the session
        conf = (f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = ''\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 300\n"
                "shared_buffers = 64MB\n")
        hba = "host all all 127.0.0.1/32 trust\n"
        # (root may write the postgres user's files; they keep their owner)
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.write(conf)
        (self.data / "pg_hba.conf").write_text(hba)

    def start(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "server.log"),
                  "-w", "-t", "60", "start")
        wait_for_port(self.port)

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop (fast: every client connection is cut) and start again on the same port."""
        self.stop("fast")
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def make_template(self) -> None:
        """A database holding tlsgate's migrated schema, for CREATE DATABASE ... TEMPLATE."""
        from tlsgate.inventory import Inventory

        self.admin(f"CREATE DATABASE {TEMPLATE}")
        Inventory(url=self.url(TEMPLATE)).close()

    def new_database(self) -> str:
        """A fresh, migrated database; returns its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster for the session (see the module docstring)."""
    base = Path(tempfile.mkdtemp(prefix="tlsgate-pg-"))
    cluster = PostgresCluster(base)
    cluster.init()
    cluster.start()
    try:
        cluster.make_template()
        yield cluster
    finally:
        try:
            cluster.stop("immediate")
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_database(postgres_cluster: PostgresCluster) -> str:
    """The URL of a fresh database with tlsgate's schema, for one test."""
    return postgres_cluster.new_database()


def database_text(url: str) -> str:
    """Every row of every table of a database as JSON text (to check no secret is stored in clear)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_type = 'BASE TABLE'").fetchall()]
        out = []
        for name in names:
            rows = conn.execute(f'SELECT row_to_json(t)::text FROM "{name}" t').fetchall()  # noqa: S608 (catalog names)
            out.extend(r[0] for r in rows)
        return "\n".join(out)
