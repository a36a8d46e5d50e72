"""Start-up time of the ``tlsgate`` command vs a bare ``python -c "import typer"``.

    .venv/bin/python benchmarks/startup.py              # best of 15
    .venv/bin/python benchmarks/startup.py --repeat 30

Every bundled plugin is installed (the development venv); the inventory is a fresh empty
``TLSGATE_HOME``. Each command runs as a subprocess with stdout piped (as a script calls it),
interleaved with the baseline, and the best wall time of ``--repeat`` runs counts (the machine is
shared: the best run is the one least disturbed). Target: every ratio ≤ 1.5.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
COMMANDS = {
    'python -c "import typer"': [sys.executable, "-c", "import typer"],
    "tlsgate --help": [str(VENV_BIN / "tlsgate"), "--help"],
    "tlsgate tls add nginx --help": [str(VENV_BIN / "tlsgate"), "tls", "add", "nginx", "--help"],
    "tlsgate tls list (empty inventory)": [str(VENV_BIN / "tlsgate"), "tls", "list"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tlsgate-startup-") as home:
        env = {**os.environ, "TLSGATE_HOME": home}
        env.pop("TLSGATE_DEBUG", None)
        best = dict.fromkeys(COMMANDS, float("inf"))
        for _ in range(args.repeat):
            for label, argv in COMMANDS.items():
                start = time.perf_counter()
                subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
                best[label] = min(best[label], time.perf_counter() - start)
    base = best['python -c "import typer"']
    print(f"best of {args.repeat}, wall seconds; ratio vs python -c \"import typer\" (target <= 1.5)")
    print(f"| command | wall (s) | ratio |\n|---|---:|---:|")
    for label, seconds in best.items():
        print(f"| `{label}` | {seconds:.3f} | {seconds / base:.2f} |")


if __name__ == "__main__":
    main()
