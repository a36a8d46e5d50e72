"""PEM files: one entry (leaf, chain, key), the key in the same file or in a separate key file.

Rewriting keeps the file's layout: whether the key came before or after the certificates, the
key's format (PKCS#8 or the traditional ``RSA``/``EC PRIVATE KEY``), and every other block (DH
parameters, ...) after them. An encrypted key is written as an encrypted PKCS#8 with the
explicit modern profile (PBES2: PBKDF2-HMAC-SHA256 + AES-256-CBC); ``cryptography``'s PKCS#8
writer only offers ``BestAvailableEncryption``, so the ``EncryptedPrivateKeyInfo`` is taken from
a PKCS#12 key bag built with the explicit builder (:func:`encrypted_pkcs8`).
"""

from __future__ import annotations

import base64
import re
import textwrap

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tlsgate.plugin import fingerprint, key_matches, pem_chain

from .errors import KeystoreError

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.DOTALL)
_KEY_LABELS = {b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"ENCRYPTED PRIVATE KEY"}


@attrs.frozen
class PemContent:
    certs: tuple[x509.Certificate, ...]  # leaf (the one the key matches, else the first) first
    key_block: bytes | None  # the key's PEM text as found
    key_first: bool = False
    others: tuple[bytes, ...] = ()  # blocks that are neither certificates nor keys

    @property
    def key_encrypted(self) -> bool:
        return self.key_block is not None and (
            b"ENCRYPTED PRIVATE KEY" in self.key_block or b"Proc-Type: 4,ENCRYPTED" in self.key_block
        )

    @property
    def key_traditional(self) -> bool:
        return self.key_block is not None and self.key_block.startswith((b"-----BEGIN RSA", b"-----BEGIN EC"))


def parse(data: bytes, key_data: bytes | None = None) -> PemContent:
    """Split a PEM file (and an optional separate key file) into certificates, key and others."""
    found: list[x509.Certificate] = []
    key_block: bytes | None = None
    key_first = False
    others: list[bytes] = []
    for source in (data, key_data or b""):
        for match in _BLOCK.finditer(source):
            label, block = match.group(1), match.group(0)
            if label == b"CERTIFICATE":
                try:
                    found.append(x509.load_pem_x509_certificate(block))
                except ValueError:
                    raise KeystoreError("format", "holds a damaged certificate block") from None
            elif label in _KEY_LABELS:
                if key_block is not None:
                    raise KeystoreError("unsupported", "holds more than one private key")
                key_block = block if block.endswith(b"\n") else block + b"\n"
                key_first = source is data and not found
            elif source is data:
                others.append(block if block.endswith(b"\n") else block + b"\n")
    if data.strip() and not found and key_block is None and not others:
        raise KeystoreError("format", "is not a PEM file (no -----BEGIN block)")
    return PemContent(tuple(found), key_block, key_first, tuple(others))


def load_key(content: PemContent, password: str | None) -> object | None:
    """The private key, decrypted with ``password`` when it is encrypted."""
    if content.key_block is None:
        return None
    try:
        return serialization.load_pem_private_key(
            content.key_block, password.encode("utf-8") if content.key_encrypted and password else None
        )
    except TypeError:
        raise KeystoreError("key_password", "the private key is encrypted: give --key_password") from None
    except ValueError:
        if content.key_encrypted:
            raise KeystoreError("key_password", "cannot decrypt the private key: wrong --key_password") from None
        raise KeystoreError("format", "holds a damaged private key") from None


def ordered(content: PemContent, password: str | None = None) -> tuple[x509.Certificate, ...]:
    """The certificates with the key's certificate first (when the key is readable)."""
    if not content.certs:
        return ()
    leaf = content.certs[0]
    if content.key_block is not None and not (content.key_encrypted and not password):
        try:
            key = load_key(content, password)
        except KeystoreError:
            key = None
        leaf = next((c for c in content.certs if key is not None and key_matches(c, key)), leaf)
    return (leaf, *[c for c in content.certs if fingerprint(c) != fingerprint(leaf)])


def render(
    old: PemContent, chain: tuple[x509.Certificate, ...], key: object, *, password: str | None, separate_key: bool
) -> tuple[bytes, bytes]:
    """The new certificate file and key text (the key text is empty when it goes in the same file)."""
    key_pem = key_text(key, password=password, traditional=old.key_traditional)
    cert_pem = pem_chain(chain)
    if separate_key:
        return cert_pem + b"".join(old.others), key_pem
    body = key_pem + cert_pem if old.key_first else cert_pem + key_pem
    return body + b"".join(old.others), b""


def key_text(key: object, *, password: str | None, traditional: bool = False) -> bytes:
    if password:
        return _armor("ENCRYPTED PRIVATE KEY", encrypted_pkcs8(key, password))
    fmt = serialization.PrivateFormat.PKCS8
    if traditional and isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())  # type: ignore[attr-defined, no-any-return]


def encrypted_pkcs8(key: object, password: str) -> bytes:
    """An ``EncryptedPrivateKeyInfo`` (DER) in the explicit modern profile."""
    from cryptography.hazmat.primitives.serialization import pkcs12
    from pyasn1.codec.ber import decoder
    from pyasn1_modules import rfc7292

    from . import p12_codec

    p12 = pkcs12.serialize_key_and_certificates(None, key, None, None, p12_codec.encryption(password, legacy=False))  # type: ignore[arg-type]
    for item in p12_codec.safe_items(p12):
        ci, _ = decoder.decode(item, asn1Spec=rfc7292.ContentInfo())
        contents, _ = decoder.decode(bytes(p12_codec.octets(ci["content"])), asn1Spec=rfc7292.SafeContents())
        for bag in contents:
            if bag["bagId"] == rfc7292.id_pkcs8ShroudedKeyBag:
                return bytes(bag["bagValue"])
    raise AssertionError("cryptography wrote no shrouded key bag")  # pragma: no cover


def _armor(label: str, der: bytes) -> bytes:
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n".encode("ascii")
