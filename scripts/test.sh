#!/usr/bin/env bash
# The test command (README): set up everything the tests need on a fresh Debian machine, then
# run ruff and every test against real peers on 127.0.0.1, each test once:
#   0. scripts/check_core_alone.sh: `pip install ./core` alone (.venv-core) brings no pytest
#      plugin of tlsgate's and no pytest / hypothesis, and every core module imports there;
#   1. tests/ in .venv (every distribution installed): core, transports, Windows, lifecycle,
#      queue and the cross-plugin fleet tests;
#   2. tests/core again on a PostgreSQL inventory (a private initdb cluster);
#   3. scripts/test_isolated.sh: every plugin's tests folder, all of it (slow tests included),
#      with only core + tlsgate-testing + that plugin installed. The plugin folders are not run
#      in pass 1 (that would run them twice). Two lanes: Tomcat in its own venv
#      (.venv-isolated-2) beside the other plugins in turn.
# Every pass runs even when an earlier one failed; a pytest pass fails on any pytest exit status but 0
# (5, "no tests collected", included) or when it passed no test at all. At the end
# scripts/test_report.py prints, per pass, the counts (passed, failed, skipped, xfailed) and the
# reason of every skip.
#   scripts/test.sh                  all of the above (CI: .ci/run)
#   scripts/test.sh ARGS...          ruff, then only `pytest ARGS...` in .venv (testpaths: every
#                                    folder, plugins included)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
start=$(date +%s)
scripts/bootstrap.sh
VENV=${TLSGATE_VENV:-$ROOT/.venv}
"$VENV/bin/ruff" check .

if [ $# -ne 0 ]; then
  set +e
  "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
  rc=$?
  set -e
  if [ $rc -eq 5 ]; then
    echo "test.sh: pytest collected no tests: that is a failure" >&2
    exit 1
  fi
  exit $rc
fi

REPORTS=${TLSGATE_REPORT_DIR:-$ROOT/.test-reports}
rm -rf "$REPORTS"
mkdir -p "$REPORTS"
export TLSGATE_REPORT_DIR=$REPORTS
failed=()

run_pass() {  # run_pass NAME PYTEST-ARGS...: one pytest run in .venv, its JUnit XML in $REPORTS
  local name=$1 rc
  shift
  echo "== test.sh: $name"
  set +e
  "$VENV/bin/python" -m pytest -p no:cacheprovider --junitxml="$REPORTS/$name.xml" "$@"
  rc=$?
  set -e
  if [ $rc -ne 0 ]; then
    [ $rc -eq 5 ] && echo "test.sh: $name: pytest collected no tests: that is a failure" >&2
    failed+=("$name")
  fi
}

echo "== test.sh: 0-core-alone"
scripts/check_core_alone.sh || failed+=("0-core-alone")
run_pass 1-tests tests
run_pass 2-core-postgresql -q tests/core --inventory=postgresql
# two lanes on this 2-core machine (most of a real-server test is waiting for the server): Tomcat's
# JVM tests, the longest, in their own isolated venv beside every other plugin in turn
read -r -a REST <<< "$("$VENV/bin/python" - <<'PYEOF'
import tomllib
cfg = tomllib.load(open("pyproject.toml", "rb"))["tool"]["tlsgate-workspace"]
print(" ".join(m for m in cfg["members"] if m not in ("core", "testing", "plugins/tomcat")))
PYEOF
)"
TLSGATE_ISOLATED_VENV=$ROOT/.venv-isolated-2 scripts/test_isolated.sh plugins/tomcat \
  > "$REPORTS/isolated-tomcat.log" 2>&1 &
lane=$!
scripts/test_isolated.sh "${REST[@]}" || failed+=("3-isolated")
wait $lane || failed+=("3-isolated-tomcat")
cat "$REPORTS/isolated-tomcat.log"

set +e
"$VENV/bin/python" scripts/test_report.py "$REPORTS"/*.xml
report=$?
set -e
[ $report -ne 0 ] && failed+=("report")
echo "test.sh: total $(( $(date +%s) - start )) s (bootstrap, ruff and every pass)"
if [ ${#failed[@]} -ne 0 ]; then
  echo "test.sh: failed: ${failed[*]}" >&2
  exit 1
fi
exit 0
