"""Benchmark: nginx discovery (parse + node model, no handshake) against crossplane.parse alone.

    .venv/bin/python benchmarks/nginx_discovery.py            # 100, 1,000, 10,000 server blocks
    .venv/bin/python benchmarks/nginx_discovery.py 100 1000   # chosen sizes

Both sides read the same generated files in the same run: a main file including
``sites/*.conf`` (100 server blocks per file), each block with two listens, two names, its own
certificate and key file, comments, locations and an included snippet. tlsgate's side goes
through a LocalConnection exactly as ``tls discover`` does (reads every certificate file and
fingerprints it) but does no TLS handshake. Times are the best of several interleaved runs, as
wall-clock and as this process's CPU time (steadier on a busy shared machine); peak memory is
measured in a separate run under tracemalloc (which slows the code it watches).
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import crossplane
from tlsgate.transports.local import LocalConnection
from tlsgate_nginx.discovery import discover
from tlsgate_testing.certs import TestCA

# the generator lives with the nginx plugin's real-nginx fixture (plugins/nginx/tests/nginx_peer.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "nginx" / "tests"))
from nginx_peer import generate_config


def tlsgate_discovery(main: Path) -> int:
    _config, pairs = discover(LocalConnection(), str(main))
    return len(pairs)


def crossplane_parse(main: Path) -> int:
    payload = crossplane.parse(str(main))
    if payload["errors"]:
        raise SystemExit(f"crossplane: {payload['errors'][:3]}")
    return sum(len(f["parsed"]) for f in payload["config"])


def best_times(
    fns: list[Callable[[Path], Any]], main: Path, repeat: int
) -> list[tuple[float, float]]:
    """Best (wall, CPU) seconds of each function; runs are interleaved so that load from other
    processes on a shared machine hits both sides alike. CPU time is what this process used,
    the steadier number when the machine is busy."""
    best = [(float("inf"), float("inf")) for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            fn(main)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[i] = (min(best[i][0], wall), min(best[i][1], cpu))
    return best


def peak_memory(fn: Callable[[Path], Any], main: Path) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        fn(main)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[100, 1_000, 10_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best is kept)")
    args = parser.parse_args(argv)

    issued = TestCA("bench").issue("bench.example.com")
    rows = []
    with tempfile.TemporaryDirectory(prefix="tlsgate-bench-") as tmp:
        for size in args.sizes:
            main_file = generate_config(
                Path(tmp) / f"n{size}", size, cert_pem=issued.cert_pem + issued.chain_pem, key_pem=issued.key_pem
            )
            nodes = tlsgate_discovery(main_file)
            assert nodes == 2 * size, nodes  # two listens per block
            (ours, ours_cpu), (theirs, theirs_cpu) = best_times(
                [tlsgate_discovery, crossplane_parse], main_file, args.repeat
            )
            ours_mem = peak_memory(tlsgate_discovery, main_file)
            theirs_mem = peak_memory(crossplane_parse, main_file)
            rows.append((size, nodes, ours, theirs, ours_cpu, theirs_cpu, ours_mem, theirs_mem))
            print(
                f"{size:>6} blocks: tlsgate {ours:7.3f} s wall / {ours_cpu:7.3f} s CPU "
                f"({ours_cpu / size * 1e6:4.0f} us/block), crossplane {theirs:7.3f} s / {theirs_cpu:7.3f} s, "
                f"ratio {ours / theirs:4.2f} / {ours_cpu / theirs_cpu:4.2f}; "
                f"peak MiB {ours_mem / 2**20:6.1f} vs {theirs_mem / 2**20:6.1f}",
                flush=True,
            )
    print()
    print(f"Python {sys.version.split()[0]}, crossplane {crossplane.__version__}, best of {args.repeat}")
    print()
    print("| server blocks | nodes | tlsgate wall (s) | crossplane wall (s) | ratio wall | "
          "tlsgate CPU (s) | crossplane CPU (s) | ratio CPU | tlsgate CPU µs/block | "
          "peak MiB tlsgate | peak MiB crossplane |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, nodes, ours, theirs, ours_cpu, theirs_cpu, ours_mem, theirs_mem in rows:
        print(f"| {size:,} | {nodes:,} | {ours:.3f} | {theirs:.3f} | {ours / theirs:.2f} | "
              f"{ours_cpu:.3f} | {theirs_cpu:.3f} | {ours_cpu / theirs_cpu:.2f} | "
              f"{ours_cpu / size * 1e6:.0f} | {ours_mem / 2**20:.1f} | {theirs_mem / 2**20:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
