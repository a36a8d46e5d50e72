"""tlsgate's opt-in test kit for plugin authors: a throw-away CA, real-peer fixtures (sshd,
OpenBao, nginx, apache2, tomcat10, Pebble (ACME) and BIND 9, a WS-Management loopback peer and simulated Windows host) and
the endpoint-type contract suite.

Opt in from a top-level ``conftest.py``, as with ``pytester``::

    pytest_plugins = ["tlsgate_testing"]

Nothing registers itself: installing ``tlsgate`` or ``tlsgate-testing`` adds no fixture to any
other project's pytest run. Servers start only when a test asks for them, always on 127.0.0.1
with ports chosen free at start.
"""


pytest_plugins = [
    "tlsgate_testing.fixtures_core",
    "tlsgate_testing.postgres",
    "tlsgate_testing.sshd",
    "tlsgate_testing.openbao",
    "tlsgate_testing.winrm_fixtures",
    "tlsgate_testing.nginx",
    "tlsgate_testing.apache",
    "tlsgate_testing.tomcat",
    "tlsgate_testing.bind",
    "tlsgate_testing.pebble",
]
