"""A throw-away PKI for tests and examples: root CA -> intermediate -> leaf certificates."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key(kind: str):  # type: ignore[no-untyped-def]
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@attrs.frozen
class Issued:
    """A leaf certificate with its key and chain, as objects and as PEM."""

    cert: x509.Certificate
    key: object = attrs.field(repr=False)
    chain: tuple[x509.Certificate, ...]  # intermediate(s) then root

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    @property
    def fingerprint(self) -> str:
        from tlsgate.certs import fingerprint

        return fingerprint(self.cert)

    def write(self, directory: str | Path, stem: str) -> tuple[Path, Path, Path]:
        """Write ``stem.crt``, ``stem.key`` (0600) and ``stem.chain.crt``; return the paths."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        crt, key, chain = d / f"{stem}.crt", d / f"{stem}.key", d / f"{stem}.chain.crt"
        crt.write_bytes(self.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(self.key_pem)
        chain.write_bytes(self.chain_pem)
        return crt, key, chain

    def pfx(self, password: str | None, *, include_chain: bool = True, alias: str = "leaf",
            chain_len: int | None = None) -> bytes:
        """PKCS#12 (PBES2/AES, 2048 rounds: fast) with the key, the leaf as ``alias`` and the chain
        (its first ``chain_len`` certificates when given)."""
        from cryptography.hazmat.primitives.serialization import pkcs12

        enc = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(2048)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(password.encode())
            if password
            else serialization.NoEncryption()
        )
        return pkcs12.serialize_key_and_certificates(
            alias.encode(), self.key, self.cert, list(self.chain[:chain_len]) if include_chain else None,
            enc,  # type: ignore[arg-type]
        )


class TestCA:
    """Root and intermediate CA that issue leaves for any names. ``TestCA()`` is cheap enough
    for a session fixture (RSA keys dominate; pass ``key_type="ec"`` for speed)."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str = "tlsgate Test", *, key_type: str = "ec") -> None:
        self.key_type = key_type
        now = dt.datetime.now(dt.UTC)
        self.root_key = _key(key_type)
        self.root = self._sign(
            _name(f"{name} Root CA"), self.root_key.public_key(), _name(f"{name} Root CA"),
            self.root_key, ca=True, not_before=now - dt.timedelta(days=1), days=3650,
        )
        self.inter_key = _key(key_type)
        self.intermediate = self._sign(
            _name(f"{name} Intermediate CA"), self.inter_key.public_key(), self.root.subject,
            self.root_key, ca=True, not_before=now - dt.timedelta(days=1), days=1825,
        )

    def _sign(self, subject, public_key, issuer, issuer_key, *, ca, not_before, days, names=()):  # type: ignore[no-untyped-def]
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_before + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
        else:
            sans: list[x509.GeneralName] = []
            for n in names:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(n)))
                except ValueError:
                    sans.append(x509.DNSName(n))
            if sans:
                builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        return (self.intermediate, self.root)

    def issue(
        self,
        *names: str,
        cn: str | None = None,
        days: int = 90,
        key_type: str | None = None,
        not_before: dt.datetime | None = None,
    ) -> Issued:
        """A leaf for ``names`` (first one is the CN unless ``cn`` given), signed by the intermediate."""
        key = _key(key_type or self.key_type)
        start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        cert = self._sign(
            _name(cn or (names[0] if names else "tlsgate-test")), key.public_key(),
            self.intermediate.subject, self.inter_key, ca=False, not_before=start, days=days,
            names=names,
        )
        return Issued(cert=cert, key=key, chain=self.chain)

    def self_signed(self, *names: Sequence[str] | str) -> Issued:
        key = _key(self.key_type)
        subject = _name(str(names[0]) if names else "self-signed")
        now = dt.datetime.now(dt.UTC)
        cert = self._sign(subject, key.public_key(), subject, key, ca=False,
                          not_before=now - dt.timedelta(minutes=5), days=30, names=[str(n) for n in names])
        return Issued(cert=cert, key=key, chain=())
