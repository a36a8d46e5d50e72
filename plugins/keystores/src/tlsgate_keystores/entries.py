"""The keystore model every format reads into and writes from, and its nodes.

A keystore is a list of entries: :class:`KeyEntry` (a private key with its certificate chain,
leaf first) and :class:`TrustedEntry` (a trusted certificate, as Java's ``trustedCertEntry``).
PKCS#12 files may also hold loose certificates that belong to no entry (:attr:`Keystore.extra`).
Aliases compare case-insensitively, as Java compares them.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import attrs
from cryptography import x509
from tlsgate.plugin import Node, ValidationError, fingerprint, not_after, subject_text, to_der

VENDORS = {"p12": "PKCS#12", "jks": "JKS", "pem": "PEM"}
MAX_ALIAS = 255
#: bidirectional controls: they make an alias display as something it is not
_BIDI = set("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@attrs.frozen
class KeyEntry:
    alias: str
    certs: tuple[x509.Certificate, ...]  # leaf first, then its chain
    key: Any = attrs.field(default=None, repr=False)  # private key object (None: kept as `opaque`)
    opaque: Any = attrs.field(default=None, repr=False, eq=False)  # format-private original

    @property
    def leaf(self) -> x509.Certificate:
        return self.certs[0]


@attrs.frozen
class TrustedEntry:
    alias: str
    cert: x509.Certificate
    opaque: Any = attrs.field(default=None, repr=False, eq=False)

    @property
    def leaf(self) -> x509.Certificate:
        return self.cert


Entry = KeyEntry | TrustedEntry


@attrs.define
class Keystore:
    """The decoded content of one keystore file. ``format`` is "pkcs12", "jks" or "pem"."""

    format: str
    entries: list[Entry] = attrs.field(factory=list)
    #: loose certificates (PKCS#12) with their friendly names, kept on rewrite
    extra: list[tuple[x509.Certificate, str | None]] = attrs.field(factory=list)
    #: format details kept on rewrite (PEM block order, key format, ...)
    layout: dict[str, Any] = attrs.field(factory=dict)

    def find(self, alias: str) -> Entry | None:
        folded = alias.casefold()
        return next((e for e in self.entries if e.alias.casefold() == folded), None)

    def with_entry(self, entry: Entry) -> Keystore:
        """A copy with ``entry`` replacing the entry of the same alias (kept in place) or appended."""
        folded = entry.alias.casefold()
        entries = list(self.entries)
        for i, old in enumerate(entries):
            if old.alias.casefold() == folded:
                entries[i] = entry
                break
        else:
            entries.append(entry)
        return Keystore(self.format, entries, list(self.extra), dict(self.layout))

    def aliases(self) -> list[str]:
        return [e.alias for e in self.entries]


def check_alias(alias: str, *, option: str = "--alias", bmp_only: bool = False) -> str:
    """Refuse aliases a keystore cannot hold faithfully: empty, too long, control (or bidi) characters,
    and (JKS, whose aliases are Java modified UTF-8) characters outside the Basic Multilingual Plane."""
    if not alias or len(alias) > MAX_ALIAS:
        raise ValidationError(f"must be between 1 and {MAX_ALIAS} characters", option=option)
    if any(unicodedata.category(ch) in ("Cc", "Cs") or ch in _BIDI for ch in alias):
        raise ValidationError("must not contain control characters", option=option)
    if bmp_only and any(ord(ch) > 0xFFFF for ch in alias):
        raise ValidationError("a JKS alias must not contain characters outside the BMP", option=option)
    return alias


def entry_nodes(store: Keystore, endpoint_type: str) -> list[Node]:
    """One node per entry: the entry's alias as name and locator, its (leaf) certificate."""
    vendor = VENDORS.get(endpoint_type, endpoint_type)
    nodes = []
    for entry in store.entries:
        cert = entry.leaf
        nodes.append(
            Node(
                name=entry.alias,
                protocol="file",
                fingerprint=fingerprint(cert),
                subject=subject_text(cert),
                not_after=not_after(cert),
                vendor=vendor,
                state="active" if isinstance(entry, KeyEntry) else "trusted",
                locator=entry.alias,
                certificate=to_der(cert),
            )
        )
    return nodes
