"""The benchmark's README command still runs (tiny sizes; the numbers are not checked here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "nginx_discovery.py"


@pytest.mark.skipif(not SCRIPT.exists(), reason="benchmarks/ is not part of an installed plugin")
def test_benchmark_runs() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "10", "30", "--repeat", "1"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "| 30 | 60 |" in proc.stdout and "crossplane" in proc.stdout
