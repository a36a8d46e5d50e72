"""tlsgate endpoint plugin: Apache httpd 2.4."""
