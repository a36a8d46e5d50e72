"""Lifecycle tests: ACME against a real Pebble, DNS against a real BIND 9 (the kit is opted in by
tests/conftest.py)."""
