"""The plugin's own keystore writer, read back by keytool and openssl (independent readers)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from tlsgate import CertificateBundle
from tlsgate_testing.certs import TestCA
from tlsgate_tomcat import keystore

PASSWORD = "p w;$(id)'\""


@pytest.fixture(scope="module")
def bundle() -> CertificateBundle:
    issued = TestCA(key_type="ec").issue("ks.example.test")
    return CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)


@pytest.mark.parametrize("kind", ["PKCS12", "JKS"])
def test_keytool_lists_the_private_key_entry(kind: str, bundle: CertificateBundle, tmp_path: Path) -> None:
    if shutil.which("keytool") is None:
        pytest.skip("keytool missing")
    path = tmp_path / "ks"
    path.write_bytes(keystore.write_keystore(kind, bundle, "Tomcat", PASSWORD))
    out = subprocess.run(["keytool", "-list", "-v", "-keystore", str(path), "-storepass:env", "PW"],
                         capture_output=True, text=True, env={"PW": PASSWORD, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "Entry type: PrivateKeyEntry" in out.stdout
    assert "Alias name: tomcat" in out.stdout  # Java lowercases aliases
    assert "Certificate chain length: 2" in out.stdout
    assert f"Keystore type: {kind}" in out.stdout


def test_pkcs12_profile_is_modern_and_encrypted(bundle: CertificateBundle, tmp_path: Path) -> None:
    path = tmp_path / "k.p12"
    path.write_bytes(keystore.write_pkcs12(bundle, "tomcat", PASSWORD))
    out = subprocess.run(["openssl", "pkcs12", "-info", "-noout", "-in", str(path), "-passin", "env:PW"],
                         capture_output=True, text=True, env={"PW": PASSWORD, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    info = out.stderr + out.stdout
    assert "MAC: sha256" in info
    assert "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC" in info
    assert "PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC" in info
    assert "keyBag" not in info.replace("Shrouded Keybag", "")


@pytest.mark.parametrize("kind", ["PKCS12", "JKS"])
def test_read_back_and_check(kind: str, bundle: CertificateBundle) -> None:
    data = keystore.write_keystore(kind, bundle, "tomcat", PASSWORD)
    keystore.check_written(data, PASSWORD, "TOMCAT", bundle)  # aliases compare case-insensitively
    with pytest.raises(keystore.KeystoreError):
        keystore.check_written(data, PASSWORD, "other", bundle)
    with pytest.raises(keystore.KeystoreError):
        keystore.read_entries(data, "wrong")
    entries = keystore.read_entries(data, PASSWORD)
    assert [c.subject.rfc4514_string() for c in entries[0].chain] == ["CN=tlsgate Test Intermediate CA"]
