"""The kit's behavioural contract on the example plugin, as a third-party author runs it."""

from __future__ import annotations

from pathlib import Path

from tlsgate.plugin import ConnectionSpec, Endpoint
from tlsgate_certdir import CertdirOptions
from tlsgate_testing.contract import Case, check_behaviour, local_connection, tree_snapshot


def test_behaviour(test_ca, tmp_path: Path) -> None:
    from tlsgate.plugin import CertificateBundle

    folder = tmp_path / "certs"
    folder.mkdir()
    old = test_ca.issue("mail.example.org")
    (folder / "mail.crt").write_bytes(old.cert_pem)
    (folder / "mail.key").write_bytes(old.key_pem)
    new = test_ca.issue("mail.example.org")
    ep = Endpoint(name="mail", type="certdir", connection=ConnectionSpec(type="local"),
                  options=CertdirOptions(dir=str(folder)))
    with local_connection() as conn:
        check_behaviour(Case(ep, conn, CertificateBundle.from_pem(new.cert_pem, new.key_pem, new.chain_pem),
                             snapshot=lambda: tree_snapshot(folder)))
