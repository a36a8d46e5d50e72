"""Test support for tlsgate and its plugins: a throw-away CA, real-peer fixtures (sshd, OpenBao,
nginx, apache2, tomcat10, a WS-Management loopback peer) and the endpoint-type contract suite.

The fixtures are registered with pytest through the ``pytest11`` entry point, so a third-party
plugin's tests get them by installing tlsgate. Servers start only when a test asks for them,
always on 127.0.0.1 with ports chosen free at start.
"""
