"""JKS keystores through pyjks, and what a ``jks`` endpoint's file may really be.

Since Java 9, ``keytool -genkeypair -keystore app.jks`` writes PKCS#12 unless told
``-storetype JKS``, so a ``jks`` endpoint's file is read by its content, not its name:
``FEEDFEED`` is JKS, ``CECECECE`` is JCEKS (read-only: pyjks cannot write it), anything else is
tried as PKCS#12 and rewritten as PKCS#12 in the profile it had (legacy when its MAC is
HMAC-SHA1, as Java 8 and OpenSSL 1.1 wrote it; modern otherwise), keeping the file's format.

Entries other than the one installed are written back exactly as they were read: their keys
stay encrypted (we never need them), so an entry whose key password differs from the store
password survives too. New private keys are protected with the store password, as keytool does.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tlsgate.plugin import to_der

from . import p12_codec
from .entries import KeyEntry, Keystore, TrustedEntry
from .errors import KeystoreError

JKS_MAGIC = b"\xfe\xed\xfe\xed"
JCEKS_MAGIC = b"\xce\xce\xce\xce"


def load(data: bytes, password: str) -> Keystore:
    if data[:4] not in (JKS_MAGIC, JCEKS_MAGIC):
        if data[:1] == b"\x30":
            return p12_codec.load(data, password)
        raise KeystoreError("format", "not a JKS, JCEKS or PKCS#12 keystore")
    import jks

    try:
        ks = jks.KeyStore.loads(data, password, try_decrypt_keys=False)
    except jks.util.KeystoreSignatureException:
        raise KeystoreError("password", "cannot open the JKS keystore: wrong store password") from None
    except (jks.util.KeystoreException, ValueError, IndexError) as exc:
        raise KeystoreError("format", f"damaged JKS keystore ({type(exc).__name__})") from None
    entries: list[KeyEntry | TrustedEntry] = []
    others: list[Any] = []
    for alias, item in ks.entries.items():
        if isinstance(item, jks.PrivateKeyEntry):
            chain = tuple(x509.load_der_x509_certificate(der) for _, der in item.cert_chain)
            entries.append(KeyEntry(alias, chain, None, opaque=item))
        elif isinstance(item, jks.TrustedCertEntry):
            entries.append(TrustedEntry(alias, x509.load_der_x509_certificate(item.cert), opaque=item))
        else:
            others.append(item)  # JCEKS secret keys
    return Keystore(ks.store_type, entries, layout={"other_entries": others})


def dump(store: Keystore, password: str) -> bytes:
    if store.format == "pkcs12":  # keep the file's profile: an old Java may read only the legacy one
        return p12_codec.dump(store, password, legacy=bool(store.layout.get("legacy")))
    if store.format != "jks":
        raise KeystoreError(
            "unsupported",
            f"{store.format.upper()} keystores cannot be written (pyjks writes JKS only); "
            "convert it with keytool -importkeystore",
        )
    import jks

    items = []
    for entry in store.entries:
        if isinstance(entry.opaque, jks.util.AbstractKeystoreEntry):
            items.append(entry.opaque)
        elif isinstance(entry, KeyEntry):
            if entry.key is None:  # a PKCS#12 file's entry, its key still encrypted there
                raise KeystoreError("format", f"entry {entry.alias!r}: no decrypted key to write as JKS "
                                              "(read the PKCS#12 file with decrypt_keys=True)")
            key_der = entry.key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            items.append(jks.PrivateKeyEntry.new(entry.alias, [to_der(c) for c in entry.certs], key_der))
        else:
            items.append(jks.TrustedCertEntry.new(entry.alias, to_der(entry.cert)))
    return bytes(jks.KeyStore.new("jks", items).saves(password))


def own_key_password(entry: KeyEntry, store_password: str) -> bool:
    """Whether a JKS key entry's key is protected with a password other than the store password
    (keytool ``-keypass``). Checked on a copy: the decoded keystore is shared and stays encrypted."""
    import jks

    item = entry.opaque
    if not isinstance(item, jks.PrivateKeyEntry) or item.is_decrypted():
        return False
    # a fresh entry of the same encrypted bytes (copy.copy recurses in pyjks' __getattr__)
    probe = jks.PrivateKeyEntry(alias=item.alias, timestamp=item.timestamp, store_type=item.store_type,
                                cert_chain=item.cert_chain, encrypted=item._encrypted)
    try:
        probe.decrypt(store_password)
    except jks.util.DecryptionFailureException:
        return True
    except (jks.util.KeystoreException, ValueError):
        return False
    return False
