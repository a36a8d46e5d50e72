#!/usr/bin/env bash
# Issue 9's check that `pip install ./core` alone brings no pytest plugin and no test library: a
# re-used virtual environment ($TLSGATE_CORE_VENV, default .venv-core) gets `pip install ./core`
# (not editable, as a user installs it) and nothing else; then every tlsgate module is imported
# (the __main__ module aside) and the script fails if pytest, _pytest or hypothesis is installed
# or imported, or if tlsgate registers a pytest11 entry point. Entry points of the core's
# third-party dependencies are listed (platformdirs >= 4.1x ships one, the `platformdirs_isolated`
# fixture; tlsgate cannot remove it short of dropping or capping that dependency).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TLSGATE_CORE_VENV:-$PWD/.venv-core}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip -q --disable-pip-version-check install ./core
"$VENV/bin/python" - <<'PYEOF'
import importlib, importlib.metadata as md, importlib.util, pkgutil, sys

bad = []
installed = sorted(d.metadata["Name"] for d in md.distributions())
for lib in ("pytest", "_pytest", "hypothesis"):
    if importlib.util.find_spec(lib) is not None:
        bad.append(f"{lib} is installed")
eps = [(d.metadata["Name"], ep.name, ep.value) for d in md.distributions() for ep in d.entry_points
       if ep.group == "pytest11"]
bad += [f"tlsgate registers the pytest plugin {name} = {value}" for dist, name, value in eps
        if dist.lower().startswith("tlsgate")]
import tlsgate

count = 0
for info in pkgutil.walk_packages(tlsgate.__path__, "tlsgate."):
    if info.name == "tlsgate.__main__":
        continue
    importlib.import_module(info.name)
    count += 1
bad += [f"importing tlsgate imported {m}" for m in sorted(sys.modules) if m.split(".")[0] in
        ("pytest", "_pytest", "hypothesis")]
print(f"check_core_alone: pip install ./core: {len(installed)} distributions, {count} tlsgate modules imported")
for dist, name, value in eps:
    print(f"check_core_alone: a dependency's pytest11 entry point: {dist}: {name} = {value}")
if bad:
    print("check_core_alone: " + "; ".join(bad), file=sys.stderr)
    sys.exit(1)
print("check_core_alone: no pytest plugin of tlsgate's, no pytest or hypothesis installed or imported")
PYEOF
