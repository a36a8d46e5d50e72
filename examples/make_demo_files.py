"""Make a throw-away CA, two leaf certificates and the initial keystores the quickstart uses.

    python examples/make_demo_files.py DIR

Writes DIR/ca/{root,intermediate}.crt, DIR/new/{app.crt,app.key,chain.crt} (the certificate to
install), and DIR/keystores/{app.p12,app.jks,app.pem} holding an older certificate, as an
application's keystores would before a renewal. Store password: "changeit".
"""

from __future__ import annotations

import sys
from pathlib import Path

import jks
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from tlsgate_testing.certs import TestCA

PASSWORD = "changeit"  # noqa: S105 - the demo keystores' well-known password


def main(out: Path) -> None:
    ca = TestCA("Quickstart")
    (out / "ca").mkdir(parents=True, exist_ok=True)
    (out / "ca" / "root.crt").write_bytes(ca.root.public_bytes(serialization.Encoding.PEM))
    old = ca.issue("app.example.internal", days=10)
    new = ca.issue("app.example.internal", "app", days=90)
    new.write(out / "new", "app")
    (out / "new" / "app.chain.crt").rename(out / "new" / "chain.crt")

    stores = out / "keystores"
    stores.mkdir(exist_ok=True)
    enc = (serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(100_000)
           .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC).hmac_hash(hashes.SHA256())
           .build(PASSWORD.encode()))
    (stores / "app.p12").write_bytes(pkcs12.serialize_key_and_certificates(
        b"app", old.key, old.cert, list(old.chain[:1]), enc))  # type: ignore[arg-type]
    key_der = old.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,  # type: ignore[attr-defined]
                                    serialization.NoEncryption())
    chain_der = [c.public_bytes(serialization.Encoding.DER) for c in (old.cert, *old.chain[:1])]
    jks.KeyStore.new("jks", [jks.PrivateKeyEntry.new("app", chain_der, key_der, "pkcs8")]).save(
        str(stores / "app.jks"), PASSWORD)
    (stores / "app.pem").write_bytes(old.cert_pem + old.chain_pem.split(b"-----END CERTIFICATE-----\n")[0]
                                     + b"-----END CERTIFICATE-----\n" + old.key_pem)
    for f in stores.iterdir():
        f.chmod(0o600)
    print(f"demo files in {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_demo_files.py DIR")
    main(Path(sys.argv[1]))
