"""The HAProxy plugin's tests opt in to the tlsgate test kit, as any third-party plugin does, and
add their own real-HAProxy fixture (haproxy_peer.py, importable by name)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["tlsgate_testing", "haproxy_peer"]
