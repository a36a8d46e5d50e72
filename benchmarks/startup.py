"""Start-up time of the ``tlsgate`` command vs a bare ``python -c "import typer"``.

    .venv/bin/python benchmarks/startup.py              # best of 15
    .venv/bin/python benchmarks/startup.py --repeat 30

Every bundled plugin is installed (the development venv); the inventory is a fresh empty
``TLSGATE_HOME``. Each command runs as a subprocess with stdout piped (as a script calls it),
interleaved with the baseline, and the best wall time of ``--repeat`` runs counts (the machine is
shared: the best run is the one least disturbed; CPU time, user + system of the child, is
steadier than wall time on a busy machine). Target: every ratio ≤ 1.5.
"""

from __future__ import annotations

import argparse
import os
import resource
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
        # as installed: bytecode cached (this machine's shells set PYTHONDONTWRITEBYTECODE, which
        # makes every run compile tlsgate's editable sources again); one warm-up run writes it
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for argv in COMMANDS.values():
            subprocess.run(argv, env=env, capture_output=True, check=True)
        best = dict.fromkeys(COMMANDS, float("inf"))
        cpu = dict.fromkeys(COMMANDS, float("inf"))
        for _ in range(args.repeat):
            for label, argv in COMMANDS.items():
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                subprocess.run(argv, env=env, capture_output=True, check=True)
                best[label] = min(best[label], time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                cpu[label] = min(cpu[label], used)
    base, base_cpu = best['python -c "import typer"'], cpu['python -c "import typer"']
    print(f"best of {args.repeat}; ratios vs python -c \"import typer\" (target <= 1.5)")
    print("| command | wall (s) | ratio wall | CPU (s) | ratio CPU |\n|---|---:|---:|---:|---:|")
    for label, seconds in best.items():
        print(f"| `{label}` | {seconds:.3f} | {seconds / base:.2f} | {cpu[label]:.3f} | {cpu[label] / base_cpu:.2f} |")


if __name__ == "__main__":
    main()
