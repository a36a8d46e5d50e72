"""p12 endpoints: every written file read back by the real openssl and keytool."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from tlsgate_testing.certs import Issued, TestCA

PW = "changeit"


@pytest.fixture
def java_p12(tmp_path: Path, p12_file: Path, test_ca: TestCA, kt: Any, keytool: str) -> Path:
    """A PKCS#12 with three entries as Java leaves it: "alpha" (from openssl), "gamma" (a key
    pair keytool generated) and "rootca" (a trustedCertEntry)."""
    root = tmp_path / "root.crt"
    root.write_bytes(test_ca.root.public_bytes(serialization.Encoding.PEM))
    ks = str(p12_file)
    kt.run_tool([keytool, "-genkeypair", "-keyalg", "EC", "-alias", "gamma", "-dname", "CN=gamma",
                 "-keystore", ks, "-storetype", "PKCS12", "-storepass:env", "KS_TEST_PW"], PW)
    kt.run_tool([keytool, "-importcert", "-noprompt", "-alias", "rootca", "-file", str(root),
                 "-keystore", ks, "-storepass:env", "KS_TEST_PW"], PW)
    assert set(kt.keytool_list(p12_file, PW)) == {"alpha", "gamma", "rootca"}
    return p12_file


def test_modern_profile_adds_entry_and_keeps_every_other(driver: Any, java_p12: Path, leaf_b: Issued, kt: Any) -> None:
    before = kt.keytool_list(java_p12, PW)
    ep = driver.endpoint("p12", java_p12, store_password=PW)
    result = driver.install(ep, kt.bundle_of(leaf_b))
    assert result.alias == "b.example.org" and result.verified and not result.rolled_back

    info = kt.openssl_info(java_p12, PW)
    assert "MAC: sha256" in info
    assert "PBES2, PBKDF2, AES-256-CBC" in info and "PRF hmacWithSHA256" in info
    assert "TripleDES" not in info and "RC2" not in info
    assert "friendlyName: b.example.org" in info

    after = kt.keytool_list(java_p12, PW)
    assert set(after) == {"alpha", "gamma", "rootca", "b.example.org"}
    for alias in ("alpha", "gamma", "rootca"):
        assert after[alias]["type"] == before[alias]["type"]
        assert after[alias]["sha256"] == before[alias]["sha256"]
        assert after[alias]["chain"] == before[alias]["chain"]
    assert after["rootca"]["type"] == "trustedCertEntry"
    new = after["b.example.org"]
    assert new["type"] == "PrivateKeyEntry" and new["sha256"] == leaf_b.fingerprint
    # the bundle brings leaf + intermediate; Java completes the chain with the root already in the file
    assert new["chain"] == 3


def test_legacy_profile_is_3des_with_sha1_mac(driver: Any, java_p12: Path, leaf_b: Issued, kt: Any) -> None:
    ep = driver.endpoint("p12", java_p12, store_password=PW, is_legacy=True)
    driver.install(ep, kt.bundle_of(leaf_b))
    info = kt.openssl_info(java_p12, PW)
    assert "MAC: sha1" in info
    assert "Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC" in info
    assert "PKCS7 Encrypted data: pbeWithSHA1And3-KeyTripleDES-CBC" in info
    assert "PBES2" not in info and "AES" not in info
    listed = kt.keytool_list(java_p12, PW)
    assert set(listed) == {"alpha", "gamma", "rootca", "b.example.org"}
    assert listed["b.example.org"]["sha256"] == leaf_b.fingerprint
    # the new entry's bags (encoded by tlsgate, not cryptography) decrypt in openssl: its key too
    keys = kt.run_tool(["openssl", "pkcs12", "-in", str(java_p12), "-nocerts", "-nodes", "-passin", "env:KS_TEST_PW"],
                       PW).stdout
    wanted = leaf_b.key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    found = [serialization.load_pem_private_key(block.encode(), None).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        for block in re.findall(r"-----BEGIN PRIVATE KEY-----.*?-----END PRIVATE KEY-----\n", keys, flags=re.S)]
    assert len(found) == 3 and wanted in found  # alpha, gamma and the new one


def test_replaces_entry_of_the_alias_case_insensitively(driver: Any, p12_file: Path, leaf_b: Issued, kt: Any) -> None:
    ep = driver.endpoint("p12", p12_file, store_password=PW)
    result = driver.install(ep, kt.bundle_of(leaf_b), alias="ALPHA")
    assert result.messages[0].startswith("replaced entry 'ALPHA'")
    listed = kt.keytool_list(p12_file, PW)
    assert set(listed) == {"alpha"}
    assert listed["alpha"]["sha256"] == leaf_b.fingerprint
    nodes = driver.discover(ep)
    assert [(n.name, n.fingerprint, n.vendor, n.protocol) for n in nodes] == [
        ("ALPHA", leaf_b.fingerprint, "PKCS#12", "file")
    ]


def test_chosen_node_names_the_entry(driver: Any, java_p12: Path, leaf_b: Issued, kt: Any) -> None:
    ep = driver.endpoint("p12", java_p12, store_password=PW)
    gamma = [n for n in driver.discover(ep) if n.name == "gamma"]
    result = driver.install(ep, kt.bundle_of(leaf_b), nodes=gamma)
    assert result.alias == "gamma"
    listed = kt.keytool_list(java_p12, PW)
    assert set(listed) == {"alpha", "gamma", "rootca"} and listed["gamma"]["sha256"] == leaf_b.fingerprint


def test_reads_openssl_legacy_rc2_file_and_rewrites_it(driver: Any, tmp_path: Path, leaf_a: Issued,
                                                       leaf_b: Issued, kt: Any) -> None:
    leaf_a.write(tmp_path, "a")
    path = tmp_path / "legacy.p12"
    kt.run_tool(["openssl", "pkcs12", "-export", "-legacy", "-in", str(tmp_path / "a.crt"), "-inkey",
                 str(tmp_path / "a.key"), "-name", "old", "-passout", "env:KS_TEST_PW", "-out", str(path)], PW)
    assert "pbeWithSHA1And40BitRC2-CBC" in kt.run_tool(["openssl", "pkcs12", "-info", "-noout", "-legacy", "-in", str(path),
                                    "-passin", "env:KS_TEST_PW"], PW).stderr
    upgrade = driver.install(driver.endpoint("p12", path, store_password=PW), kt.bundle_of(leaf_b), dry_run=True)
    assert any("had the legacy PKCS#12 profile" in m for m in upgrade.messages)  # the plan warns
    ep = driver.endpoint("p12", path, store_password=PW, is_legacy=True)
    assert [n.fingerprint for n in driver.discover(ep)] == [leaf_a.fingerprint]
    driver.install(ep, kt.bundle_of(leaf_b), alias="new")
    info = kt.openssl_info(path, PW)  # no -legacy needed any more: 3DES, not RC2-40
    assert "RC2" not in info and "MAC: sha1" in info
    assert {n.name: n.fingerprint for n in driver.discover(ep)} == {"old": leaf_a.fingerprint,
                                                                    "new": leaf_b.fingerprint}


def test_discover_nodes(driver: Any, java_p12: Path, leaf_a: Issued) -> None:
    nodes = {n.name: n for n in driver.discover(driver.endpoint("p12", java_p12, store_password=PW))}
    assert set(nodes) == {"alpha", "gamma", "rootca"}
    alpha = nodes["alpha"]
    assert alpha.fingerprint == leaf_a.fingerprint and alpha.subject == "CN=a.example.org"
    assert alpha.not_after == leaf_a.cert.not_valid_after_utc and alpha.certificate
    assert alpha.locator == "alpha" and alpha.protocol == "file" and alpha.state == "active"
    assert nodes["gamma"].subject == "CN=gamma"
    assert nodes["rootca"].state == "trusted"


@pytest.mark.production_kdf
def test_production_modern_profile_uses_600000_pbkdf2_rounds(driver: Any, p12_file: Path, leaf_b: Issued,
                                                             kt: Any) -> None:
    driver.install(driver.endpoint("p12", p12_file, store_password=PW), kt.bundle_of(leaf_b))
    info = kt.openssl_info(p12_file, PW)
    assert "AES-256-CBC, Iteration 600000, PRF hmacWithSHA256" in info
    assert "MAC: sha256, Iteration 2048" in info


def test_non_ascii_password_read_by_openssl(driver: Any, tmp_path: Path, leaf_a: Issued, leaf_b: Issued,
                                            kt: Any) -> None:
    pw = "pässwörd €ü 密码"
    path = tmp_path / "u.p12"
    path.write_bytes(leaf_a.pfx(pw))
    ep = driver.endpoint("p12", path, store_password=pw)
    result = driver.install(ep, kt.bundle_of(leaf_b))
    assert any("Java cannot open" in m for m in result.messages)  # Java's PBE refuses non-ASCII passwords
    info = kt.openssl_info(path, pw)
    assert "friendlyName: leaf" in info and "friendlyName: b.example.org" in info


def test_replaced_entry_takes_its_old_chain_with_it(driver: Any, p12_file: Path, kt: Any) -> None:
    """alpha's old intermediate and root (another CA) leave the file with it; the Java-style
    friendly names of chain certificates that stay are kept."""
    other_ca = TestCA("Other")
    new = other_ca.issue("a.example.org")
    ep = driver.endpoint("p12", p12_file, store_password=PW)
    driver.install(ep, kt.bundle_of(new), alias="alpha")
    info = kt.openssl_info(p12_file, PW)
    assert "tlsgate Test" not in info  # the old CA's certificates are gone
    assert info.count("subject=") == 2 and "subject=CN = Other Intermediate CA" in info
    listed = kt.keytool_list(p12_file, PW)
    assert listed == {"alpha": {"type": "PrivateKeyEntry", "chain": 2, "sha256": new.fingerprint,
                                "store_type": "PKCS12"}}


def test_java_chain_friendly_names_survive(driver: Any, java_p12: Path, leaf_b: Issued, kt: Any) -> None:
    before = kt.openssl_info(java_p12, PW)
    assert "friendlyName: CN=tlsgate Test Intermediate CA" in before  # keytool names chain certs by DN
    driver.install(driver.endpoint("p12", java_p12, store_password=PW), kt.bundle_of(leaf_b))
    assert "friendlyName: CN=tlsgate Test Intermediate CA" in kt.openssl_info(java_p12, PW)


@pytest.mark.production_kdf
def test_java_entries_keep_their_rounds_and_openssl_entries_their_ciphertext(
        driver: Any, java_p12: Path, p12_file: Path, tmp_path: Path, leaf_a: Issued, leaf_b: Issued, kt: Any) -> None:
    """An install of another entry does not re-encrypt a Java 17 keystore's entries (PBES2,
    10,000 rounds, every key in one shared item) at 600,000 rounds, nor an OpenSSL 3 entry (2,048
    rounds, items of its own) at all: neither is weaker than the file's MAC, and a 300-entry Java
    keystore took 67 s of CPU when they were. The new entry gets the modern profile's rounds."""
    from tlsgate_keystores import p12_codec

    assert p12_codec.MODERN_KDF_ROUNDS == 600_000
    ep = driver.endpoint("p12", java_p12, store_password=PW)
    result = driver.install(ep, kt.bundle_of(leaf_b))
    assert result.verified and not result.rolled_back
    after = kt.keytool_list(java_p12, PW)
    assert set(after) == {"alpha", "gamma", "rootca", "b.example.org"}
    assert after["b.example.org"]["sha256"] == leaf_b.fingerprint
    info = kt.openssl_info(java_p12, PW)
    keys = [line for line in info.splitlines() if line.startswith("Shrouded Keybag")]
    # gamma: keytool's own 10,000; alpha: the 2,048 of openssl, which keytool left as it was
    assert sorted(k.split("Iteration ")[1].split(",")[0] for k in keys) == ["10000", "2048", "600000"], keys

    leaf_a.write(tmp_path / "o", "a")
    single = tmp_path / "openssl.p12"  # openssl 3 pkcs12 -export: PBES2, 2,048 rounds
    kt.run_tool(["openssl", "pkcs12", "-export", "-in", str(tmp_path / "o" / "a.crt"), "-inkey",
                 str(tmp_path / "o" / "a.key"), "-name", "alpha", "-out", str(single), "-passout", "env:KS_TEST_PW"], PW)
    kept = p12_codec.load(single.read_bytes(), PW).find("alpha").opaque.items  # type: ignore[union-attr]
    driver.install(driver.endpoint("p12", single, store_password=PW), kt.bundle_of(leaf_b))
    assert kept and all(item in single.read_bytes() for item in kept)
    assert set(kt.keytool_list(single, PW)) == {"alpha", "b.example.org"}
