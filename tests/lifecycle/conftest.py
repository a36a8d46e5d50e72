"""Lifecycle tests: ACME against a real Pebble, DNS against a real BIND 9."""

pytest_plugins = ["tlsgate_testing"]
