"""Certificate helpers shared by every driver: fingerprints, names, matching, PEM/DER."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID


def fingerprint(cert: x509.Certificate | bytes) -> str:
    """SHA-256 of the DER encoding, lower-case hex (the identity used everywhere in tlsgate)."""
    der = cert if isinstance(cert, bytes) else cert.public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def to_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def subject_text(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def common_name(cert: x509.Certificate) -> str | None:
    attrs_ = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs_[0].value) if attrs_ else None


def dns_names(cert: x509.Certificate) -> list[str]:
    """SAN DNS names (and IPs as text), else the CN, the names the certificate covers."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = list(san.get_values_for_type(x509.DNSName))
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        if names:
            return names
    except x509.ExtensionNotFound:
        pass
    cn = common_name(cert)
    return [cn] if cn else []


def covers(cert: x509.Certificate, hostname: str) -> bool:
    """Whether the certificate is valid for ``hostname`` (exact or one-label wildcard, RFC 6125)."""
    host = hostname.rstrip(".").lower()
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for name in dns_names(cert):
        name = name.rstrip(".").lower()
        if ip is not None:
            if name == str(ip):
                return True
            continue
        if name == host:
            return True
        if name.startswith("*.") and "." in host:
            if host.split(".", 1)[1] == name[2:]:
                return True
    return False


def not_after(cert: x509.Certificate) -> dt.datetime:
    return cert.not_valid_after_utc


def load_pem_certificates(data: bytes) -> list[x509.Certificate]:
    return list(x509.load_pem_x509_certificates(data))


def load_any_certificate(data: bytes) -> x509.Certificate:
    """A certificate from PEM or DER bytes."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)[0]
    return x509.load_der_x509_certificate(data)


def pem_chain(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(to_pem(c) for c in certs)
