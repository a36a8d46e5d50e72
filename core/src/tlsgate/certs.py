"""Certificate helpers shared by every driver: fingerprints, names, matching, PEM/DER, key kinds,
and reading a certificate file through a connection. Plugins import them from :mod:`tlsgate.plugin`."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import ipaddress
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from .connection import Connection


_SHA256 = hashes.SHA256()


def fingerprint(cert: x509.Certificate | bytes) -> str:
    """SHA-256 of the DER encoding, lower-case hex (the identity used everywhere in tlsgate)."""
    if isinstance(cert, bytes):
        return hashlib.sha256(cert).hexdigest()
    return cert.fingerprint(_SHA256).hex()  # in Rust, without copying the DER out (the same digest)


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


def a_label(hostname: str) -> str:
    """``hostname`` with its internationalized labels as A-labels (``bücher.example`` ->
    ``xn--bcher-kva.example``), as certificates hold them (RFC 5280 section 7.2); unchanged when it
    is ASCII or no valid IDN (UTS #46 mapping, the ``idna`` package's)."""
    if hostname.isascii():
        return hostname
    import idna

    try:
        return idna.encode(hostname, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return hostname


def covers(cert: x509.Certificate, hostname: str) -> bool:
    """Whether the certificate is valid for ``hostname`` (exact or one-label wildcard, RFC 6125;
    an IDN compares by its A-labels, RFC 6125 section 6.4.2)."""
    host = a_label(hostname.rstrip(".")).lower()
    exact, wildcard_parents = _covered_names(cert)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return str(ip) in exact
    return host in exact or ("." in host and host.split(".", 1)[1] in wildcard_parents)


@lru_cache(maxsize=64)
def _covered_names(cert: x509.Certificate) -> tuple[frozenset[str], frozenset[str]]:
    """The certificate's names, normalised, and the parents its wildcards cover (``*.a.b``: a.b),
    read once per certificate: a deploy checks every name of thousands of nodes against one
    leaf, whose SAN list cryptography decodes anew on each read (3,000 blocks against a
    3,000-name certificate took minutes)."""
    exact = frozenset(name.rstrip(".").lower() for name in dns_names(cert))
    return exact, frozenset(name[2:] for name in exact if name.startswith("*."))


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


def key_kind(key: object) -> str:
    """The algorithm of a private key, public key or certificate: ``"rsa"``, ``"ec"``, ``"dsa"``,
    ``"ed25519"``, ``"ed448"`` or ``"other"`` (drivers pick the certificate pair of the same kind
    when a server holds one per algorithm)."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    if isinstance(key, x509.Certificate):
        key = key.public_key()
    for kind, types in (
        ("rsa", (rsa.RSAPrivateKey, rsa.RSAPublicKey)),
        ("ec", (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)),
        ("dsa", (dsa.DSAPrivateKey, dsa.DSAPublicKey)),
        ("ed25519", (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)),
        ("ed448", (ed448.Ed448PrivateKey, ed448.Ed448PublicKey)),
    ):
        if isinstance(key, types):
            return kind
    return "other"


@attrs.frozen
class CertFacts:
    """What a certificate file says (or why it could not be read): see :func:`read_certificate`."""

    der: bytes | None
    fingerprint: str | None
    subject: str | None = None
    not_after: dt.datetime | None = None
    problem: str | None = None
    key_kind: str | None = None


_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.S)


def certificate_facts(der: bytes) -> CertFacts:
    """The facts of one DER certificate (raises ValueError when it is not one)."""
    cert = x509.load_der_x509_certificate(der)
    return CertFacts(der, fingerprint(der), subject_text(cert), not_after(cert), key_kind=key_kind(cert))


def read_certificate(connection: Connection, path: str) -> CertFacts:
    """The first certificate of a PEM file read through ``connection`` (a web server's leaf),
    fingerprinted; never raises: a file that cannot be read or parsed gives ``problem``."""
    from .errors import TlsgateError

    try:
        data = connection.read_file(path)
    except (TlsgateError, OSError) as exc:
        return CertFacts(None, None, problem=f"cannot read {path}: {exc}")
    body = _first_pem_body(data)
    if body is None:
        return CertFacts(None, None, problem=f"{path}: no PEM certificate")
    return _facts_of_pem_body(body) or CertFacts(None, None, problem=f"{path}: not a valid certificate")


_BEGIN, _END = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"


def _first_pem_body(data: bytes) -> bytes | None:
    """What :data:`_PEM_CERT` captures in ``data``, found with two ``find`` calls: the
    expression's lazy ``(.+?)`` tried its end at every byte (25 µs a certificate, most of a
    discovery's certificate reading)."""
    start = data.find(_BEGIN)
    if start < 0:
        return None
    end = data.find(_END, start + len(_BEGIN))
    if end < 0:
        return None
    body = data[start + len(_BEGIN) : end].strip()
    if not body:  # nothing between the markers: the expression looks further, as it always did
        m = _PEM_CERT.search(data)
        return m.group(1) if m else None
    return body


@lru_cache(maxsize=65536)
def _facts_of_pem_body(body: bytes) -> CertFacts | None:
    """:func:`certificate_facts` of a PEM body, once per distinct certificate in a process
    (a discovery of thousands of vhosts or connectors reads the same certificate under many
    paths: a wildcard or a fleet-wide certificate copied next to each site)."""
    try:
        return certificate_facts(base64.b64decode(body, validate=False))
    except (ValueError, binascii.Error):
        return None
