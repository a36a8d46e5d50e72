"""Benchmark: ``tlsgate tls install`` into a running nginx of thousands of server blocks, end to end
through the CLI, against nginx's own floor (``nginx -t`` and ``nginx -s reload`` on the same files).

    .venv/bin/python benchmarks/nginx_install.py                  # 3,000 blocks, best of 3
    .venv/bin/python benchmarks/nginx_install.py --blocks 1000 --repeat 2

It starts a real nginx (private prefix, 127.0.0.1 free ports, one worker) on
``generate_config(..., runnable=True)``: N TLS server blocks over three ports, each with its own
certificate file, then adds, delegates and discovers it through the CLI, and measures, interleaved,
best of ``--repeat``:

- **nginx -t** and **nginx -s reload** (the reload command alone; the master's re-read is in
  tlsgate's time, which waits for the old workers to retire), each as a subprocess;
- **tls install --node siteK.example.com**: one block changed (a fresh certificate each run),
  the whole command a script runs, stdout piped: start-up, the discovery before (parse, handshake
  every block), the transaction (write, ``nginx -t``, reload, wait for the workers, handshake the
  changed block), the discovery after, storing;
- the TLS handshakes the install made (counted in its process, :mod:`tlsgate_testing.cli`).

It prints wall and CPU (user + system of the command's process tree) and the ratio of tlsgate's
time to nginx's floor (``nginx -t`` + ``nginx -s reload``), with the load average.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "nginx" / "tests"))
from nginx_peer import generate_config, server_of_generated
from tlsgate_testing.certs import TestCA
from tlsgate_testing.cli import tg_counting_handshakes
from tlsgate_testing.fixtures_core import free_port


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall and CPU seconds (children's user + system) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, check=False)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({res.returncode}): {res.stderr[-2000:]}")
    return wall, cpu, res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best is kept)")
    args = parser.parse_args(argv)
    ca = TestCA()
    old = ca.issue("old.example.com")
    with tempfile.TemporaryDirectory(prefix="tlsgate-bench-nginx-install-") as tmp:
        base = Path(tmp)
        ports = [free_port() for _ in range(3)]
        main_file = generate_config(base / "nginx", args.blocks, cert_pem=old.cert_pem + old.chain_pem,
                                    key_pem=old.key_pem, listens=[f"127.0.0.1:{p} ssl" for p in ports],
                                    runnable=True)
        server = server_of_generated(main_file, ports)
        env = {**os.environ, "TLSGATE_HOME": str(base / "home"), "TLSGATE_CACHE_DIR": str(base / "cache")}
        env.pop("TLSGATE_MASTER_KEY", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ.clear()
        os.environ.update(env)  # the counting runner takes this process's environment
        cli = [sys.executable, "-m", "tlsgate"]
        server.start()
        try:
            for step in (["tls", "add", "nginx", "--name", "big", "--connection_type", "local",
                          "--nginx_config_path", str(main_file)], ["org", "add", "acme"],
                         ["tls", "delegate", "big", "--org", "acme"], ["tls", "discover", "big"]):
                timed([*cli, *step], env)
            best: dict[str, tuple[float, float]] = {}
            handshakes = 0
            load_before = os.getloadavg()
            for run in range(args.repeat):
                for what in ("nginx -t", "nginx -s reload", "tls install"):
                    if what == "tls install":
                        k = 11 + run
                        new = ca.issue(f"site{k}.example.com", f"www.site{k}.example.com")
                        d = base / f"in{run}"
                        d.mkdir()
                        (d / "c.pem").write_bytes(new.cert_pem + new.chain_pem)
                        (d / "k.pem").write_bytes(new.key_pem)
                        install = ["tls", "install", "big", "--cert", str(d / "c.pem"), "--key", str(d / "k.pem"),
                                   "--node", f"site{k}.example.com"]
                        before = resource.getrusage(resource.RUSAGE_CHILDREN)
                        wall = time.perf_counter()
                        res, handshakes = tg_counting_handshakes(base / "count", *install)
                        wall = time.perf_counter() - wall
                        after = resource.getrusage(resource.RUSAGE_CHILDREN)
                        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                        if res.returncode != 0:
                            raise SystemExit(f"tls install failed: {res.stderr[-2000:]}")
                    else:
                        wall, cpu, _ = timed(server.argv(*what.split()[1:]), env)
                        if what == "nginx -s reload":
                            time.sleep(1.0)  # let the master finish its re-read before the next step
                    w, c = best.get(what, (float("inf"), float("inf")))
                    best[what] = (min(w, wall), min(c, cpu))
            load_after = os.getloadavg()
        finally:
            server.stop()
    floor_w = best["nginx -t"][0] + best["nginx -s reload"][0]
    floor_c = best["nginx -t"][1] + best["nginx -s reload"][1]
    print(f"nginx install benchmark: {args.blocks} server blocks, best of {args.repeat}; "
          f"load {load_before[0]:.2f} -> {load_after[0]:.2f}")
    print("| step | wall (s) | CPU (s) |")
    print("|---|---:|---:|")
    for what, (w, c) in best.items():
        print(f"| {what} | {w:.2f} | {c:.2f} |")
    ti_w, ti_c = best["tls install"]
    print(f"| nginx floor (-t + -s reload) | {floor_w:.2f} | {floor_c:.2f} |")
    print(f"tls install / floor: {ti_w / floor_w:.2f}x wall, {ti_c / floor_c:.2f}x CPU; "
          f"handshakes in the install: {handshakes} ({handshakes / args.blocks:.2f} per block)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
