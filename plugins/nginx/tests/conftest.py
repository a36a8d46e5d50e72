"""Fixtures for the nginx plugin tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for nginx_helpers


@pytest.fixture(autouse=True)
def _short_verify_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload on this machine shows within a second; a failing check need not wait 20 s."""
    from tlsgate_nginx import install

    monkeypatch.setattr(install, "VERIFY_DEADLINE", 4.0)


#: The opt-in test kit (fixtures: test_ca, tlsgate_home, sshd, OpenBao, servers, WinRM peer).
pytest_plugins = ["tlsgate_testing"]
