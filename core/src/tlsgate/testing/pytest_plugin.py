"""pytest entry point of :mod:`tlsgate.testing` (registered as ``pytest11``: ``tlsgate``).

Each peer lives in its own module; fixtures start their server only when a test asks for it.
"""

pytest_plugins = [
    "tlsgate.testing.fixtures_core",
    "tlsgate.testing.sshd",
    "tlsgate.testing.openbao",
    "tlsgate.testing.winrm_fixtures",
    "tlsgate.testing.nginx",
    "tlsgate.testing.apache",
    "tlsgate.testing.tomcat",
]
