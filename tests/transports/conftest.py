"""Shared helpers for the transport tests: endpoints and credentials for the real sshd fixture."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tlsgate import ConnectionSpec, Credentials, Endpoint, Secret
from tlsgate.transports import ssh
from tlsgate_testing.sshd import SshdServer


@pytest.fixture
def isolated_home(tlsgate_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private $TLSGATE_HOME and a private $HOME (so the real ~/.ssh/known_hosts is not read)."""
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return tlsgate_home


def ssh_endpoint(server: SshdServer, *, name: str = "web1", user: str | None = None,
                 port: int | None = None, **extra: object) -> Endpoint:
    return Endpoint(
        name=name,
        type="pem",
        connection=ConnectionSpec(type="ssh", host=server.host, port=port or server.port,
                                  user=user or server.user, extra=dict(extra)),
    )


def password_credentials(server: SshdServer) -> Credentials:
    return Credentials(password=Secret(server.password))


@pytest.fixture
def trusted(sshd: SshdServer, isolated_home: Path) -> SshdServer:
    """The sshd fixture with its host key already trusted in $TLSGATE_HOME/known_hosts."""
    ssh.trust_host_key(sshd.host, sshd.port, sshd.host_key_public)
    return sshd


@pytest.fixture
def conn(trusted: SshdServer) -> Iterator[ssh.SSHConnection]:
    """A password-authenticated connection as the test user."""
    with ssh.connect_ssh(ssh_endpoint(trusted), password_credentials(trusted)) as c:
        yield c  # type: ignore[misc]


@pytest.fixture
def root_conn(trusted: SshdServer) -> Iterator[ssh.SSHConnection]:
    """A key-authenticated connection as root (for ownership tests)."""
    creds = Credentials(ssh_key_path=str(trusted.root_key.path))
    with ssh.connect_ssh(ssh_endpoint(trusted, user="root"), creds) as c:
        yield c  # type: ignore[misc]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo files of ``examples/make_demo_files.py`` (keystores and a new certificate)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("demo")
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, str(root / "examples" / "make_demo_files.py"), str(out)], check=True,
                   capture_output=True)
    return out
