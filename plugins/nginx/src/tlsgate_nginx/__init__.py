"""tlsgate endpoint plugin: Nginx."""
