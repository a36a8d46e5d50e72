"""Where tlsgate keeps its state: ``$TLSGATE_HOME``, else ``/var/lib/tlsgate`` for root on
Linux, else the platform's user data directory (platformdirs)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def home() -> Path:
    """The state directory, created 0700 on first use."""
    env = os.environ.get("TLSGATE_HOME")
    if env:
        path = Path(env).expanduser()
    elif sys.platform.startswith("linux") and os.geteuid() == 0:
        path = Path("/var/lib/tlsgate")
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("tlsgate", appauthor=False))
    if not path.is_dir():  # one stat when it exists (called per secret sealed or opened)
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def known_hosts() -> Path:
    """tlsgate's own SSH known_hosts (checked together with the user's ~/.ssh/known_hosts)."""
    return home() / "known_hosts"


def backups_dir() -> Path:
    path = home() / "backups"
    if not path.is_dir():
        path.mkdir(exist_ok=True, mode=0o700)
    return path
