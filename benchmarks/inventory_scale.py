"""Inventory at scale: read commands on a large inventory, end to end through the CLI.

    .venv/bin/python benchmarks/inventory_scale.py               # 100,000 nodes / 1,000 endpoints; 10,000 endpoints
    .venv/bin/python benchmarks/inventory_scale.py --repeat 5

It builds two inventories directly through the Inventory API (no discovery): **A**, 1,000 nginx
endpoints of 100 nodes each (100,000 nodes; each endpoint's nodes serve one of 1,000 recorded
certificates, every tenth endpoint's certificate assigned to an organization) and **B**, 10,000
endpoints without nodes. Then it times, as subprocesses with stdout piped, best of ``--repeat``:

- ``tlsgate tls nodes <endpoint> --json`` on A (one endpoint's 100 nodes: target < 0.5 s) and
  ``tlsgate tls nodes --all --json`` (all 100,000 nodes, the selector form);
- ``tlsgate cert list --json`` on A (1,000 certificates) and, when the command exists,
  ``tlsgate cert expiring --json`` (the fleet command; target < 0.5 s), also with ``--days 3650``
  (every certificate, so all 100,000 nodes listed);
- ``tlsgate tls list --json`` on B (10,000 endpoints: target < 0.3 s);

and ``python -c "import typer"`` as the floor every command pays.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
TLSGATE = str(VENV_BIN / "tlsgate")


def _certificates(n: int) -> list[object]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certs = []
    for i in range(n):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"site{i}.example.test")])
        certs.append(
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(i + 1).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1 + i % 365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"site{i}.example.test")]), critical=False)
            .sign(key, hashes.SHA256())
        )
    return certs


def build(home: Path, endpoints: int, nodes_per: int) -> None:
    os.environ["TLSGATE_HOME"] = str(home)
    from tlsgate.certs import fingerprint
    from tlsgate.inventory import open_inventory
    from tlsgate.models import ConnectionSpec, Endpoint, Node

    inv = open_inventory()
    inv.add_org("ops")
    certs = _certificates(endpoints) if nodes_per else []
    ids = inv.record_certificates(certs, source="discovered") if certs else []
    for cid in ids[::10]:
        inv.assign_certificate(cid, "ops", None)
    for e in range(endpoints):
        ep = Endpoint(name=f"web{e:05d}", type="nginx", connection=ConnectionSpec(type="local"))
        inv.add_endpoint(ep, {"nginx_config_path": "/etc/nginx/nginx.conf"})
        if nodes_per:
            cert = certs[e]
            fp = fingerprint(cert)  # type: ignore[arg-type]
            not_after = cert.not_valid_after_utc  # type: ignore[attr-defined]
            inv.replace_nodes(ep.instance_id, [
                Node(name=f"n{k}.site{e}.example.test", alias=(f"www.n{k}.site{e}.example.test",), ip="127.0.0.1",
                     port=8443 + k % 4, fingerprint=fp, subject=f"CN=site{e}.example.test", not_after=not_after,
                     vendor="nginx", state="enabled", locator=f"/etc/nginx/sites/{e}.conf:{k * 10}")
                for k in range(nodes_per)
            ])
    inv.close()


def timed(argv: list[str], env: dict[str, str], repeat: int) -> tuple[float, float, int]:
    wall = cpu = float("inf")
    size = 0
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, check=True)
        wall = min(wall, time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = min(cpu, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        size = len(proc.stdout)
    return wall, cpu, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=100, help="nodes per endpoint of inventory A")
    parser.add_argument("--list_endpoints", "--list-endpoints", type=int, default=10000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tlsgate-scale-") as tmp:
        a, b = Path(tmp, "a"), Path(tmp, "b")
        a.mkdir(mode=0o700)
        b.mkdir(mode=0o700)
        start = time.perf_counter()
        build(a, args.endpoints, args.nodes)
        build(b, args.list_endpoints, 0)
        print(f"built: A {args.endpoints:,} endpoints x {args.nodes} nodes, B {args.list_endpoints:,} endpoints "
              f"in {time.perf_counter() - start:.1f} s")
        base = {k: v for k, v in os.environ.items() if k not in ("TLSGATE_DEBUG", "PYTHONDONTWRITEBYTECODE")}
        env_a, env_b = {**base, "TLSGATE_HOME": str(a)}, {**base, "TLSGATE_HOME": str(b)}
        middle = f"web{args.endpoints // 2:05d}"
        runs = [
            ('python -c "import typer"', [sys.executable, "-c", "import typer"], env_a, None),
            (f"tls nodes {middle} --json (A)", [TLSGATE, "tls", "nodes", middle, "--json"], env_a, 0.5),
            ("tls nodes --all --json (A: every node)", [TLSGATE, "tls", "nodes", "--all", "--json"], env_a, 0.5),
            ("cert list --json (A)", [TLSGATE, "cert", "list", "--json"], env_a, 0.5),
            ("tls list --json (B)", [TLSGATE, "tls", "list", "--json"], env_b, 0.3),
        ]
        has_expiring = subprocess.run([TLSGATE, "cert", "expiring", "--help"], env=env_a, capture_output=True,
                                      check=False).returncode == 0
        if has_expiring:
            runs.insert(4, ("cert expiring --json (A)", [TLSGATE, "cert", "expiring", "--json"], env_a, 0.5))
            runs.insert(5, ("cert expiring --days 3650 --json (A: every certificate, every node)",
                            [TLSGATE, "cert", "expiring", "--days", "3650", "--json"], env_a, 0.5))
        for _label, argv, env, _t in runs:  # warm-up: bytecode written, page cache filled
            subprocess.run(argv, env=env, capture_output=True, check=True)
        print(f"best of {args.repeat}, stdout piped")
        print("| command | wall (s) | CPU (s) | stdout bytes | target (s) | met |\n|---|---:|---:|---:|---:|---|")
        for label, argv, env, target in runs:
            wall, cpu, size = timed(argv, env, args.repeat)
            met = "" if target is None else ("yes" if wall < target else "no")
            print(f"| `{label}` | {wall:.3f} | {cpu:.3f} | {size:,} | {target or ''} | {met} |")
        if not has_expiring:
            print("(cert expiring: not in this build)")


if __name__ == "__main__":
    main()
