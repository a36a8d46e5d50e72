"""CertificateBundle: a leaf certificate, its private key and its ordered chain."""

from __future__ import annotations

import datetime as dt
import functools
import threading
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
        if chain_pem is not None and not chain_pem.strip():
            raise ValidationError("is empty (give intermediate certificates or leave --chain out)", option=chain_name)
        extra = _parse_certs(chain_pem, chain_name) if chain_pem else []
        leaf = _pick_leaf(found, key, cert_name, key_name)
        others = [c for c in found + extra if certs.fingerprint(c) != certs.fingerprint(leaf)]
        chain = order_chain(leaf, others, include_root=include_root)
        on_path = {certs.fingerprint(c) for c in order_chain(leaf, others, include_root=True)}
        stray = [c for c in extra if certs.fingerprint(c) not in on_path | {certs.fingerprint(leaf)}]
        if stray:
            raise ValidationError(
                f"does not lead to the leaf's issuer ({leaf.issuer.rfc4514_string()}): "
                f"{certs.subject_text(stray[0])} is not on the leaf's issuer path", option=chain_name)
        return cls(leaf=leaf, key=key, chain=chain)

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

    # -- checks -------------------------------------------------------------------------------
    def validity_problem(self, now: dt.datetime | None = None) -> str | None:
        """"expired on ..." / "not valid before ..." or None (``--force`` overrides these)."""
        now = now or dt.datetime.now(dt.UTC)
        if self.leaf.not_valid_after_utc < now:
            return f"the certificate expired on {self.leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        if self.leaf.not_valid_before_utc > now:
            return f"the certificate is not valid before {self.leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        return None

    def leaf_problem(self) -> str | None:
        """Why the certificate is not a server (leaf) certificate, or None."""
        try:
            bc = self.leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is not None and bc.ca:
            return "the certificate is a CA certificate (CA:TRUE), not a leaf"
        try:
            eku = self.leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            return None
        from cryptography.x509.oid import ExtendedKeyUsageOID as E

        if not {E.SERVER_AUTH, E.CLIENT_AUTH, E.ANY_EXTENDED_KEY_USAGE} & set(eku):
            return "the certificate is not for TLS (its extended key usage has neither serverAuth nor clientAuth)"
        return None

    def trust_problem(self, roots: Sequence[x509.Certificate] | None = None) -> str | None:
        """A warning when the chain does not end at a root the gateway trusts (the system store,
        plus ``TLSGATE_TRUSTED_ROOTS``, a PEM file), else None."""
        fingerprints, by_subject = _trusted_index(_root_files()) if roots is None else _roots_index(tuple(roots))
        top = self.chain[-1] if self.chain else self.leaf
        if certs.fingerprint(top) in fingerprints:
            return None
        if any(_signed_by(top, root) for root in by_subject.get(top.issuer, ())):
            return None
        return (f"the chain ends at {certs.subject_text(top)}, issued by {top.issuer.rfc4514_string()}, "
                "which is not a root this gateway trusts; clients may not trust it either")

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


def trusted_roots() -> list[x509.Certificate]:
    """The gateway's trusted roots: the system CA file and ``TLSGATE_TRUSTED_ROOTS``."""
    return [c for name in _root_files() if name for c in _load_roots(name)]


def _root_files() -> tuple[str | None, str | None]:
    import os
    import ssl

    return ssl.get_default_verify_paths().cafile, os.environ.get("TLSGATE_TRUSTED_ROOTS")


@functools.lru_cache(maxsize=4)
def _trusted_index(files: tuple[str | None, str | None]) -> tuple[frozenset[str], dict[x509.Name, list[x509.Certificate]]]:
    """:func:`_roots_index` of :func:`trusted_roots`, by file names (hashing the ~150 roots'
    tuple for the cache look-up cost more than the check it saved, once per endpoint)."""
    return _roots_index(tuple(c for name in files if name for c in _load_roots(name)))


@functools.lru_cache(maxsize=4)
def _roots_index(roots: tuple[x509.Certificate, ...]) -> tuple[frozenset[str], dict[x509.Name, list[x509.Certificate]]]:
    """The roots' fingerprints and the roots by subject (a fleet run checks one chain per
    endpoint against the same ~150 system roots)."""
    by_subject: dict[x509.Name, list[x509.Certificate]] = {}
    for root in roots:
        by_subject.setdefault(root.subject, []).append(root)
    return frozenset(certs.fingerprint(r) for r in roots), by_subject


#: catch_warnings() swaps the process-wide filter list: two threads inside it at once (a
#: parallel deploy checking each endpoint's bundle) restore each other's filters, and the
#: warning it hides reached stderr. One loader at a time.
_ROOTS_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def _load_roots(name: str) -> tuple[x509.Certificate, ...]:
    import warnings

    try:
        data = Path(name).read_bytes()
        with _ROOTS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a few system roots have non-positive serials
            return tuple(x509.load_pem_x509_certificates(data))
    except (OSError, ValueError):
        return ()


def order_chain(
    leaf: x509.Certificate, others: Sequence[x509.Certificate], *, include_root: bool = False
) -> tuple[x509.Certificate, ...]:
    """Order ``others`` as the issuer path from ``leaf`` upward; drop duplicates, certificates
    not on the path, and (unless ``include_root``) the self-signed root."""
    # a Certificate hashes and compares by its DER: the same as keying on the fingerprint
    pool = dict.fromkeys(others)
    ordered: list[x509.Certificate] = []
    current = leaf
    while True:
        wanted = _name_key(current.issuer)
        issuer = next((c for c in pool if _subject_key(c) == wanted and _signed_by(current, c)), None)
        if issuer is None or issuer is current or _self_signed(current):
            break
        ordered.append(issuer)
        pool.pop(issuer)
        current = issuer
    if ordered and _self_signed(ordered[-1]) and not include_root:
        ordered.pop()
    return tuple(ordered)


@functools.lru_cache(maxsize=4096)  # bounded: a worker process reads certificates for days
def _subject_key(cert: x509.Certificate) -> tuple[frozenset[tuple[str, object]], ...]:
    """Each certificate's subject in comparable form, once per certificate: a keystore of 500
    entries orders every entry's chain among all its certificates, and comparing x509.Name
    objects (Python, RDN by RDN) 1.5 million times per read was most of an install's time."""
    return _name_key(cert.subject)


def _name_key(name: x509.Name) -> tuple[frozenset[tuple[str, object]], ...]:
    """What ``x509.Name.__eq__`` compares (per RDN, the set of attribute OIDs and values; not the
    string types, which DER would), as one hashable value."""
    return tuple(frozenset((a.oid.dotted_string, a.value) for a in rdn) for rdn in name.rdns)


#: Signature checks already made by this process, by the two certificates (their DER: a
#: Certificate hashes and compares by it). A keystore of 50 entries sharing one CA checked the
#: CA's own signature 50 times per read, and an install reads the keystore twice.
_SIGNED: dict[tuple[x509.Certificate, x509.Certificate], bool] = {}


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    known = _SIGNED.get((cert, issuer))
    if known is not None:
        return known
    try:
        cert.verify_directly_issued_by(issuer)
        ok = True
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - any failure means "not the issuer"
        ok = False
    if len(_SIGNED) >= 4096:
        _SIGNED.clear()
    _SIGNED[(cert, issuer)] = ok
    return ok


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer and _signed_by(cert, cert)


def read_capped(path: str | Path, option: str, limit: int = _MAX_INPUT, what: str = "a certificate or key") -> bytes:
    """Read at most ``limit`` bytes of ``path`` (a pipe or /dev/zero included: the bytes read are
    counted, not ``st_size``); more is refused naming ``option``."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise ValidationError(f"{p}: more than {limit // 1024} KiB, too large to be {what}", option=option)
        return data
    except FileNotFoundError:
        raise ValidationError(f"{p}: no such file", option=option) from None
    except IsADirectoryError:
        raise ValidationError(f"{p}: is a directory", option=option) from None
    except PermissionError:
        raise ValidationError(f"{p}: permission denied", option=option) from None


def _read(path: str | Path, option: str) -> bytes:
    return read_capped(path, option)


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
