"""Top-level conftest of the core tests: opt in to the tlsgate test kit."""

pytest_plugins = ["tlsgate_testing"]
