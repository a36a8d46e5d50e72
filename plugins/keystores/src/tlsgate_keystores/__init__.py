"""tlsgate endpoint plugin: PKCS#12, JKS and PEM keystore files."""
