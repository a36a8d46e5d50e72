"""Keystore writes: one entry installed into a keystore of 50, in-process and without I/O.

    .venv/bin/python benchmarks/keystore_writes.py [--entries 50] [--repeat 3] [--formats p12-legacy,jks]

For each format it builds a keystore of ``--entries`` key entries (EC P-256 keys, each leaf with
one intermediate), then measures, best of ``--repeat`` interleaved runs:

- **tlsgate**: what ``tls install`` does to the bytes: decode the file with the store password,
  replace one entry (a new key and certificate), encode the file, and the re-read that
  verifies the written file opens and holds the entry (``tlsgate_keystores`` codecs);
- **the peer**, writing the same entries + 1 from objects already in memory:
  - PBES2 and legacy PKCS#12: ``cryptography``'s ``serialize_key_and_certificates`` once per key
    entry (it takes one key per file), in the same profile (PBKDF2-SHA256 600,000 rounds +
    AES-256, or 3DES 2048 rounds);
  - JKS: pyjks ``KeyStore.new("jks", entries).saves(password)``.

Target (issue 16): tlsgate / peer ≤ 1.2. The floor is the key-derivation rounds: tlsgate keeps
the encrypted bags of entries that do not change, so its cost is reading (one derivation per
encrypted certificate safe), one new entry and the verification.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from tlsgate_keystores import jks_codec, p12_codec
from tlsgate_keystores.entries import KeyEntry, Keystore

PASSWORD = "bench-store-password"  # noqa: S105 - a throw-away benchmark keystore


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _chain(n: int) -> list[tuple[str, object, tuple[x509.Certificate, ...]]]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Bench CA")).issuer_name(_name("Bench CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now)
          .not_valid_after(now + dt.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    out = []
    for i in range(n):
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (x509.CertificateBuilder().subject_name(_name(f"app{i}.bench.test")).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(100 + i).not_valid_before(now)
                .not_valid_after(now + dt.timedelta(days=90)).sign(ca_key, hashes.SHA256()))
        out.append((f"app{i}", key, (leaf, ca)))
    return out


def _best(fn, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Best wall and best CPU time (this process's) of ``repeat`` runs."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--formats", default="p12-pbes2,p12-legacy,jks",
                        help="comma-separated: p12-pbes2, p12-legacy, jks (PBES2 takes ~1 min)")
    args = parser.parse_args()
    entries = _chain(args.entries + 1)
    old, new = entries[:-1], entries[-1]
    new_entry = KeyEntry(new[0], new[2], new[1])
    print("best of", args.repeat, "runs, interleaved; wall and CPU (user+sys of this process) seconds")
    print("| format | tlsgate wall | peer wall | ratio wall | tlsgate CPU | peer CPU | ratio CPU | peer |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for fmt in args.formats.split(","):
        store = Keystore("jks" if fmt == "jks" else "pkcs12",
                         [KeyEntry(a, c, k) for a, k, c in old], layout={})
        legacy = fmt == "p12-legacy"
        if fmt == "jks":
            data = jks_codec.dump(store, PASSWORD)

            def tlsgate_install(data: bytes = data) -> None:
                written = jks_codec.dump(jks_codec.load(data, PASSWORD).with_entry(new_entry), PASSWORD)
                assert jks_codec.load(written, PASSWORD).find(new_entry.alias) is not None

            def peer() -> None:
                import jks

                items = [jks.PrivateKeyEntry.new(a, [c.public_bytes(serialization.Encoding.DER) for c in chain],
                                                 k.private_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                                                                 serialization.PrivateFormat.PKCS8,
                                                                 serialization.NoEncryption()))
                         for a, k, chain in entries]
                jks.KeyStore.new("jks", items).saves(PASSWORD)

            peer_name = "pyjks KeyStore.saves"
        else:
            data = p12_codec.dump(store, PASSWORD, legacy=legacy)

            def tlsgate_install(data: bytes = data, legacy: bool = legacy) -> None:
                p12_codec._SAFES.clear(), p12_codec._PARSED.clear()  # a fresh `tlsgate tls install` process starts with nothing cached
                written = p12_codec.dump(p12_codec.load(data, PASSWORD).with_entry(new_entry), PASSWORD, legacy=legacy)
                assert p12_codec.load(written, PASSWORD).find(new_entry.alias) is not None

            def peer(legacy: bool = legacy) -> None:
                enc = p12_codec.encryption(PASSWORD, legacy=legacy)
                for a, k, chain in entries:
                    pkcs12.serialize_key_and_certificates(a.encode(), k, chain[0], list(chain[1:]), enc)  # type: ignore[arg-type]

            peer_name = "cryptography serialize_key_and_certificates x" + str(len(entries))
        gw, pr = (float("inf"),) * 2, (float("inf"),) * 2
        for _ in range(args.repeat):  # interleaved, so that a burst of load hits both sides
            gw = tuple(map(min, gw, _best(tlsgate_install, 1)))  # type: ignore[assignment]
            pr = tuple(map(min, pr, _best(peer, 1)))  # type: ignore[assignment]
        print(f"| {fmt} | {gw[0]:.3f} | {pr[0]:.3f} | {gw[0] / pr[0]:.2f} | {gw[1]:.3f} | {pr[1]:.3f} | "
              f"{gw[1] / pr[1]:.2f} | {peer_name} |", flush=True)


if __name__ == "__main__":
    main()
