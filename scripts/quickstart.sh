#!/usr/bin/env bash
# README's first command: set up the Python environment and run the quickstart job (SQLite
# inventory, local p12/jks/pem endpoints). Needs no root and no Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --python
exec examples/quickstart.sh
