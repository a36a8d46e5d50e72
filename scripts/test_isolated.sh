#!/usr/bin/env bash
# Each plugin's tests with only core + tlsgate-testing + that plugin installed (issue 9: "every
# plugin's tests pass with only core + tlsgate-testing + that plugin installed").
#
# One extra virtual environment ($TLSGATE_ISOLATED_VENV, default .venv-isolated), re-used: it
# holds core, the kit and pytest/pytest-timeout/hypothesis (the baseline, recorded with pip
# freeze). For each plugin in the workspace members, in turn: install it (editable, with its own
# dependencies), run its tests, then uninstall every distribution that is not in the baseline
# (the plugin *and* its dependencies), so the next plugin finds neither. pip's wheel cache makes
# the re-installs cheap. TLSGATE_LOAD_PLUGINS is not used: "not loaded" is not "not installed".
#
# Selection: the plugin's whole tests folder, slow (real-server) tests included: this is the only
# pass that runs the plugin folders (scripts/test.sh runs only tests/ in .venv). Any pytest exit
# status but 0 is a failure; 5 (no tests collected) included. With $TLSGATE_REPORT_DIR set (as
# scripts/test.sh does), each plugin's JUnit XML goes there as 3-isolated-<plugin>.xml, for
# scripts/test_report.py's counts and skip reasons.
#   scripts/test_isolated.sh                 every plugin
#   scripts/test_isolated.sh plugins/nginx   only the named members
#   scripts/test_isolated.sh plugins/nginx -- -k reload   ... and extra pytest arguments
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${TLSGATE_ISOLATED_VENV:-$ROOT/.venv-isolated}
PY=${PYTHON:-python3}
PIP=("$VENV/bin/python" -m pip -q --disable-pip-version-check)

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"${PIP[@]}" install -e core -e testing "pytest>=8" "pytest-timeout>=2.3" "hypothesis>=6.100"
names() {  # installed distributions, one normalised name a line
  "$VENV/bin/python" -c 'import importlib.metadata as m, re
print("\n".join(sorted({re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in m.distributions()})))'
}
BASELINE=$(names)

ARGS=()
SELECTED=()
while [ $# -gt 0 ]; do
  if [ "$1" = -- ]; then shift; ARGS=("$@"); break; fi
  SELECTED+=("$1"); shift
done
read -r -a MEMBERS <<< "${SELECTED[*]:-$("$VENV/bin/python" - <<'PYEOF'
import tomllib
cfg = tomllib.load(open("pyproject.toml", "rb"))["tool"]["tlsgate-workspace"]
print(" ".join(m for m in cfg["members"] if m not in ("core", "testing")))
PYEOF
)}"

clean() {  # uninstall every distribution that is not in the baseline (a plugin and its dependencies)
  local extra
  extra=$(comm -13 <(printf '%s\n' "$BASELINE") <(names) | xargs)
  if [ -n "$extra" ]; then
    # shellcheck disable=SC2086
    "${PIP[@]}" uninstall -y $extra >/dev/null
  fi
}

failed=()
for member in "${MEMBERS[@]}"; do
  clean
  echo "== isolated: $member (core + tlsgate-testing + this plugin only)"
  "${PIP[@]}" install -e "$member"
  others=$("$VENV/bin/python" - "$member" <<'PYEOF'
import importlib.metadata as md, sys, tomllib
mine = tomllib.load(open(sys.argv[1] + "/pyproject.toml", "rb"))["project"]["name"].lower()
print(" ".join(sorted(d.metadata["Name"] for d in md.distributions()
                      if d.metadata["Name"].lower().startswith("tlsgate")
                      and d.metadata["Name"].lower() not in ("tlsgate", "tlsgate-testing", mine))))
PYEOF
)
  if [ -n "$others" ]; then
    echo "test_isolated.sh: other tlsgate distributions are installed beside $member: $others" >&2
    failed+=("$member"); continue
  fi
  report=()
  if [ -n "${TLSGATE_REPORT_DIR:-}" ]; then
    report=(--junitxml="$TLSGATE_REPORT_DIR/3-isolated-$(basename "$member").xml")
  fi
  set +e
  "$VENV/bin/python" -m pytest -p no:cacheprovider -q "${report[@]}" "$member/tests" "${ARGS[@]}"
  rc=$?
  set -e
  if [ $rc -ne 0 ]; then
    [ $rc -eq 5 ] && echo "test_isolated.sh: $member: pytest collected no tests: that is a failure" >&2
    failed+=("$member")
  fi
done
clean

if [ ${#failed[@]} -ne 0 ]; then
  echo "test_isolated.sh: failed in isolation: ${failed[*]}" >&2
  exit 1
fi
echo "test_isolated.sh: every plugin's tests pass with only core + tlsgate-testing + that plugin"
