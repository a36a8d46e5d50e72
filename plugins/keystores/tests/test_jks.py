"""jks endpoints: JKS written by pyjks, read back by keytool; PKCS#12-behind-.jks and JCEKS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from tlsgate import OperationError
from tlsgate_testing.certs import Issued, TestCA

PW = "changeit"


def make_store(tmp_path: Path, p12: Path, test_ca: TestCA, kt: Any, keytool: str, store_type: str) -> Path:
    """A keystore made by keytool: "alpha" (imported), "gamma" (generated), "rootca" (trusted)."""
    out = tmp_path / f"store.{store_type.lower()}"
    root = tmp_path / "root.crt"
    root.write_bytes(test_ca.root.public_bytes(serialization.Encoding.PEM))
    common = ["-storepass:env", "KS_TEST_PW"]
    kt.run_tool([keytool, "-importkeystore", "-noprompt", "-srckeystore", str(p12), "-srcstoretype", "PKCS12",
                 "-srcstorepass:env", "KS_TEST_PW", "-destkeystore", str(out), "-deststoretype", store_type,
                 "-deststorepass:env", "KS_TEST_PW"], PW)
    kt.run_tool([keytool, "-genkeypair", "-keyalg", "EC", "-alias", "gamma", "-dname", "CN=gamma",
                 "-keystore", str(out), "-storetype", store_type, *common], PW)
    kt.run_tool([keytool, "-importcert", "-noprompt", "-alias", "rootca", "-file", str(root),
                 "-keystore", str(out), "-storetype", store_type, *common], PW)
    return out


@pytest.fixture
def jks_file(tmp_path: Path, p12_file: Path, test_ca: TestCA, kt: Any, keytool: str) -> Path:
    return make_store(tmp_path, p12_file, test_ca, kt, keytool, "JKS")


def test_jks_install_keeps_other_entries_and_keytool_reads_it(driver: Any, jks_file: Path, leaf_b: Issued,
                                                              kt: Any) -> None:
    before = kt.keytool_list(jks_file, PW)
    assert before["alpha"]["store_type"] == "JKS"
    ep = driver.endpoint("jks", jks_file, store_password=PW)
    result = driver.install(ep, kt.bundle_of(leaf_b), alias="New-Entry")
    assert result.alias == "new-entry"  # JKS aliases are lower case
    after = kt.keytool_list(jks_file, PW)
    assert set(after) == {"alpha", "gamma", "rootca", "new-entry"}
    for alias in ("alpha", "gamma", "rootca"):
        assert after[alias] == before[alias]
    assert after["new-entry"]["type"] == "PrivateKeyEntry" and after["new-entry"]["sha256"] == leaf_b.fingerprint
    assert after["new-entry"]["chain"] == 2 and after["new-entry"]["store_type"] == "JKS"
    assert after["rootca"]["type"] == "trustedCertEntry"


def test_jks_replace_and_discover(driver: Any, jks_file: Path, leaf_b: Issued, kt: Any) -> None:
    ep = driver.endpoint("jks", jks_file, store_password=PW)
    driver.install(ep, kt.bundle_of(leaf_b), alias="Alpha")
    nodes = {n.name: n for n in driver.discover(ep)}
    assert set(nodes) == {"alpha", "gamma", "rootca"}
    assert nodes["alpha"].fingerprint == leaf_b.fingerprint and nodes["alpha"].vendor == "JKS"
    assert nodes["rootca"].state == "trusted"
    assert kt.keytool_list(jks_file, PW)["alpha"]["sha256"] == leaf_b.fingerprint


def test_jks_endpoint_with_a_pkcs12_file_stays_pkcs12(driver: Any, tmp_path: Path, p12_file: Path,
                                                      test_ca: TestCA, leaf_b: Issued, kt: Any, keytool: str) -> None:
    """Java 9+ keytool writes PKCS#12 behind a .jks name; the file keeps its format."""
    store = make_store(tmp_path, p12_file, test_ca, kt, keytool, "PKCS12")
    ep = driver.endpoint("jks", store, store_password=PW)
    driver.install(ep, kt.bundle_of(leaf_b))
    listed = kt.keytool_list(store, PW)
    assert listed["b.example.org"]["store_type"] == "PKCS12"
    assert set(listed) == {"alpha", "gamma", "rootca", "b.example.org"}
    assert "PBES2, PBKDF2, AES-256-CBC" in kt.openssl_info(store, PW)


def test_jks_endpoint_keeps_a_legacy_pkcs12_file_legacy(driver: Any, tmp_path: Path, leaf_a: Issued,
                                                        leaf_b: Issued, kt: Any) -> None:
    """A PKCS#12 written the Java 8 / OpenSSL 1.1 way (SHA-1 MAC) may be read by an old Java: a
    jks endpoint (no --is_legacy) rewrites it in the legacy profile."""
    crt, key, _ = leaf_a.write(tmp_path, "a")
    store = tmp_path / "old-java.jks"
    kt.run_tool(["openssl", "pkcs12", "-export", "-legacy", "-in", str(crt), "-inkey", str(key), "-name", "tomcat",
                 "-passout", "env:KS_TEST_PW", "-out", str(store)], PW)
    driver.install(driver.endpoint("jks", store, store_password=PW), kt.bundle_of(leaf_b))
    info = kt.openssl_info(store, PW)
    assert "MAC: sha1" in info and "pbeWithSHA1And3-KeyTripleDES-CBC" in info and "AES" not in info
    assert set(kt.keytool_list(store, PW)) == {"tomcat", "b.example.org"}


def test_jceks_is_read_but_never_rewritten(driver: Any, tmp_path: Path, p12_file: Path, test_ca: TestCA,
                                           leaf_b: Issued, kt: Any, keytool: str) -> None:
    store = make_store(tmp_path, p12_file, test_ca, kt, keytool, "JCEKS")
    ep = driver.endpoint("jks", store, store_password=PW)
    assert {n.name for n in driver.discover(ep)} == {"alpha", "gamma", "rootca"}
    before = store.read_bytes()
    with pytest.raises(OperationError, match="JCEKS keystores cannot be written"):
        driver.install(ep, kt.bundle_of(leaf_b))
    assert store.read_bytes() == before


def test_jks_non_ascii_password_read_by_keytool(driver: Any, tmp_path: Path, jks_file: Path, leaf_b: Issued,
                                                kt: Any, keytool: str) -> None:
    pw = "pässwörd €ü 密码"
    kt.run_tool([keytool, "-storepasswd", "-keystore", str(jks_file), "-storepass:env", "KS_TEST_PW",
                 "-new", pw], PW)  # argv here is the test's own throw-away password
    ep = driver.endpoint("jks", jks_file, store_password=pw)
    driver.install(ep, kt.bundle_of(leaf_b))
    listed = kt.keytool_list(jks_file, pw)
    assert listed["b.example.org"]["sha256"] == leaf_b.fingerprint
    # keytool opens the new key with the store password (JKS key password = store password)
    proc = kt.run_tool([keytool, "-certreq", "-alias", "b.example.org", "-keystore", str(jks_file),
                        "-storepass:env", "KS_TEST_PW"], pw)
    assert "BEGIN NEW CERTIFICATE REQUEST" in proc.stdout
    # "alpha" kept its own key password ("changeit"): written back untouched, so it still opens with it
    proc = kt.run_tool([keytool, "-certreq", "-alias", "alpha", "-keystore", str(jks_file),
                        "-storepass:env", "KS_TEST_PW", "-keypass", PW], pw)
    assert "BEGIN NEW CERTIFICATE REQUEST" in proc.stdout
