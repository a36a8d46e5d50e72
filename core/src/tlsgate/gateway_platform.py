"""Which kind of gateway this is: "windows", "linux" or "docker" (the reference document's
columns). In Docker, ``local`` connections are never allowed. ``TLSGATE_GATEWAY_PLATFORM``
overrides detection (for unusual container runtimes, and tests)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def gateway_platform() -> str:
    forced = os.environ.get("TLSGATE_GATEWAY_PLATFORM", "").strip().lower()
    if forced in ("windows", "linux", "docker"):
        return forced
    if sys.platform == "win32":
        return "windows"
    if in_container():
        return "docker"
    return "linux"


def in_container() -> bool:
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        return True
    try:
        text = Path("/proc/1/cgroup").read_text()
    except OSError:
        return False
    return any(word in text for word in ("docker", "containerd", "kubepods", "libpod"))
