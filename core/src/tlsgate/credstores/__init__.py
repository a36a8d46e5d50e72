"""Built-in credential stores: local (encrypted in the inventory) and vault (OpenBao/Vault KV v2)."""
