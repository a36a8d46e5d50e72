"""Apache discovery end to end through the CLI vs ``apache2ctl -S`` on the same ServerRoot.

    .venv/bin/python benchmarks/apache_discovery.py                 # 1,000 and 10,000 vhosts
    .venv/bin/python benchmarks/apache_discovery.py 1000 --repeat 3

For each size and layout (one vhost per include file; 100 vhosts per file) it generates a private
ServerRoot (every vhost SSL, its own ServerName, an alias, its own certificate and key file, on
one of four loopback addresses whose ports nothing listens on), then measures in the same run,
interleaved, best of ``--repeat``:

- **apache2ctl -S**: Debian's ``apache2ctl -S`` with ``APACHE_CONFDIR`` pointed at the root (the
  server's own parser dumping its vhosts);
- **tlsgate**: ``tlsgate tls discover NAME`` as a subprocess with stdout piped, on a fresh
  ``TLSGATE_HOME`` holding one apache endpoint: the whole command a script runs, start-up,
  ``apachectl -t -D DUMP_VHOSTS -D DUMP_RUN_CFG``, reading and parsing every file, reading and
  fingerprinting every certificate, probing (refused at once: nothing listens), storing the
  nodes and printing the summary.

It prints a Markdown table: wall and CPU time (user + system of each command's whole process
tree, which on a loaded machine is the steadier number) of both sides, their ratios (target
≤ 1.5 at every size) and tlsgate's time per vhost (linear growth shows as a flat column), with
the load average before and after (say in RESULTS.md when other work ran meanwhile). The first
discovery of each configuration has no read-ahead hint, no last dump and no early-start record yet
(see ``plugins/apache/src/tlsgate_apache/speculate.py`` and ``core/src/tlsgate/early.py``: the
next ones start httpd's dump as the CLI's first step, and take the last discovery's record
when nothing it was made from changed: ``plugins/apache/src/tlsgate_apache/reuse.py``): its
time is printed apart; the best of ``--repeat`` is over all runs, the first included. The timed
runs start once the generated files are older than the early start's margin
(``tlsgate.early.MARGIN_SECONDS``), as an unedited configuration's are.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tlsgate.early import MARGIN_SECONDS

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
DEBIAN_APACHE2CTL = "/usr/sbin/apache2ctl"
APACHE2 = "/usr/sbin/apache2"
MODULES_DIR = "/usr/lib/apache2/modules"
DISTINCT_CERTS = 100  # certificate files are copies of 100 distinct certificates


def _certs(n: int) -> list[tuple[bytes, bytes]]:
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    out = []
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    for i in range(n):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"site{i}.bench.test")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(i + 1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
                .sign(key, hashes.SHA256()))
        out.append((cert.public_bytes(serialization.Encoding.PEM), key_pem))
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generate(root: Path, vhosts: int, per_file: int) -> Path:
    """A ServerRoot with ``vhosts`` SSL vhosts, ``per_file`` per include file. Returns apache2ctl."""
    for d in ("run", "logs", "sites", "certs", "bin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    ports = [_free_port() for _ in range(4)]
    pairs = _certs(DISTINCT_CERTS)
    for i in range(vhosts):
        crt, key = pairs[i % DISTINCT_CERTS]
        (root / "certs" / f"site{i}.crt").write_bytes(crt)
        k = root / "certs" / f"site{i}.key"
        k.write_bytes(key)
    loads = "\n".join(f"LoadModule {m}_module {MODULES_DIR}/mod_{m}.so"
                      for m in ("mpm_event", "authz_core", "socache_shmcb", "ssl"))
    listens = "\n".join(f"Listen 127.0.0.1:{p} https" for p in ports)
    (root / "apache2.conf").write_text(f"""ServerRoot "{root}"
{loads}
PidFile run/httpd.pid
Mutex file:{root / 'run'} default
ErrorLog logs/error.log
ServerName localhost
User nobody
Group nogroup
{listens}
IncludeOptional sites/*.conf
""")
    (root / "envvars").write_text(
        f"export APACHE_RUN_USER=nobody\nexport APACHE_RUN_GROUP=nogroup\nexport APACHE_RUN_DIR={root}/run\n"
        f"export APACHE_LOCK_DIR={root}/run\nexport APACHE_LOG_DIR={root}/logs\nexport APACHE_HTTPD={APACHE2}\n")
    for f in range(0, vhosts, per_file):
        blocks = []
        for i in range(f, min(f + per_file, vhosts)):
            blocks.append(f"""<VirtualHost 127.0.0.1:{ports[i % 4]}>
    # site {i}
    ServerName site{i}.bench.test
    ServerAlias www.site{i}.bench.test
    DocumentRoot /var/www/html
    SSLEngine on
    SSLCertificateFile certs/site{i}.crt
    SSLCertificateKeyFile certs/site{i}.key
</VirtualHost>
""")
        (root / "sites" / f"{f // per_file:05d}.conf").write_text("\n".join(blocks))
    ctl = root / "bin" / "apache2ctl"
    ctl.write_text(f'#!/bin/sh\nAPACHE_CONFDIR="{root}" exec {DEBIAN_APACHE2CTL} "$@"\n')
    ctl.chmod(0o755)
    return ctl


def _time(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system of the whole process tree) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def measure(vhosts: int, per_file: int, repeat: int, extra: list[str] | None = None
            ) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
    """Best (wall, CPU) of tlsgate and of apache2ctl -S, and tlsgate's first run (no read-ahead
    hint yet: the first discovery of an endpoint)."""
    with tempfile.TemporaryDirectory(prefix="tlsgate-apache-bench-") as tmp:
        root = Path(tmp) / "root"
        ctl = generate(root, vhosts, per_file)
        generated = time.time()
        home = Path(tmp) / "home"
        home.mkdir()
        # a private cache directory: plugin declarations (warmed by the set-up commands) and the
        # read-ahead hint the first discovery leaves for the next ones
        env = dict(os.environ, TLSGATE_HOME=str(home), TLSGATE_MASTER_KEY="benchmark-passphrase-not-secret",
                   TLSGATE_CACHE_DIR=str(Path(tmp) / "cache"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode cached after the first run
        tlsgate = str(VENV_BIN / "tlsgate")
        for argv in ([tlsgate, "tls", "add", "apache", "--name", "bench", "--connection_type", "local",
                      "--apachectl_path", str(ctl)],
                     [tlsgate, "org", "add", "Bench"],
                     [tlsgate, "tls", "delegate", "bench", "--org", "Bench"]):
            _time(argv, env)
        # a file changed within the early start's margin makes the next discovery ask httpd again
        # (tlsgate.early: an install may have been under way); an operator's discovery of a
        # configuration nobody edits this second does not pay that, so neither does this one
        time.sleep(max(0.0, generated + MARGIN_SECONDS + 0.1 - time.time()))
        inf = (float("inf"), float("inf"))
        ctl_wall, ctl_cpu = gw_wall, gw_cpu = inf
        first = None
        for _ in range(repeat):
            wall, cpu = _time([str(ctl), "-S"], env)
            ctl_wall, ctl_cpu = min(ctl_wall, wall), min(ctl_cpu, cpu)
            wall, cpu = _time([tlsgate, "tls", "discover", "bench", *(extra or [])], env)
            first = first or (wall, cpu)
            gw_wall, gw_cpu = min(gw_wall, wall), min(gw_cpu, cpu)
        return (gw_wall, gw_cpu), (ctl_wall, ctl_cpu), first  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true",
                        help="time `tls discover NAME --json` (no table rendering) instead of the text output")
    args = parser.parse_args()
    if not (shutil.which(APACHE2) and Path(DEBIAN_APACHE2CTL).exists()):
        raise SystemExit("needs Debian's apache2 (apt-get install apache2)")
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("| vhosts | per file | tlsgate wall s | apache2ctl -S wall s | ratio wall | tlsgate CPU s "
          "| apache2ctl -S CPU s | ratio CPU | tlsgate wall µs/vhost | tlsgate CPU µs/vhost "
          "| first discovery wall / CPU s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    seen: dict[int, list[tuple[int, float, float]]] = {1: [], 100: []}
    for n in args.sizes:
        for per_file in (1, 100):
            (gw, gw_cpu), (ctl, ctl_cpu), (w1, c1) = measure(n, per_file, args.repeat,
                                                             ["--json"] if args.json else [])
            print(f"| {n:,} | {per_file} | {gw:.3f} | {ctl:.3f} | {gw / ctl:.2f} | {gw_cpu:.3f} | {ctl_cpu:.3f} "
                  f"| {gw_cpu / ctl_cpu:.2f} | {gw / n * 1e6:.0f} | {gw_cpu / n * 1e6:.0f} | {w1:.3f} / {c1:.3f} |",
                  flush=True)
            seen[per_file].append((n, gw, gw_cpu))
    # linear growth: the cost of each further vhost (the fixed start-up cost drops out)
    for per_file, rows in seen.items():
        for (n0, w0, c0), (n1, w1, c1) in itertools.pairwise(rows):
            print(f"{per_file} per file, {n0:,} -> {n1:,} vhosts: each further vhost {(w1 - w0) / (n1 - n0) * 1e6:.0f} µs "
                  f"wall, {(c1 - c0) / (n1 - n0) * 1e6:.0f} µs CPU")
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
