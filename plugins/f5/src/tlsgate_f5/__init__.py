"""tlsgate endpoint plugin: F5 BIG-IP over iControl REST."""
