"""The core distribution stands alone: it imports on a Windows gateway (no module-level fcntl, pwd,
grp or termios), never imports pytest or hypothesis, and registers no pytest plugin (the test kit
is the separate, opt-in ``tlsgate-testing``)."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

CORE_SRC = Path(__file__).parents[2] / "core" / "src" / "tlsgate"

IMPORT_ALL = """
import importlib, json, pkgutil, sys
for name in ("fcntl", "pwd", "grp", "termios"):
    sys.modules[name] = None  # what a Windows interpreter lacks: importing it raises ImportError
import tlsgate
failed, count = [], 0
for info in pkgutil.walk_packages(tlsgate.__path__, "tlsgate."):
    if info.name == "tlsgate.__main__":  # runs the CLI when imported
        continue
    count += 1
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        failed.append(f"{info.name}: {exc!r}")
test_libs = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("pytest", "_pytest", "hypothesis")})
print(json.dumps({"count": count, "failed": failed, "test_libs": test_libs}))
"""


def test_every_core_module_imports_without_posix_only_modules_and_without_test_libraries() -> None:
    proc = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["count"] >= 30  # every module was walked (cli, transports, credstores, ...)
    assert report["failed"] == []
    assert report["test_libs"] == []


def test_no_core_source_names_pytest_or_hypothesis() -> None:
    offenders = []
    for path in sorted(CORE_SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(CORE_SRC)}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in ("pytest", "_pytest", "hypothesis")]
    assert offenders == []


def test_core_registers_no_pytest_plugin() -> None:
    core = importlib.metadata.distribution("tlsgate")
    assert [ep for ep in core.entry_points if ep.group == "pytest11"] == []
    requires = [r.split(";")[0].strip().lower() for r in core.requires or []]
    assert not [r for r in requires if r.startswith(("pytest", "hypothesis"))]
    kit = importlib.metadata.distribution("tlsgate-testing")
    assert [ep for ep in kit.entry_points if ep.group == "pytest11"] == []  # opt-in with pytest_plugins
