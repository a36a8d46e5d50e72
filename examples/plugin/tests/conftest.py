"""The example plugin opts in to the tlsgate test kit like any third-party plugin."""

pytest_plugins = ["tlsgate_testing"]
