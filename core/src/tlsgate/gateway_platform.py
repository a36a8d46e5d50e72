"""Which kind of gateway this is: "windows", "linux" or "docker" (the reference document's
columns). On a Docker gateway, ``local`` connections are never allowed.

"Docker" means the gateway installed as its container image (``Dockerfile`` at the repository
root sets ``TLSGATE_GATEWAY_PLATFORM=docker``): there the endpoints' software and files live in
other containers or hosts, so "local" would silently act on the gateway's own file system.
Merely running inside *a* container is not enough: a container (or CI job) that runs nginx and
tlsgate side by side is a perfectly local setup, and generic detection (``/.dockerenv``,
cgroups) would refuse it. ``TLSGATE_GATEWAY_PLATFORM`` (windows|linux|docker) overrides the
detection either way.
"""

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
    return "linux"


def in_container() -> bool:
    """Whether the process runs in some container (informational, shown by ``tls test``)."""
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        return True
    try:
        text = Path("/proc/1/cgroup").read_text()
    except OSError:
        return False
    return any(word in text for word in ("docker", "containerd", "kubepods", "libpod"))
