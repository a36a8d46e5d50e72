"""Fixtures for the nginx plugin tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# this folder on sys.path: nginx_helpers and nginx_peer (the real nginx fixture) import by name,
# also from outside the plugin (benchmarks/, tests/ that need a real nginx)
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _short_verify_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload on this machine shows within a second; a failing check need not wait 20 s."""
    from tlsgate_nginx import install

    monkeypatch.setattr(install, "VERIFY_DEADLINE", 4.0)


#: The opt-in test kit (test_ca, tlsgate_home, sshd, OpenBao, WinRM peer) and this plugin's own
#: real-nginx fixture (nginx_server).
pytest_plugins = ["tlsgate_testing", "nginx_peer"]
