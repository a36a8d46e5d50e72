"""tlsgate plugin for HAProxy (endpoint type ``haproxy``); the hooks are in :mod:`.plugin`."""
