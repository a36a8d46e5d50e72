"""PKCS#12 keystores with any number of entries.

``cryptography`` (50.x) reads and writes PKCS#12 files with at most one private key
(``load_pkcs12`` returns one key; ``serialize_key_and_certificates`` takes one), but a Java
keystore commonly holds several. So:

* reading: the MAC (i.e. the store password) is checked first, here, or by ``load_pkcs12`` for
  a MAC we do not compute; the bag structure is decoded here (pyasn1); certificate bags are
  decrypted by :mod:`.pbe`, key bags by ``cryptography`` (``load_der_private_key`` of the
  ``EncryptedPrivateKeyInfo``), or by :mod:`.pbe` for the schemes it does not read;
* writing: ``cryptography`` produces every entry's encrypted bags with the explicit builder
  profile (one ``serialize_key_and_certificates`` call per key entry, one for the loose CA
  certificates, ``serialize_java_truststore`` for trusted entries), except a key entry in the
  legacy profile, whose two items :func:`legacy_items` encodes as cryptography does (the same
  bags to the byte once decrypted) with OpenSSL's faster derivation; the authenticated-safe
  items are concatenated here and the MAC is computed over the result (RFC 7292). Chain
  certificates go into the item of an entry that has them in its chain, as ``openssl pkcs12
  -export`` writes them (a call of their own cost a fleet renewal ~1.6 ms per file in the
  legacy profile, a 600,000-round derivation in the modern one); a loose one, or one no entry
  written anew has in its chain, into an item of its own.

The whole file is written in the endpoint's profile (``--is_legacy``), never dropping an entry.
An entry that does not change keeps its encrypted bags byte for byte when the file already has
that profile and the entry's bags sit in authenticated-safe items of their own, with at most
certificates of the entry's own chain beside them (as ``cryptography``, OpenSSL and this module
write them): re-encrypting 50 unchanged entries cost two PBKDF2 derivations of 600,000 rounds
each, per entry, per install. Private keys are decrypted
only when an entry has to be re-encrypted (or matched to its certificate without a localKeyId). Profiles (reference: protocols.md section 6):

* modern: PBES2 (PBKDF2-HMAC-SHA256, :data:`MODERN_KDF_ROUNDS`) + AES-256-CBC, HMAC-SHA256 MAC;
* legacy: pbeWithSHAAnd3-KeyTripleDES-CBC (2048 rounds), HMAC-SHA1 MAC, for Java before
  8u301/11.0.12 and Windows Server 2016.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from pyasn1.codec.ber import decoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char, univ
from pyasn1_modules import rfc5208, rfc5652, rfc7292
from tlsgate.plugin import fingerprint, key_matches, order_chain

from . import pbe
from .entries import KeyEntry, Keystore, TrustedEntry
from .errors import KeystoreError

#: PBKDF2 iterations of the modern profile (the reference profile Tomcat 10.1 on Java 17 loaded).
MODERN_KDF_ROUNDS = 600_000
LEGACY_KDF_ROUNDS = 2048
MAC_ROUNDS = 2048
#: The fewest PBKDF2 rounds an unchanged PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) entry may have
#: to keep its ciphertext in a modern-profile file. A guess of the password is checked against
#: the file's MAC, at MAC_ROUNDS, so an entry of at least that many rounds is no weaker than the
#: file tlsgate writes; Java 17 (keyPbeIterationCount 10,000) and OpenSSL 3 (2,048) write such
#: entries. Re-encrypting them at MODERN_KDF_ROUNDS cost two 600,000-round derivations per
#: entry: an install into a 300-entry Java keystore took 67 s of CPU.
KEEP_MODERN_ROUNDS = MAC_ROUNDS
#: Oracle's "trusted key usage" bag attribute: marks a Java trustedCertEntry.
ORACLE_TRUSTED = "2.16.840.1.113894.746875.1.1"
X509_CERT_TYPE = "1.2.840.113549.1.9.22.1"
_DATA, _ENCRYPTED_DATA = str(rfc5652.id_data), str(rfc5652.id_encryptedData)


def encryption(password: str, *, legacy: bool, rounds: int | None = None) -> serialization.KeySerializationEncryption:
    """The explicit profile (never ``BestAvailableEncryption``, whose meaning changes);
    ``rounds``: the modern profile with an entry's own PBKDF2 rounds (see :class:`_Rounds`)."""
    builder = serialization.PrivateFormat.PKCS12.encryption_builder()
    if legacy:
        builder = (
            builder.kdf_rounds(LEGACY_KDF_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1())  # noqa: S303 - the legacy profile is SHA-1 by definition
        )
    else:
        builder = (
            builder.kdf_rounds(rounds or MODERN_KDF_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
        )
    return builder.build(password.encode("utf-8"))


# -- reading ----------------------------------------------------------------------------------
@attrs.define
class _Bag:
    kind: str  # "key" or "cert"
    value: bytes  # EncryptedPrivateKeyInfo / PrivateKeyInfo DER, or certificate DER
    shrouded: bool = False
    friendly: str | None = None
    local_id: bytes | None = None
    trusted: bool = False
    cert: x509.Certificate | None = None
    item: int | None = None  # index of the authenticated-safe item (ContentInfo) holding the bag
    profile: str | None = None  # the write profile its encryption matches ("plain": not encrypted)


@attrs.frozen
class _Original:
    """A key entry's encrypted bags as the file holds them (``KeyEntry.opaque``)."""

    items: tuple[bytes, ...]  # its authenticated-safe items, DER, in file order
    legacy: bool  # the file's profile
    key_bag: bytes  # the (shrouded) key bag's value, to decrypt the key when it is needed
    shrouded: bool
    #: SHA-256 fingerprints of the chain certificates these items hold besides the entry's own
    #: certificate (written so by :func:`dump` and ``openssl pkcs12 -export``)
    carries: frozenset[str] = frozenset()


@attrs.frozen
class _KeyBag:
    """A key entry that is encoded again on write (its bags share authenticated-safe items with
    other entries' bags, as Java writes them): its key bag, decrypted only when the entry is
    written (``KeyEntry.opaque``; decrypting a legacy 3DES key bag cost ~1 ms, on every read)."""

    key_bag: bytes
    shrouded: bool


@attrs.frozen
class _Rounds:
    """An unchanged key entry whose bags share authenticated-safe items with other entries' (Java
    writes every key bag in one item and every certificate in one encrypted item), so it is
    encoded again on write, in the modern profile with its own PBKDF2 rounds (``KeyEntry.opaque``):
    no weaker than it was, and not 600,000 rounds twice for each of a Java keystore's entries."""

    rounds: int


def load(data: bytes, password: str, *, decrypt_keys: bool = False, authenticated: bool = False) -> Keystore:
    """Every entry of a PKCS#12 file. Raises :class:`KeystoreError`. Keys stay encrypted until
    an entry is written again (:func:`entry_key`); ``decrypt_keys``: every entry's key now (to
    write the entries in another format or under another password). ``authenticated``: the
    caller has just opened these very bytes with this password through ``load_pkcs12`` (which
    verifies the MAC), so the MAC is not derived and computed a second time (an install's
    read-back: one 2,048-round derivation)."""
    pfx = read_pfx(data)
    if not authenticated and not _mac_matches(pfx, password):
        # a MAC we do not compute ourselves, or the wrong password: let cryptography decide
        try:
            pkcs12.load_pkcs12(data, password.encode("utf-8"))
        except ValueError:
            raise KeystoreError("password", "cannot open the PKCS#12 file: wrong store password") from None
    try:
        bags = list(_bags(pfx, password))
    except pbe.UnsupportedAlgorithm as exc:
        raise KeystoreError("unsupported", f"PKCS#12 file uses an unsupported {exc}") from None
    except (PyAsn1Error, ValueError) as exc:
        raise KeystoreError("format", f"damaged PKCS#12 file ({type(exc).__name__})") from None
    # the file's own profile, for endpoints without --is_legacy (a jks endpoint holding PKCS#12)
    legacy = _mac_digest(pfx) == "sha1"
    store = _assemble(bags, password, _raw_items(pfx), legacy)
    store.layout["legacy"] = legacy
    if decrypt_keys:
        store.entries = [attrs.evolve(e, key=entry_key(e, password), opaque=None) if isinstance(e, KeyEntry) else e
                         for e in store.entries]
    return store


@attrs.frozen
class Pfx:
    """The outer structure of a PKCS#12 file: the authenticated safe's content type, its DER
    (None when it is not ``data``: public-key integrity mode) and the MacData, if any."""

    content_type: str
    auth: bytes | None
    mac_oid: str | None = None  # MacData: digest algorithm, digest, salt, iterations
    mac: bytes = b""
    mac_salt: bytes = b""
    mac_iterations: int = 1


def read_pfx(data: bytes) -> Pfx:
    """The file's :class:`Pfx`: read by hand when it is plain DER (what cryptography, OpenSSL
    and Java write: pyasn1 decoding the PFX was a fifth of a read once the key derivations were
    in C), else by pyasn1. Raises KeystoreError("format") for what is not a PFX."""
    try:
        return _pfx_by_hand(data)
    except (ValueError, IndexError):
        pass
    pfx = _decode(data, rfc7292.PFX(), "not a PKCS#12 file")
    try:
        auth_ci = pfx["authSafe"]  # type: ignore[index]
        kind = str(auth_ci["contentType"])
        auth = bytes(octets(auth_ci["content"])) if kind == _DATA else None
        mac_data = pfx["macData"]  # type: ignore[index]
        if not mac_data.isValue:
            return Pfx(kind, auth)
        return Pfx(kind, auth, str(mac_data["mac"]["digestAlgorithm"]["algorithm"]), bytes(mac_data["mac"]["digest"]),
                   bytes(mac_data["macSalt"]), int(mac_data["iterations"]))
    except (PyAsn1Error, ValueError, KeyError, TypeError):
        raise KeystoreError("format", "not a PKCS#12 file") from None


def _pfx_by_hand(data: bytes) -> Pfx:
    """PFX ::= SEQUENCE { version INTEGER (3), authSafe ContentInfo, macData MacData OPTIONAL };
    ValueError for anything that is not that in plain DER."""
    tag, body, stop = pbe.der_header(data, 0)
    if tag != 0x30 or stop != len(data):
        raise ValueError("not a PFX")
    kids = pbe.der_children(data, body, stop)
    if len(kids) not in (2, 3) or kids[0][0] != 0x02 or kids[1][0] != 0x30:
        raise ValueError("not a PFX")
    ci = pbe.der_children(data, kids[1][2], kids[1][3])  # ContentInfo
    if len(ci) != 2 or ci[1][0] != 0xA0:
        raise ValueError("not a ContentInfo")
    kind = pbe.der_oid(_expect(data, ci[0], 0x06))
    auth = None
    if kind == _DATA:
        inner = pbe.der_children(data, ci[1][2], ci[1][3])
        if len(inner) != 1:
            raise ValueError("not a ContentInfo")
        auth = _expect(data, inner[0], 0x04)  # a constructed (BER) OCTET STRING: pyasn1
    if len(kids) == 2:
        return Pfx(kind, auth)
    if kids[2][0] != 0x30:
        raise ValueError("not MacData")
    md = pbe.der_children(data, kids[2][2], kids[2][3])
    if len(md) not in (2, 3) or md[0][0] != 0x30:
        raise ValueError("not MacData")
    di = pbe.der_children(data, md[0][2], md[0][3])  # DigestInfo
    if len(di) != 2:
        raise ValueError("not a DigestInfo")
    oid, _ = pbe.der_algorithm(data, di[0][1], di[0][3])
    iterations = int.from_bytes(_expect(data, md[2], 0x02), "big", signed=True) if len(md) == 3 else 1
    return Pfx(kind, auth, oid, _expect(data, di[1], 0x04), _expect(data, md[1], 0x04), iterations)


def _raw_items(pfx: Pfx) -> list[bytes] | None:
    """The authenticated-safe items exactly as the file encodes them (None: not plain DER, so
    nothing is kept byte for byte)."""
    auth = pfx.auth
    if auth is None:
        return None
    try:
        items = _children(auth)
        _, start, end = _header(auth, 0)
    except (IndexError, ValueError):
        return None
    return items if end == len(auth) and sum(map(len, items)) == end - start else None


def _mac_digest(pfx: Pfx) -> str | None:
    return pbe.MAC_DIGESTS.get(pfx.mac_oid) if pfx.mac_oid else None


def _mac_matches(pfx: Pfx, password: str) -> bool:
    """Whether the password verifies the file's HMAC (the store password check: 2048 hash
    rounds, where ``load_pkcs12`` would decrypt every bag once more)."""
    import hmac

    digest = _mac_digest(pfx)
    if digest is None or pfx.auth is None:
        return False
    try:
        expected = pbe.mac(pfx.auth, password, pfx.mac_salt, pfx.mac_iterations, digest)
    except ValueError:
        return False
    return hmac.compare_digest(expected, pfx.mac)


def _decode(data: bytes, spec: object, what: str) -> object:
    try:
        value, _ = decoder.decode(data, asn1Spec=spec)
    except (PyAsn1Error, ValueError, TypeError):
        raise KeystoreError("format", what) from None
    return value


def _bags(pfx: Pfx, password: str) -> Iterator[_Bag]:
    if pfx.content_type != _DATA or pfx.auth is None:
        raise KeystoreError("unsupported", "PKCS#12 file in public-key integrity mode")
    auth_der = pfx.auth
    try:
        items = _items_by_hand(auth_der)
    except (ValueError, IndexError):
        items = None  # not plain DER: pyasn1 below
    if items is not None:
        for index, (kind, body, alg, params) in enumerate(items):
            if kind == _DATA:
                safe, item_profile = body, "plain"
            elif kind == _ENCRYPTED_DATA:
                safe = _decrypt_safe(alg, params, body, password)
                item_profile = _profile(alg, params)
            else:
                raise KeystoreError("unsupported", "PKCS#12 file with public-key encrypted content")
            yield from _with_item(_parsed_safe(safe), index, item_profile)
        return
    auth, _ = decoder.decode(auth_der, asn1Spec=rfc7292.AuthenticatedSafe())
    for index, ci in enumerate(auth):
        kind = str(ci["contentType"])
        if kind == _DATA:
            safe, item_profile = bytes(octets(ci["content"])), "plain"
        elif kind == _ENCRYPTED_DATA:
            ed, _ = decoder.decode(ci["content"], asn1Spec=rfc5652.EncryptedData())
            eci = ed["encryptedContentInfo"]
            alg = eci["contentEncryptionAlgorithm"]
            params = bytes(alg["parameters"]) if alg["parameters"].isValue else None
            safe = _decrypt_safe(str(alg["algorithm"]), params, bytes(eci["encryptedContent"]), password)
            item_profile = _profile(str(alg["algorithm"]), params)
        else:
            raise KeystoreError("unsupported", "PKCS#12 file with public-key encrypted content")
        yield from _with_item(_parsed_safe(safe), index, item_profile)


def _with_item(bags: tuple[_Bag, ...], index: int, item_profile: str | None) -> Iterator[_Bag]:
    for bag in bags:
        bag_profile = item_profile
        if bag.kind == "key":
            bag_profile = _key_profile(bag) if item_profile == "plain" else None
        yield attrs.evolve(bag, item=index, profile=bag_profile)


# -- the same structures read by hand: pyasn1 decoding them was a quarter of a legacy keystore's
# read once the key derivations were what they must be. Plain DER only (what cryptography,
# OpenSSL and Java write); anything else raises ValueError and pyasn1 reads the file as before.
def _expect(der: bytes, kid: tuple[int, int, int, int], tag: int) -> bytes:
    if kid[0] != tag:
        raise ValueError(f"tag {kid[0]:#x} where {tag:#x} was expected")
    return der[kid[2] : kid[3]]


def _items_by_hand(auth: bytes) -> list[tuple[str, bytes, str, bytes | None]]:
    """Each authenticated-safe item: (content type, the safe (data) or the ciphertext
    (encryptedData), the encryption OID and parameters)."""
    tag, body, stop = pbe.der_header(auth, 0)
    if tag != 0x30 or stop != len(auth):
        raise ValueError("not an AuthenticatedSafe")
    out = []
    for item in pbe.der_children(auth, body, stop):
        kids = pbe.der_children(auth, item[2], item[3])  # ContentInfo
        if item[0] != 0x30 or len(kids) != 2 or kids[1][0] != 0xA0:
            raise ValueError("not a ContentInfo")
        kind = pbe.der_oid(_expect(auth, kids[0], 0x06))
        inner = pbe.der_children(auth, kids[1][2], kids[1][3])
        if len(inner) != 1:
            raise ValueError("not a ContentInfo")
        if kind == _DATA:
            out.append((kind, _expect(auth, inner[0], 0x04), "", None))
        elif kind == _ENCRYPTED_DATA:
            ed = pbe.der_children(auth, inner[0][2], inner[0][3])  # EncryptedData
            if inner[0][0] != 0x30 or len(ed) != 2 or ed[1][0] != 0x30:
                raise ValueError("not EncryptedData")
            eci = pbe.der_children(auth, ed[1][2], ed[1][3])  # EncryptedContentInfo
            if len(eci) != 3 or eci[2][0] != 0x80:  # [0] IMPLICIT OCTET STRING, primitive
                raise ValueError("EncryptedContentInfo not in plain DER")
            _expect(auth, eci[0], 0x06)
            alg, params = pbe.der_algorithm(auth, eci[1][1], eci[1][3])
            out.append((kind, auth[eci[2][2] : eci[2][3]], alg, params))
        else:
            out.append((kind, b"", "", None))
    return out


_BAG_IDS = {str(rfc7292.id_keyBag): "keyBag", str(rfc7292.id_pkcs8ShroudedKeyBag): "shrouded",
            str(rfc7292.id_certBag): "certBag", str(rfc7292.id_safeContentsBag): "safeContents"}
_FRIENDLY, _LOCAL_ID = str(rfc7292.pkcs_9_at_friendlyName), str(rfc7292.pkcs_9_at_localKeyId)


def _safe_bags_by_hand(safe: bytes) -> list[_Bag]:
    tag, body, stop = pbe.der_header(safe, 0)
    if tag != 0x30 or stop != len(safe):
        raise ValueError("not SafeContents")
    out: list[_Bag] = []
    for bag in pbe.der_children(safe, body, stop):
        kids = pbe.der_children(safe, bag[2], bag[3])  # SafeBag
        if bag[0] != 0x30 or len(kids) not in (2, 3) or kids[1][0] != 0xA0:
            raise ValueError("not a SafeBag")
        bag_id = pbe.der_oid(_expect(safe, kids[0], 0x06))
        inner = pbe.der_children(safe, kids[1][2], kids[1][3])
        if len(inner) != 1:
            raise ValueError("not a SafeBag")
        value = safe[inner[0][1] : inner[0][3]]
        which = _BAG_IDS.get(bag_id)
        if which == "safeContents":
            out += _safe_bags_by_hand(value)
            continue
        if which in ("keyBag", "shrouded"):
            item = _Bag("key", value, shrouded=which == "shrouded")
        elif which == "certBag":
            cb = pbe.der_children(safe, inner[0][2], inner[0][3])  # CertBag
            if inner[0][0] != 0x30 or len(cb) != 2 or cb[1][0] != 0xA0:
                raise ValueError("not a CertBag")
            if pbe.der_oid(_expect(safe, cb[0], 0x06)) != X509_CERT_TYPE:
                continue  # SDSI certificates: nothing Java or OpenSSL uses
            cv = pbe.der_children(safe, cb[1][2], cb[1][3])
            if len(cv) != 1:
                raise ValueError("not a CertBag")
            der = _expect(safe, cv[0], 0x04)
            item = _Bag("cert", der, cert=x509.load_der_x509_certificate(der))
        else:
            raise KeystoreError("unsupported", f"PKCS#12 bag type {bag_id} (CRL or secret bag)")
        if len(kids) == 3:
            if kids[2][0] != 0x31:
                raise ValueError("bag attributes are not a SET")
            for attr in pbe.der_children(safe, kids[2][2], kids[2][3]):
                parts = pbe.der_children(safe, attr[2], attr[3])
                if attr[0] != 0x30 or len(parts) != 2 or parts[1][0] != 0x31:
                    raise ValueError("not an Attribute")
                kind = pbe.der_oid(_expect(safe, parts[0], 0x06))
                values = pbe.der_children(safe, parts[1][2], parts[1][3])
                if kind == _FRIENDLY and values:
                    item.friendly = _expect(safe, values[0], 0x1E).decode("utf-16-be")
                elif kind == _LOCAL_ID and values:
                    item.local_id = _expect(safe, values[0], 0x04)
                elif kind == ORACLE_TRUSTED:
                    item.trusted = True
        out.append(item)
    return out


def _profile(algorithm: str, params: bytes | None) -> str | None:
    return pbe.profile(algorithm, params, modern_rounds=min(MODERN_KDF_ROUNDS, KEEP_MODERN_ROUNDS),
                       legacy_rounds=LEGACY_KDF_ROUNDS)


def _key_algorithm(bag: _Bag) -> tuple[str, bytes | None] | None:
    """The encryption (OID, parameters DER) of a shrouded key bag; None for a plain keyBag or an
    unreadable one."""
    if not bag.shrouded:
        return None
    try:  # EncryptedPrivateKeyInfo: SEQUENCE { AlgorithmIdentifier, OCTET STRING }, read by hand
        tag, body, stop = pbe.der_header(bag.value, 0)
        kids = pbe.der_children(bag.value, body, stop)
        if tag == 0x30 and stop == len(bag.value) and len(kids) == 2 and kids[1][0] == 0x04:
            return pbe.der_algorithm(bag.value, kids[0][1], kids[0][3])
    except (ValueError, IndexError):
        pass  # not plain DER: pyasn1 below
    try:
        epki, _ = decoder.decode(bag.value, asn1Spec=rfc5208.EncryptedPrivateKeyInfo())
        alg = epki["encryptionAlgorithm"]
        return str(alg["algorithm"]), bytes(alg["parameters"]) if alg["parameters"].isValue else None
    except (PyAsn1Error, ValueError, TypeError):
        return None


def _key_rounds(bag: _Bag) -> int | None:
    """The PBKDF2 rounds of a shrouded key bag in the modern scheme, else None."""
    alg = _key_algorithm(bag)
    return pbe.pbes2_rounds(*alg) if alg is not None else None


def _key_profile(bag: _Bag) -> str | None:
    """The profile of a shrouded key bag's encryption (None for a plain keyBag: re-encrypt it)."""
    alg = _key_algorithm(bag)
    return _profile(*alg) if alg is not None else None


#: Decrypted certificate safes by (password, ciphertext) digest. An install reads the keystore,
#: writes it keeping the unchanged entries' ciphertext, reads it back to verify, and discovery
#: reads it again: each read would repeat one key derivation per entry (600,000 PBKDF2 rounds,
#: or the pure-Python RFC 7292 KDF of the legacy profile). The file's MAC is still checked on
#: every read, so a cached safe is only ever used for bytes the password authenticates. The
#: values are certificate bags (public data); private keys are never cached.
_SAFES: dict[bytes, bytes] = {}
_SAFES_MAX = 4096
_CACHE_LOCK = threading.Lock()


def _safe_tag(algorithm: str, params: bytes | None, ciphertext: bytes, password: str) -> bytes:
    import hashlib

    return hashlib.sha256(algorithm.encode() + b"\0" + (params or b"") + b"\0"
                          + password.encode("utf-8", "surrogatepass") + b"\0" + ciphertext).digest()


def _decrypt_safe(algorithm: str, params: bytes | None, ciphertext: bytes, password: str) -> bytes:
    tag = _safe_tag(algorithm, params, ciphertext, password)
    safe = _SAFES.get(tag)
    if safe is None:
        safe = pbe.decrypt(algorithm, params, ciphertext, password)
        _remember_safe(algorithm, params, ciphertext, password, safe, tag)
    return safe


def _remember_safe(algorithm: str, params: bytes | None, ciphertext: bytes, password: str, safe: bytes,
                   tag: bytes | None = None) -> None:
    tag = tag or _safe_tag(algorithm, params, ciphertext, password)
    with _CACHE_LOCK:  # a fleet run's threads: the oldest one dropped once, never the same twice
        if len(_SAFES) >= _SAFES_MAX:
            _SAFES.pop(next(iter(_SAFES)), None)
        _SAFES[tag] = safe


#: Bags of a safe already decoded by this process, by the safe's digest (pyasn1 decoding is the
#: other half of a read's cost; the same reads as above repeat it). Callers get copies.
_PARSED: dict[bytes, tuple[_Bag, ...]] = {}


def _parsed_safe(safe: bytes) -> tuple[_Bag, ...]:
    import hashlib

    tag = hashlib.sha256(safe).digest()
    bags = _PARSED.get(tag)
    if bags is None:
        try:
            bags = tuple(_safe_bags_by_hand(safe))
        except (ValueError, IndexError):
            bags = tuple(_safe_bags(safe))  # not plain DER: pyasn1
        with _CACHE_LOCK:
            if len(_PARSED) >= _SAFES_MAX:
                _PARSED.pop(next(iter(_PARSED)), None)
            _PARSED[tag] = bags
    return bags


def octets(any_value: object) -> univ.OctetString:
    value, _ = decoder.decode(bytes(any_value), asn1Spec=univ.OctetString())  # type: ignore[call-overload]
    return value


def _safe_bags(safe_der: bytes) -> Iterator[_Bag]:
    contents, _ = decoder.decode(safe_der, asn1Spec=rfc7292.SafeContents())
    for bag in contents:
        bag_id, value = bag["bagId"], bytes(bag["bagValue"])
        if bag_id == rfc7292.id_safeContentsBag:
            yield from _safe_bags(value)
            continue
        if bag_id in (rfc7292.id_pkcs8ShroudedKeyBag, rfc7292.id_keyBag):
            item = _Bag("key", value, shrouded=bag_id == rfc7292.id_pkcs8ShroudedKeyBag)
        elif bag_id == rfc7292.id_certBag:
            cert_bag, _ = decoder.decode(value, asn1Spec=rfc7292.CertBag())
            if str(cert_bag["certId"]) != X509_CERT_TYPE:
                continue  # SDSI certificates: nothing Java or OpenSSL uses
            der = bytes(octets(cert_bag["certValue"]))
            item = _Bag("cert", der, cert=x509.load_der_x509_certificate(der))
        else:
            raise KeystoreError("unsupported", f"PKCS#12 bag type {bag_id} (CRL or secret bag)")
        for attr in bag["bagAttributes"]:
            kind, values = attr["attrType"], attr["attrValues"]
            if kind == rfc7292.pkcs_9_at_friendlyName and len(values):
                item.friendly = str(decoder.decode(bytes(values[0]), asn1Spec=char.BMPString())[0])
            elif kind == rfc7292.pkcs_9_at_localKeyId and len(values):
                item.local_id = bytes(octets(values[0]))
            elif str(kind) == ORACLE_TRUSTED:
                item.trusted = True
        yield item


def _private_key(bag: _Bag, password: str) -> Any:
    """The key of a key bag: ``cryptography`` decrypts the common schemes; the rest (2-key 3DES,
    RC2) go through :mod:`.pbe`."""
    try:
        return serialization.load_der_private_key(bag.value, password.encode("utf-8") if bag.shrouded else None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        if not bag.shrouded:
            raise KeystoreError("format", "damaged private key in the PKCS#12 file") from None
    try:
        epki, _ = decoder.decode(bag.value, asn1Spec=rfc5208.EncryptedPrivateKeyInfo())
        alg = epki["encryptionAlgorithm"]
        params = bytes(alg["parameters"]) if alg["parameters"].isValue else None
        plain = pbe.decrypt(str(alg["algorithm"]), params, bytes(epki["encryptedData"]), password)
        return serialization.load_der_private_key(plain, None)
    except (PyAsn1Error, ValueError, TypeError):
        raise KeystoreError("unsupported", "a private key that the store password does not decrypt") from None


def _assemble(bags: list[_Bag], password: str, raw: list[bytes] | None = None, legacy: bool = False) -> Keystore:
    key_bags = [b for b in bags if b.kind == "key"]
    cert_bags = [b for b in bags if b.kind == "cert"]
    used: set[int] = set()
    entries: list[KeyEntry | TrustedEntry] = []
    unnamed = 0
    all_certs = [b.cert for b in cert_bags if b.cert is not None]
    fps = {id(c): fingerprint(c) for c in all_certs}  # once each, not once per entry
    for kb in key_bags:
        key = None
        leaf_bag = next((c for c in cert_bags if kb.local_id and c.local_id == kb.local_id), None)
        if leaf_bag is None:
            key = _private_key(kb, password)
            leaf_bag = next((c for c in cert_bags if key_matches(c.cert, key)), None)  # type: ignore[arg-type]
        if leaf_bag is None or leaf_bag.cert is None:
            raise KeystoreError("unsupported", "a private key without its certificate")
        used.add(id(leaf_bag))
        alias = kb.friendly or leaf_bag.friendly
        if not alias:
            unnamed += 1
            alias = str(unnamed)  # what Java shows for an entry without a friendly name
        leaf_fp = fps[id(leaf_bag.cert)]
        others = [c for c in all_certs if fps[id(c)] != leaf_fp]
        chain = order_chain(leaf_bag.cert, others, include_root=True)
        original: _Original | _Rounds | _KeyBag | None = _original(kb, leaf_bag, bags, raw, legacy,
                                                                   {fps[id(c)] for c in chain})
        if original is None:
            rounds = _key_rounds(kb) if kb.profile == "modern" else None
            original = _Rounds(rounds) if rounds and rounds < MODERN_KDF_ROUNDS else None
            if original is None and key is None:
                original = _KeyBag(kb.value, kb.shrouded)
            elif key is None:
                key = _private_key(kb, password)
        entries.append(KeyEntry(alias, (leaf_bag.cert, *chain), key, opaque=original))
    # chain certificates belong to their entries (so a replaced entry's old intermediates go
    # with it); only certificates no entry uses are kept as loose ones. Friendly names that
    # chain certificates carried (Java writes the subject DN there) are kept.
    in_chains = {fingerprint(c) for e in entries if isinstance(e, KeyEntry) for c in e.certs[1:]}
    names: dict[str, str] = {}
    extra: list[tuple[x509.Certificate, str | None]] = []
    for cb in cert_bags:
        if id(cb) in used or cb.cert is None:
            continue
        fp = fingerprint(cb.cert)
        if cb.trusted:
            if not cb.friendly:
                unnamed += 1
            entries.append(TrustedEntry(cb.friendly or str(unnamed), cb.cert))
        elif fp in in_chains:
            if cb.friendly:
                names[fp] = cb.friendly
        else:
            extra.append((cb.cert, cb.friendly))
    return Keystore("pkcs12", entries, extra, layout={"cert_names": names})


def _original(kb: _Bag, leaf: _Bag, bags: list[_Bag], raw: list[bytes] | None, legacy: bool,
              chain: set[str]) -> _Original | None:
    """The entry's own items, when no other bag shares them but certificates of the entry's own
    chain (``chain``: their fingerprints), else None (it is re-encoded on write)."""
    if raw is None or kb.item is None or leaf.item is None:
        return None
    mine = {kb.item, leaf.item}
    sharing = [b for b in bags if b.item in mine and b is not kb and b is not leaf]
    if any(b.kind != "cert" or b.cert is None or b.local_id is not None or b.trusted
           or fingerprint(b.cert) not in chain for b in sharing):
        return None
    # kept only when already in the profile the file is written in: a weaker original (RC2-40,
    # fewer rounds than KEEP_MODERN_ROUNDS / LEGACY_KDF_ROUNDS, a plain key bag) is re-encrypted
    wanted = "legacy" if legacy else "modern"
    if kb.profile != wanted or leaf.profile not in (wanted, "plain"):
        return None
    return _Original(tuple(raw[i] for i in sorted(mine)), legacy, kb.value, kb.shrouded,
                     frozenset(fingerprint(b.cert) for b in sharing if b.cert is not None))


def entry_key(entry: KeyEntry, password: str) -> Any:
    """The entry's private key, decrypting the file's key bag when it was not needed before."""
    if entry.key is not None:
        return entry.key
    original = entry.opaque
    if not isinstance(original, (_Original, _KeyBag)):
        raise KeystoreError("format", f"entry {entry.alias!r} has no private key")
    return _private_key(_Bag("key", original.key_bag, shrouded=original.shrouded), password)


# -- writing ----------------------------------------------------------------------------------
def dump(store: Keystore, password: str, *, legacy: bool) -> bytes:
    """The keystore as a PKCS#12 file in the chosen profile (see the module docstring)."""
    enc = encryption(password, legacy=legacy)
    items: list[bytes] = []
    names = store.layout.get("cert_names", {})

    def bag(cert: x509.Certificate, name: str | None) -> pkcs12.PKCS12Certificate:
        return pkcs12.PKCS12Certificate(cert, name.encode("utf-8") if name else None)

    # every chain certificate once; those an unchanged entry's items hold already are not written
    # again, the rest go into the item of the first entry encoded anew whose chain has them (as
    # ``openssl pkcs12 -export`` writes a file: a separate call for them cost ~1.6 ms of key
    # derivations and a MAC that is thrown away, a 600,000-round derivation in the modern profile)
    carried = {fp for e in store.entries if isinstance(e, KeyEntry) and _kept(e, legacy) for fp in e.opaque.carries}
    trusted: list[pkcs12.PKCS12Certificate] = []
    for entry in store.entries:
        if not isinstance(entry, KeyEntry):
            trusted.append(pkcs12.PKCS12Certificate(entry.cert, entry.alias.encode("utf-8")))
            continue
        if _kept(entry, legacy):
            items += entry.opaque.items  # unchanged, already in this profile: kept byte for byte
            continue
        cas: dict[str, pkcs12.PKCS12Certificate] = {}
        for cert in entry.certs[1:]:
            fp = fingerprint(cert)
            if fp not in carried:
                cas.setdefault(fp, bag(cert, names.get(fp)))
        carried.update(cas)
        key = entry_key(entry, password)
        own = legacy_items(entry.alias, key, entry.leaf, list(cas.values()), password) if legacy else None
        items += own if own is not None else safe_items(pkcs12.serialize_key_and_certificates(
            entry.alias.encode("utf-8"), key, entry.leaf, list(cas.values()) or None,
            _own(entry, password, legacy, enc)))
    loose: dict[str, pkcs12.PKCS12Certificate] = {}
    for entry in store.entries:  # an unchanged entry's chain held by none of the items above
        if isinstance(entry, KeyEntry):
            for cert in entry.certs[1:]:
                fp = fingerprint(cert)
                if fp not in carried:
                    loose.setdefault(fp, bag(cert, names.get(fp)))
    for cert, name in store.extra:
        if fingerprint(cert) not in carried:
            loose[fingerprint(cert)] = bag(cert, name)
    if loose:
        items += safe_items(pkcs12.serialize_key_and_certificates(None, None, None, list(loose.values()), enc))
    if trusted:
        items += safe_items(pkcs12.serialize_java_truststore(trusted, enc))
    return _pfx(items, password, legacy)


_PBE_3DES = pbe.PKCS12_PBE + "3"
_SHROUDED_BAG, _CERT_BAG = str(rfc7292.id_pkcs8ShroudedKeyBag), str(rfc7292.id_certBag)


def legacy_items(alias: str, key: Any, leaf: x509.Certificate, cas: list[pkcs12.PKCS12Certificate],
                 password: str) -> list[bytes] | None:
    """One key entry's two authenticated-safe items in the legacy profile, encoded here as
    ``serialize_key_and_certificates`` encodes them (the same bags, attributes and order: an
    ``encryptedData`` item with the certificate bags, the leaf's first, then a ``data`` item with
    the shrouded key bag; both pbeWithSHAAnd3-KeyTripleDES-CBC, 2,048 rounds, 8-byte salts), the
    key derivations by :func:`pbe.pkcs12_kdf`. cryptography's own derivation of that scheme cost
    ~0.5 ms each against ~0.2 ms per 20-byte block in OpenSSL's ``PKCS12_key_gen_uni``: a legacy
    install spent ~2.9 ms in ``serialize_key_and_certificates``, ~1.4 ms this way. The
    certificate safe's plaintext is remembered for this ciphertext (as a read decrypting it
    would), so the install's read-back does not derive its key again; the read-back still opens
    the host's file with ``load_pkcs12``, which decrypts every bag itself.

    None (the caller lets cryptography write the entry) without a C derivation here or for an
    empty password (whose BMPString encoding readers disagree on)."""
    if not password or not pbe.fast_kdf():
        return None
    attributes = _der_set([_tlv(0x30, _oid(_FRIENDLY) + _tlv(0x31, _tlv(0x1E, alias.encode("utf-16-be")))),
                           _tlv(0x30, _oid(_LOCAL_ID) + _tlv(0x31, _tlv(0x04, leaf.fingerprint(hashes.SHA1()))))])  # noqa: S303
    bags = _cert_bag(leaf, attributes)
    for ca in cas:
        name = ca.friendly_name
        bags += _cert_bag(ca.certificate, _tlv(0x31, _tlv(0x30, _oid(_FRIENDLY) + _tlv(
            0x31, _tlv(0x1E, name.decode("utf-8").encode("utf-16-be"))))) if name else b"")
    cert_safe = _tlv(0x30, bags)
    cert_alg, cert_params, cert_ct = _encrypt_legacy(cert_safe, password)
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    key_alg, _, key_ct = _encrypt_legacy(pkcs8, password)
    key_bag = _tlv(0x30, _oid(_SHROUDED_BAG) + _tlv(0xA0, _tlv(0x30, key_alg + _tlv(0x04, key_ct))) + attributes)
    encrypted = _tlv(0x30, _int(0) + _tlv(0x30, _oid(_DATA) + cert_alg + _tlv(0x80, cert_ct)))
    _remember_safe(_PBE_3DES, cert_params, cert_ct, password, cert_safe)
    return [_tlv(0x30, _oid(_ENCRYPTED_DATA) + _tlv(0xA0, encrypted)),
            _tlv(0x30, _oid(_DATA) + _tlv(0xA0, _tlv(0x04, _tlv(0x30, key_bag))))]


def _der_set(elements: list[bytes]) -> bytes:
    """A DER SET OF: its elements in the order of their encodings (X.690 11.6: compared as octet
    strings, the shorter padded with zeros), as cryptography writes bag attributes."""
    width = max(map(len, elements))

    def padded(element: bytes) -> bytes:
        return element.ljust(width, b"\0")

    ordered: list[bytes] = sorted(elements, key=padded)
    return _tlv(0x31, b"".join(ordered))


def _cert_bag(cert: x509.Certificate, attributes: bytes) -> bytes:
    value = _tlv(0x30, _oid(X509_CERT_TYPE) + _tlv(0xA0, _tlv(0x04, cert.public_bytes(serialization.Encoding.DER))))
    return _tlv(0x30, _oid(_CERT_BAG) + _tlv(0xA0, value) + attributes)


def _encrypt_legacy(plain: bytes, password: str) -> tuple[bytes, bytes, bytes]:
    """(AlgorithmIdentifier DER, its parameters DER, ciphertext) of ``plain`` in the legacy scheme."""
    salt = os.urandom(8)
    params = _tlv(0x30, _tlv(0x04, salt) + _int(LEGACY_KDF_ROUNDS))
    return _tlv(0x30, _oid(_PBE_3DES) + params), params, pbe.encrypt_3des(plain, password, salt, LEGACY_KDF_ROUNDS)


def _kept(entry: KeyEntry, legacy: bool) -> bool:
    """Whether the entry's encrypted items go into the file as they are (unchanged, already in
    this profile)."""
    return isinstance(entry.opaque, _Original) and entry.opaque.legacy == legacy


def _own(entry: KeyEntry, password: str, legacy: bool, enc: serialization.KeySerializationEncryption) -> Any:
    """The encryption of an entry encoded anew: the file's, or (modern) its own PBKDF2 rounds."""
    original = entry.opaque
    if isinstance(original, _Rounds) and not legacy:
        return encryption(password, legacy=False, rounds=original.rounds)
    return enc


def _pfx(items: list[bytes], password: str, legacy: bool) -> bytes:
    """The PFX of the authenticated-safe items, with its MAC (RFC 7292)."""
    auth_safe = _tlv(0x30, b"".join(items))
    digest = "sha1" if legacy else "sha256"
    salt = os.urandom(8)
    mac = pbe.mac(auth_safe, password, salt, MAC_ROUNDS, digest)
    digest_info = _tlv(0x30, _tlv(0x30, _oid(pbe.MAC_OIDS[digest]) + b"\x05\x00") + _tlv(0x04, mac))
    mac_data = _tlv(0x30, digest_info + _tlv(0x04, salt) + _int(MAC_ROUNDS))
    content_info = _tlv(0x30, _oid(_DATA) + _tlv(0xA0, _tlv(0x04, auth_safe)))
    return _tlv(0x30, _int(3) + content_info + mac_data)


def safe_items(p12: bytes) -> list[bytes]:
    """The authenticated-safe items (DER ContentInfos) of a file ``cryptography`` just wrote."""
    auth = read_pfx(p12).auth
    if auth is None:
        raise ValueError("not a PKCS#12 file in password integrity mode")
    return _children(auth)


def _children(der: bytes) -> list[bytes]:
    """The element encodings inside one DER SEQUENCE (definite lengths only: DER input)."""
    _, start, end = _header(der, 0)
    out, pos = [], start
    while pos < end:
        _, _, stop = _header(der, pos)
        out.append(der[pos:stop])
        pos = stop
    return out


def _header(der: bytes, pos: int) -> tuple[int, int, int]:
    tag, length = der[pos], der[pos + 1]
    body = pos + 2
    if length == 0x80:
        raise ValueError("indefinite length (BER, not DER)")
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(der[body : body + n], "big")
        body += n
    return tag, body, body + length


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _int(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, bytes(body))
