"""Whatever fails, the keystore stays byte-identical; a dry run changes nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from tlsgate import CertificateBundle, OperationError, ValidationError
from tlsgate_testing.certs import Issued
from tlsgate_testing.connections import LocalConnection

PW = "changeit"


class FailingWrite(LocalConnection):
    """A transport whose ``fail_on``-th write fails (connection lost during the upload). Writes
    are atomic (the Connection contract), so a failed write leaves its own file as it was."""

    fail_on = 1

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        self.writes = getattr(self, "writes", 0) + 1
        if self.writes == self.fail_on:
            raise OSError("connection lost during upload")
        super().write_file(path, data, mode=mode)


class BadReadBack(LocalConnection):
    """The file reads back damaged after the write (disk or transport corruption)."""

    written = False

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        super().write_file(path, data, mode=mode)
        self.written = True

    def read_file(self, path: str) -> bytes:
        data = super().read_file(path)
        return data[:-7] if self.written else data


@pytest.fixture(params=["p12", "jks", "pem"])
def store(request: pytest.FixtureRequest, tmp_path: Path, p12_file: Path, leaf_a: Issued, kt: Any,
          driver: Any) -> tuple[Any, Path]:
    kind = request.param
    if kind == "p12":
        path, opts = p12_file, {"store_password": PW}
    elif kind == "jks":
        import jks
        from tlsgate_keystores import jks_codec, p12_codec

        path, opts = tmp_path / "store.jks", {"store_password": PW}
        content = p12_codec.load(p12_file.read_bytes(), PW, decrypt_keys=True)
        content.format = "jks"
        path.write_bytes(jks_codec.dump(content, PW))
        assert jks.KeyStore.loads(path.read_bytes(), PW).private_keys
    else:
        path, opts = tmp_path / "store.pem", {}
        path.write_bytes(leaf_a.cert_pem + leaf_a.chain_pem + leaf_a.key_pem)
    os.chmod(path, 0o640)
    return driver.endpoint(kind, path, **opts), path


@pytest.mark.parametrize("connection", [FailingWrite, BadReadBack])
def test_failed_write_or_read_back_restores_the_file(store: tuple[Any, Path], connection: type, driver: Any,
                                                     leaf_b: Issued, kt: Any) -> None:
    ep, path = store
    before = kt.snapshot(path)
    with pytest.raises(OperationError) as err:
        driver.install(ep, kt.bundle_of(leaf_b), connection=connection())
    assert err.value.rolled_back and "every change was restored" in str(err.value)
    assert kt.snapshot(path)[:2] == before[:2]  # bytes and mode
    assert kt.leftovers(path.parent) == []


def test_legacy_read_back_trusts_cryptography_not_the_remembered_safe(driver: Any, p12_file: Path, leaf_a: Issued,
                                                                    leaf_b: Issued, kt: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The legacy writer remembers the certificate safe it encrypted, so our reader's read-back
    takes it from memory; should what was encrypted not be that safe (here: a safe holding the
    old certificate), cryptography's reading of the host's file is what the read-back checks:
    the install fails and the file is restored."""
    from tlsgate_keystores import p12_codec

    real = p12_codec._encrypt_legacy
    old_safe = p12_codec._tlv(0x30, p12_codec._cert_bag(leaf_a.cert, b""))

    def encrypt(plain: bytes, password: str) -> tuple[bytes, bytes, bytes]:
        return real(old_safe if plain.startswith(b"\x30") and "b.example.org".encode("utf-16-be") in plain
                    and leaf_b.cert.public_bytes(serialization.Encoding.DER) in plain else plain, password)

    monkeypatch.setattr(p12_codec, "_encrypt_legacy", encrypt)
    ep = driver.endpoint("p12", p12_file, store_password=PW, is_legacy=True)
    before = kt.snapshot(p12_file)
    with pytest.raises(OperationError, match=r"does not read back with the new certificate \(cryptography") as err:
        driver.install(ep, kt.bundle_of(leaf_b))
    assert err.value.rolled_back
    assert kt.snapshot(p12_file)[:2] == before[:2]


def test_second_file_failing_restores_the_first(driver: Any, tmp_path: Path, leaf_a: Issued, leaf_b: Issued,
                                                kt: Any) -> None:
    """PEM with a separate key file: the key file is written first; when the certificate file's
    write then fails, the key file is restored (and the pair never mismatches)."""
    cert, key = tmp_path / "c.pem", tmp_path / "c.key"
    cert.write_bytes(leaf_a.cert_pem + leaf_a.chain_pem)
    key.write_bytes(leaf_a.key_pem)
    key.chmod(0o640)
    before = kt.snapshot(cert), kt.snapshot(key)
    conn = FailingWrite()
    conn.fail_on = 2
    ep = driver.endpoint("pem", cert, key_path=str(key))
    with pytest.raises(OperationError) as err:
        driver.install(ep, kt.bundle_of(leaf_b), connection=conn)
    assert err.value.rolled_back and conn.writes == 3  # key, cert (failed), key restored
    assert (kt.snapshot(cert)[:2], kt.snapshot(key)[:2]) == (before[0][:2], before[1][:2])
    assert kt.leftovers(tmp_path) == []


@pytest.mark.parametrize("store", ["p12", "jks"], indirect=True)  # a pem file has no store password
def test_wrong_store_password_changes_nothing(store: tuple[Any, Path], driver: Any, leaf_b: Issued,
                                              kt: Any) -> None:
    ep, path = store
    bad = driver.endpoint(ep.type, path, store_password="wrong-password")
    before = kt.snapshot(path)
    with pytest.raises(OperationError,
                       match=r"wrong store password; set the right one with: tlsgate tls set \S+ --store_password -"):
        driver.install(bad, kt.bundle_of(leaf_b))
    assert kt.snapshot(path) == before
    assert "wrong-password" not in str(before)


def test_dry_run_plans_and_changes_nothing(store: tuple[Any, Path], driver: Any, leaf_b: Issued, kt: Any,
                                           tmp_path: Path) -> None:
    ep, path = store
    marker = tmp_path / "script-ran"
    script = tmp_path / "install.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    ep = driver.endpoint(ep.type, path, install_script=str(script),
                         **({"store_password": PW} if ep.type != "pem" else {}))
    before = kt.snapshot(path)
    result = driver.install(ep, kt.bundle_of(leaf_b), dry_run=True)
    assert result.dry_run and not result.files_written and not result.verified
    steps = [(s.action, s.target) for s in result.plan]
    entry_action = "replace-entry" if ep.type == "pem" else "add-entry"
    assert steps[0][0] == entry_action and str(path) in steps[0][1]
    assert ("replace", str(path)) in steps
    assert steps[-1] == ("run", f"{script} b.example.org")
    assert kt.snapshot(path) == before and not marker.exists()
    assert kt.leftovers(path.parent) == []


def test_mismatched_key_never_reaches_the_file(store: tuple[Any, Path], leaf_a: Issued, leaf_b: Issued,
                                               kt: Any) -> None:
    _, path = store
    before = kt.snapshot(path)
    with pytest.raises(ValidationError, match="does not match"):
        CertificateBundle.from_pem(leaf_b.cert_pem, leaf_a.key_pem, leaf_b.chain_pem)
    assert kt.snapshot(path) == before


def test_trusted_entry_alias_is_refused(driver: Any, tmp_path: Path, test_ca: Any, leaf_b: Issued,
                                        kt: Any) -> None:
    from tlsgate_keystores import p12_codec
    from tlsgate_keystores.entries import Keystore, TrustedEntry

    path = tmp_path / "trust.p12"
    path.write_bytes(p12_codec.dump(Keystore("pkcs12", [TrustedEntry("rootca", test_ca.root)]), PW, legacy=False))
    before = kt.snapshot(path)
    ep = driver.endpoint("p12", path, store_password=PW)
    with pytest.raises(ValidationError, match="--alias: 'rootca' is a trusted certificate entry"):
        driver.install(ep, kt.bundle_of(leaf_b), alias="RootCA")
    with pytest.raises(ValidationError, match="--node: 'rootca' is a trusted certificate entry"):
        driver.install(ep, kt.bundle_of(leaf_b), nodes=driver.discover(ep))
    assert kt.snapshot(path) == before
    assert kt.keytool_list(path, PW)["rootca"]["type"] == "trustedCertEntry"


def test_missing_file_is_an_operation_error(driver: Any, tmp_path: Path, leaf_b: Issued, kt: Any) -> None:
    ep = driver.endpoint("p12", tmp_path / "nope.p12", store_password=PW)
    with pytest.raises(OperationError, match="no such file"):
        driver.install(ep, kt.bundle_of(leaf_b))
    assert not (tmp_path / "nope.p12").exists()


@pytest.mark.parametrize("alias", ["\x00", "a\nb", "tab\there", "x" * 256, "bidi\u202eoverride"])
def test_bad_alias_is_refused(driver: Any, p12_file: Path, leaf_b: Issued, kt: Any, alias: str) -> None:
    before = kt.snapshot(p12_file)
    with pytest.raises(ValidationError, match="--alias"):
        driver.install(driver.endpoint("p12", p12_file, store_password=PW), kt.bundle_of(leaf_b),
                       alias=alias)
    assert kt.snapshot(p12_file) == before
