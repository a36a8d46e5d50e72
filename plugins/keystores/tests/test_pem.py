"""pem endpoints: the layout is kept; openssl reads the certificate, chain and (encrypted) key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from tlsgate import OperationError
from tlsgate_testing.certs import Issued, TestCA


def pem_blocks(data: bytes) -> list[str]:
    return [line.decode()[11:-5] for line in data.splitlines() if line.startswith(b"-----BEGIN ")]


def test_same_file_keeps_key_position_and_other_blocks(driver: Any, tmp_path: Path, leaf_a: Issued,
                                                       leaf_b: Issued, kt: Any) -> None:
    dh = b"-----BEGIN DH PARAMETERS-----\nMAgCAQICAQI=\n-----END DH PARAMETERS-----\n"
    path = tmp_path / "site.pem"
    path.write_bytes(leaf_a.key_pem + leaf_a.cert_pem + leaf_a.chain_pem + dh)
    os.chmod(path, 0o640)
    ep = driver.endpoint("pem", path)
    assert [(n.name, n.fingerprint, n.vendor) for n in driver.discover(ep)] == [
        ("site.pem", leaf_a.fingerprint, "PEM")
    ]
    result = driver.install(ep, kt.bundle_of(leaf_b))
    assert result.alias == "b.example.org" and result.nodes == ("site.pem",)
    data = path.read_bytes()
    assert pem_blocks(data) == ["PRIVATE KEY", "CERTIFICATE", "CERTIFICATE", "DH PARAMETERS"]
    assert path.stat().st_mode & 0o777 == 0o640
    fp = kt.run_tool(["openssl", "x509", "-in", str(path), "-noout", "-fingerprint", "-sha256"]).stdout
    assert fp.split("=")[1].strip().replace(":", "").lower() == leaf_b.fingerprint
    pub_key = kt.run_tool(["openssl", "pkey", "-in", str(path), "-pubout"]).stdout
    pub_cert = kt.run_tool(["openssl", "x509", "-in", str(path), "-noout", "-pubkey"]).stdout
    assert pub_key == pub_cert


def test_separate_key_file_created_0600(driver: Any, tmp_path: Path, leaf_a: Issued, leaf_b: Issued,
                                        kt: Any) -> None:
    path = tmp_path / "cert.pem"
    path.write_bytes(leaf_a.cert_pem)
    key_path = tmp_path / "private" / "new.key"
    key_path.parent.mkdir()
    ep = driver.endpoint("pem", path, key_path=str(key_path))
    driver.install(ep, kt.bundle_of(leaf_b))
    assert pem_blocks(path.read_bytes()) == ["CERTIFICATE", "CERTIFICATE"]
    assert pem_blocks(key_path.read_bytes()) == ["PRIVATE KEY"]
    assert key_path.stat().st_mode & 0o777 == 0o600
    kt.run_tool(["openssl", "verify", "-CAfile", str(_root(tmp_path, leaf_b)), "-untrusted", str(path), str(path)])


def _root(tmp_path: Path, issued: Issued) -> Path:
    from cryptography.hazmat.primitives import serialization

    root = tmp_path / "root.crt"
    root.write_bytes(issued.chain[-1].public_bytes(serialization.Encoding.PEM))
    return root


def test_existing_key_file_keeps_its_mode_and_traditional_format(driver: Any, tmp_path: Path,
                                                                 kt: Any) -> None:
    ca = TestCA(key_type="rsa")
    old, new = ca.issue("old.example.org"), ca.issue("new.example.org")
    path, key_path = tmp_path / "c.pem", tmp_path / "c.key"
    path.write_bytes(old.cert_pem)
    from cryptography.hazmat.primitives import serialization

    key_path.write_bytes(old.key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    os.chmod(key_path, 0o640)
    ep = driver.endpoint("pem", path, key_path=str(key_path))
    driver.install(ep, kt.bundle_of(new))
    assert pem_blocks(key_path.read_bytes()) == ["RSA PRIVATE KEY"]
    assert key_path.stat().st_mode & 0o777 == 0o640
    assert kt.run_tool(["openssl", "rsa", "-in", str(key_path), "-check", "-noout"]).stdout.strip() == "RSA key ok"


def test_encrypted_key_written_with_explicit_pbes2(driver: Any, tmp_path: Path, leaf_a: Issued, leaf_b: Issued,
                                                   kt: Any) -> None:
    pw = "kéy pässwörd"
    path = tmp_path / "enc.pem"
    path.write_bytes(leaf_a.cert_pem)
    path.chmod(0o644)
    ep = driver.endpoint("pem", path, key_password=pw)
    driver.install(ep, kt.bundle_of(leaf_b))
    assert path.stat().st_mode & 0o777 == 0o600  # the file gained a private key
    assert pem_blocks(path.read_bytes()) == ["CERTIFICATE", "CERTIFICATE", "ENCRYPTED PRIVATE KEY"]
    key_only = tmp_path / "key-only.pem"
    data = path.read_bytes()
    key_only.write_bytes(data[data.index(b"-----BEGIN ENCRYPTED"):])
    asn1 = kt.run_tool(["openssl", "asn1parse", "-in", str(key_only)]).stdout
    assert "PBES2" in asn1 and "PBKDF2" in asn1 and "hmacWithSHA256" in asn1 and "aes-256-cbc" in asn1
    kt.run_tool(["openssl", "pkey", "-in", str(path), "-passin", "env:KS_TEST_PW", "-noout"], pw)
    assert kt.run_tool(["openssl", "pkey", "-in", str(path), "-passin", "pass:wrong", "-noout"],
                       check=False).returncode != 0

    # a second install needs the same password; without it nothing is written
    no_pw = driver.endpoint("pem", path)
    before = path.read_bytes()
    with pytest.raises(OperationError, match="--key_password"):
        driver.install(no_pw, kt.bundle_of(leaf_a))
    assert path.read_bytes() == before
    driver.install(ep, kt.bundle_of(leaf_a))
    assert [n.fingerprint for n in driver.discover(ep)] == [leaf_a.fingerprint]
