"""The files an install uploads: the PFX (leaf + key) and the intermediates (PKCS#7).

The PFX uses the *legacy* PKCS#12 profile, built with cryptography's explicit builder:
pbeWithSHA1And3-KeyTripleDES-CBC for the key and certificate bags and an HMAC-SHA1 MAC. Windows
Server 2016 / Windows 10 before build 1709 cannot import AES-256/SHA-256 PFX files, and the
gateway does not know the host's build before it connects (protocols.md 6.2, 6.3). The file
lives on the host only between upload and import, with an ACL for SYSTEM, Administrators and the
connecting user, and is protected by a random one-time password that is used once and dropped.
"""

from __future__ import annotations

import secrets

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from tlsgate.plugin import CertificateBundle


def one_time_password() -> str:
    """A random password for one PFX (URL-safe characters: no quoting question anywhere)."""
    return secrets.token_urlsafe(24)


def legacy_pfx(bundle: CertificateBundle, password: str, *, friendly_name: str | None = None) -> bytes:
    """The leaf and its key as a PFX every IIS 10 host imports (3DES + SHA-1 MAC, 2048 rounds)."""
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())  # noqa: S303 - legacy MAC on purpose; without it HMAC-SHA256 (6.2)
        .build(password.encode())
    )
    name = (friendly_name or bundle.default_alias()).encode()
    return pkcs12.serialize_key_and_certificates(name, bundle.key, bundle.leaf, None, encryption)


def chain_p7b(bundle: CertificateBundle) -> bytes | None:
    """The intermediates as a DER PKCS#7 certificates-only file, or None when there are none."""
    if not bundle.chain:
        return None
    return pkcs7.serialize_certificates(list(bundle.chain), serialization.Encoding.DER)


def thumbprint(cert_der_or_bundle: CertificateBundle | bytes) -> str:
    """Windows' thumbprint: SHA-1 of the DER, upper-case hex (an identifier, not a security check)."""
    from cryptography import x509

    if isinstance(cert_der_or_bundle, CertificateBundle):
        cert = cert_der_or_bundle.leaf
    else:
        cert = x509.load_der_x509_certificate(cert_der_or_bundle)
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - Windows names certificates by SHA-1
