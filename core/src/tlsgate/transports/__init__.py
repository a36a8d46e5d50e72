"""Built-in transports. Each module is a plugin registered through the ``tlsgate`` entry point
group, exactly as a third-party transport would be."""
