"""CertificateBundle: a leaf certificate, its private key and its ordered chain."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from . import certs
from .errors import ValidationError
from .secret import Secret, reveal

PrivateKey = (
    rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
)

_MAX_INPUT = 1 << 20  # a certificate file larger than 1 MiB is not a certificate file


@attrs.frozen
class CertificateBundle:
    """What an install puts on an endpoint. Build it with :meth:`from_pem_files`,
    :meth:`from_pem`, :meth:`from_pfx_file` or :meth:`from_pfx`; each checks that the key matches
    the leaf and orders the chain leaf -> intermediates (the self-signed root dropped unless
    ``include_root``). Constructors do no I/O beyond reading the files they are given."""

    leaf: x509.Certificate
    key: PrivateKey = attrs.field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def from_pem(
        cls,
        cert_pem: bytes,
        key_pem: bytes,
        chain_pem: bytes | None = None,
        *,
        key_password: Secret | str | None = None,
        include_root: bool = False,
        names: tuple[str, str, str] = ("--cert", "--key", "--chain"),
    ) -> CertificateBundle:
        cert_name, key_name, chain_name = names
        found = _parse_certs(cert_pem, cert_name)
        key = _parse_key(key_pem, key_name, key_password)
        extra = _parse_certs(chain_pem, chain_name) if chain_pem else []
        leaf = _pick_leaf(found, key, cert_name, key_name)
        others = [c for c in found + extra if certs.fingerprint(c) != certs.fingerprint(leaf)]
        return cls(leaf=leaf, key=key, chain=order_chain(leaf, others, include_root=include_root))

    @classmethod
    def from_pem_files(
        cls,
        cert: str | Path,
        key: str | Path,
        chain: str | Path | None = None,
        *,
        key_password: Secret | str | None = None,
        include_root: bool = False,
    ) -> CertificateBundle:
        return cls.from_pem(
            _read(cert, "--cert"),
            _read(key, "--key"),
            _read(chain, "--chain") if chain else None,
            key_password=key_password,
            include_root=include_root,
            names=(f"--cert {cert}", f"--key {key}", f"--chain {chain}"),
        )

    @classmethod
    def from_pfx(
        cls,
        data: bytes,
        password: Secret | str | None = None,
        *,
        include_root: bool = False,
        name: str = "--pfx",
    ) -> CertificateBundle:
        pw = reveal(password)
        try:
            key, leaf, extra = pkcs12.load_key_and_certificates(
                data, pw.encode() if pw else None
            )
        except ValueError as exc:
            wrong_pw = "password" in str(exc).lower() or pw
            reason = "wrong password or not a PKCS#12 file" if wrong_pw else "not a PKCS#12 file"
            raise ValidationError(f"cannot open: {reason}", option=name) from None
        if key is None or leaf is None:
            raise ValidationError("holds no private key with its certificate", option=name)
        if not _key_matches(leaf, key):
            raise ValidationError("the private key does not match the certificate", option=name)
        return cls(leaf=leaf, key=key, chain=order_chain(leaf, list(extra), include_root=include_root))  # type: ignore[arg-type]

    @classmethod
    def from_pfx_file(
        cls, path: str | Path, password: Secret | str | None = None, *, include_root: bool = False
    ) -> CertificateBundle:
        return cls.from_pfx(_read(path, "--pfx"), password, include_root=include_root, name=f"--pfx {path}")

    # -- views --------------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        return certs.fingerprint(self.leaf)

    @property
    def names(self) -> list[str]:
        return certs.dns_names(self.leaf)

    @property
    def common_name(self) -> str | None:
        return certs.common_name(self.leaf)

    @property
    def subject(self) -> str:
        return certs.subject_text(self.leaf)

    @property
    def not_after(self) -> dt.datetime:
        return certs.not_after(self.leaf)

    def covers(self, hostname: str) -> bool:
        return certs.covers(self.leaf, hostname)

    def cert_pem(self) -> bytes:
        return certs.to_pem(self.leaf)

    def chain_pem(self) -> bytes:
        return certs.pem_chain(self.chain)

    def fullchain_pem(self) -> bytes:
        """Leaf followed by the intermediates (what nginx and Apache 2.4.8+ read)."""
        return self.cert_pem() + self.chain_pem()

    def key_pem(self, password: Secret | str | None = None) -> bytes:
        """The key as PKCS#8 PEM, encrypted when a password is given."""
        pw = reveal(password)
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(pw.encode()) if pw else serialization.NoEncryption()
        )
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)

    def key_der(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def default_alias(self) -> str:
        """The entry alias derived from the certificate: its CN (else first SAN), made safe."""
        base = self.common_name or (self.names[0] if self.names else "tlsgate")
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in base.replace("*", "wildcard"))
        return safe.strip("._") or "tlsgate"


def order_chain(
    leaf: x509.Certificate, others: Sequence[x509.Certificate], *, include_root: bool = False
) -> tuple[x509.Certificate, ...]:
    """Order ``others`` as the issuer path from ``leaf`` upward; drop duplicates, certificates
    not on the path, and (unless ``include_root``) the self-signed root."""
    pool = {certs.fingerprint(c): c for c in others}
    ordered: list[x509.Certificate] = []
    current = leaf
    while True:
        issuer = next(
            (c for fp, c in pool.items() if c.subject == current.issuer and _signed_by(current, c)),
            None,
        )
        if issuer is None or issuer is current or _self_signed(current):
            break
        ordered.append(issuer)
        pool.pop(certs.fingerprint(issuer))
        current = issuer
    if ordered and _self_signed(ordered[-1]) and not include_root:
        ordered.pop()
    return tuple(ordered)


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - any failure means "not the issuer"
        return False


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer and _signed_by(cert, cert)


def _read(path: str | Path, option: str) -> bytes:
    p = Path(path)
    try:
        if p.stat().st_size > _MAX_INPUT:
            raise ValidationError(f"{p}: file is too large to be a certificate or key", option=option)
        return p.read_bytes()
    except FileNotFoundError:
        raise ValidationError(f"{p}: no such file", option=option) from None
    except IsADirectoryError:
        raise ValidationError(f"{p}: is a directory", option=option) from None
    except PermissionError:
        raise ValidationError(f"{p}: permission denied", option=option) from None


def _parse_certs(data: bytes | None, name: str) -> list[x509.Certificate]:
    if not data:
        raise ValidationError("is empty", option=name)
    try:
        if b"-----BEGIN" in data:
            found = x509.load_pem_x509_certificates(data)
        else:
            found = [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise ValidationError("is not a PEM or DER certificate", option=name) from None
    return list(found)


def _parse_key(data: bytes, name: str, password: Secret | str | None) -> PrivateKey:
    if not data:
        raise ValidationError("is empty", option=name)
    pw = reveal(password)
    loader = serialization.load_pem_private_key if b"-----BEGIN" in data else serialization.load_der_private_key
    try:
        key = loader(data, pw.encode() if pw else None)
    except TypeError:
        raise ValidationError("the private key is encrypted; give its password", option=name) from None
    except (ValueError, Exception) as exc:  # noqa: BLE001 - cryptography raises several kinds
        if "password" in str(exc).lower() or "decrypt" in str(exc).lower():
            raise ValidationError("cannot decrypt the private key (wrong password?)", option=name) from None
        raise ValidationError("is not a PEM or DER private key", option=name) from None
    if not isinstance(key, PrivateKey):
        raise ValidationError("unsupported private key type", option=name)
    return key


def _pick_leaf(found: list[x509.Certificate], key: PrivateKey, cert_name: str, key_name: str) -> x509.Certificate:
    for cert in found:
        if _key_matches(cert, key):
            return cert
    raise ValidationError(f"the private key does not match the certificate in {cert_name}", option=key_name)


def _key_matches(cert: x509.Certificate, key: object) -> bool:
    pub = getattr(key, "public_key", None)
    if pub is None:
        return False
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return bool(cert.public_key().public_bytes(enc, fmt) == pub().public_bytes(enc, fmt))


def key_matches(cert: x509.Certificate, key: object) -> bool:
    """Public check that a private key belongs to a certificate (drivers use it before reloads)."""
    return _key_matches(cert, key)
