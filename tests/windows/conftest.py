"""Fixtures of the Windows transport tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tlsgate.transports import ssh
from tlsgate_testing.winrm_fixtures import SSHWindowsHost


@pytest.fixture
def winssh(ssh_windows_host: SSHWindowsHost, tlsgate_home: Path, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[SSHWindowsHost]:
    """The ssh_windows host with its key trusted in a private $TLSGATE_HOME (and a private $HOME)."""
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    ssh.trust_host_key(ssh_windows_host.host, ssh_windows_host.port, ssh_windows_host.host_key_public)
    yield ssh_windows_host
