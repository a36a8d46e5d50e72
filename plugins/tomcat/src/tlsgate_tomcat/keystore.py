"""The keystores Tomcat reads: writing them (PKCS#12, JKS) and reading them back.

PKCS#12 files are always encrypted with the explicit modern profile (PBES2 / PBKDF2-SHA256 /
AES-256-CBC, HMAC-SHA256 MAC): Java ignores an unencrypted key bag, and
``BestAvailableEncryption`` changes meaning between cryptography releases. Tomcat 10.1 and 11
need Java 11+/17+, which read this profile; Tomcat 9 on Java 8 before 8u301 does not, so
``legacy=True`` gives 3DES with a SHA-1 MAC for those. JKS goes through pyjks (imported here
only: plugin modules must load without it).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from tlsgate.plugin import CertificateBundle, key_matches

JKS_MAGIC = b"\xfe\xed\xfe\xed"
PKCS12_ROUNDS = 600_000


class KeystoreError(Exception):
    """A keystore could not be opened or does not hold what it should (no secret in the text)."""


@attrs.frozen
class KeyEntry:
    alias: str
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key: object | None = attrs.field(default=None, repr=False)


def keystore_kind(declared: str | None, data: bytes | None = None) -> str:
    """``"JKS"`` or ``"PKCS12"``: the file's own format when known, else the declared type."""
    if data is not None:
        return "JKS" if data.startswith(JKS_MAGIC) else "PKCS12"
    return "JKS" if (declared or "").upper() == "JKS" else "PKCS12"


def write_pkcs12(bundle: CertificateBundle, alias: str, password: str, *, legacy: bool = False) -> bytes:
    builder = serialization.PrivateFormat.PKCS12.encryption_builder()
    if legacy:
        builder = (
            builder.kdf_rounds(2048)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1())  # noqa: S303 - the legacy profile old Java needs
        )
    else:
        builder = (
            builder.kdf_rounds(PKCS12_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
        )
    return pkcs12.serialize_key_and_certificates(
        alias.encode(), bundle.key, bundle.leaf, list(bundle.chain) or None, builder.build(password.encode())
    )


def write_jks(bundle: CertificateBundle, alias: str, password: str) -> bytes:
    import jks  # lazy: pyjks is only needed when a JKS keystore is written or read

    chain_der = [c.public_bytes(serialization.Encoding.DER) for c in (bundle.leaf, *bundle.chain)]
    entry = jks.PrivateKeyEntry.new(alias, chain_der, bundle.key_der(), "pkcs8")
    return bytes(jks.KeyStore.new("jks", [entry]).saves(password))


def write_keystore(kind: str, bundle: CertificateBundle, alias: str, password: str) -> bytes:
    return write_jks(bundle, alias, password) if kind == "JKS" else write_pkcs12(bundle, alias, password)


def read_entries(data: bytes, password: str) -> list[KeyEntry]:
    """The private-key entries of a JKS or PKCS#12 keystore (raises KeystoreError)."""
    if data.startswith(JKS_MAGIC):
        return _read_jks(data, password)
    try:
        p12 = pkcs12.load_pkcs12(data, password.encode())
    except ValueError:
        raise KeystoreError("cannot open the PKCS#12 keystore (wrong password or damaged file)") from None
    if p12.cert is None:
        return []
    name = p12.cert.friendly_name.decode("utf-8", "replace") if p12.cert.friendly_name else ""
    chain = tuple(c.certificate for c in p12.additional_certs)
    return [KeyEntry(name, p12.cert.certificate, chain, p12.key)]


def _read_jks(data: bytes, password: str) -> list[KeyEntry]:
    import jks

    try:
        # Keys are decrypted below: pyjks 20's own decrypt() trips over pyasn1 >= 0.5 on the
        # absent algorithm parameters of Sun's JKS key protector.
        store = jks.KeyStore.loads(data, password, try_decrypt_keys=False)
    except Exception as exc:  # noqa: BLE001 - pyjks raises many kinds for a bad password or file
        raise KeystoreError(f"cannot open the JKS keystore ({type(exc).__name__})") from None
    out = []
    for alias, entry in store.private_keys.items():
        certs = [x509.load_der_x509_certificate(der) for _kind, der in entry.cert_chain]
        out.append(KeyEntry(alias, certs[0], tuple(certs[1:]), _jks_private_key(entry, password)))
    return out


def _jks_private_key(entry: object, password: str) -> object | None:
    """The private key of a JKS entry protected with Sun's JKS algorithm (key password = store
    password, as Tomcat uses by default), or None."""
    from jks import sun_crypto
    from pyasn1.codec.der import decoder
    from pyasn1_modules import rfc5208

    try:
        if entry.is_decrypted():  # type: ignore[attr-defined]
            plain = entry.pkey_pkcs8  # type: ignore[attr-defined]
        else:
            info = decoder.decode(entry._encrypted, asn1Spec=rfc5208.EncryptedPrivateKeyInfo())[0]  # type: ignore[attr-defined]
            if info["encryptionAlgorithm"]["algorithm"].asTuple() != sun_crypto.SUN_JKS_ALGO_ID:
                return None
            plain = sun_crypto.jks_pkey_decrypt(info["encryptedData"].asOctets(), password)
        return serialization.load_der_private_key(plain, None)
    except Exception:  # noqa: BLE001 - a wrong key password or an unknown protector: no key
        return None


def find_entry(entries: Sequence[KeyEntry], alias: str | None) -> KeyEntry | None:
    """The entry Tomcat would use: ``alias`` (Java compares aliases case-insensitively), else
    the first key entry."""
    if alias is None:
        return entries[0] if entries else None
    return next((e for e in entries if e.alias.lower() == alias.lower()), None)


def check_written(data: bytes, password: str, alias: str, bundle: CertificateBundle) -> None:
    """Re-open a keystore just written and check it holds ``bundle`` under ``alias``."""
    entries = read_entries(data, password)
    entry = find_entry(entries, alias)
    if entry is None:
        raise KeystoreError(f"the new keystore has no key entry named {alias!r}")
    if entry.certificate != bundle.leaf:
        raise KeystoreError(f"entry {alias!r} of the new keystore holds another certificate")
    if entry.key is None or not key_matches(entry.certificate, entry.key):
        raise KeystoreError(f"entry {alias!r} of the new keystore has no key matching its certificate")
