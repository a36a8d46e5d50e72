"""``python -m tlsgate`` runs the command line."""

from .cli import run

run()
