#!/usr/bin/env bash
# The test command (README): set up everything the tests need on a fresh Debian machine, then
# run ruff and the whole test suite against real peers on 127.0.0.1. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
VENV=${TLSGATE_VENV:-$PWD/.venv}
"$VENV/bin/ruff" check .
set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
rc=$?
if [ $rc -eq 0 ] && [ $# -eq 0 ]; then
  # the core and contract suites again, on a PostgreSQL inventory (a private initdb cluster)
  "$VENV/bin/python" -m pytest -p no:cacheprovider -q tests/core --inventory=postgresql
  rc=$?
fi
set -e
if [ $rc -eq 5 ]; then
  echo "test.sh: pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit $rc
