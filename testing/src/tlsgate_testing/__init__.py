"""tlsgate's opt-in test kit for plugin authors: a throw-away CA, real-peer fixtures shared by
several parts (sshd, OpenBao, PostgreSQL, Pebble (ACME) and its ARI front, BIND 9, a WS-Management
loopback peer and simulated Windows host), the in-memory :class:`~tlsgate_testing.fake.FakeConnection` and the
endpoint-type contract suite (:mod:`tlsgate_testing.contract`). Servers only one plugin tests
against (nginx, apache2, tomcat10, haproxy) live in that plugin's tests folder (``nginx_peer.py``, ...).

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
    "tlsgate_testing.bind",
    "tlsgate_testing.pebble",
    "tlsgate_testing.ari",
]
