"""The kit's behavioural contract on the three keystore types: discovery is read-only, a dry run
changes nothing, a failed install restores the store byte for byte (p12 and pem; jks needs keytool to seed and is
covered by test_jks.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tlsgate_testing.certs import Issued
from tlsgate_testing.contract import Case, check_behaviour, local_connection, tree_snapshot

PW = "changeit"


@pytest.mark.parametrize("kind", ["p12", "pem"])
def test_behaviour(kind: str, driver: Any, kt: Any, tmp_path: Path, leaf_a: Issued, leaf_b: Issued) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    path = folder / f"app.{kind}"
    options: dict[str, Any] = {} if kind == "pem" else {"store_password": PW}
    ep = driver.endpoint(kind, path, **options)
    path.write_bytes(leaf_a.pfx(PW) if kind == "p12" else leaf_a.cert_pem + leaf_a.key_pem)  # one entry to begin with
    with local_connection() as conn:
        check_behaviour(Case(ep, conn, kt.bundle_of(leaf_b), snapshot=lambda: tree_snapshot(folder)),
                        driver.registry)
