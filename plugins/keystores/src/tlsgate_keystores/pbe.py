"""Password-based encryption pieces of PKCS#12 that ``cryptography`` does not expose.

``cryptography`` writes and reads a PKCS#12 file holding *one* private key. To read every entry
of a multi-key keystore we decrypt its ``encryptedData`` certificate bags ourselves (this
module), and to write one we let ``cryptography`` produce each entry's encrypted bags and only
compute the outer MAC here. Key bags are decrypted by ``cryptography`` itself
(``load_der_private_key`` reads an ``EncryptedPrivateKeyInfo`` in any PKCS#12 PBE or PBES2).

Supported: PBES2 (PBKDF2 with HMAC-SHA1/224/256/384/512; AES-128/192/256-CBC, DES-EDE3-CBC)
and the RFC 7292 PBE schemes (SHA-1 with 3-key/2-key 3DES, RC2-128, RC2-40 — the last is what
OpenSSL 1.1, ``openssl -legacy`` and Java before 12 write).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import hmac

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

PKCS12_PBE = "1.2.840.113549.1.12.1."
PBES2 = "1.2.840.113549.1.5.13"
PBKDF2 = "1.2.840.113549.1.5.12"

#: RFC 7292 PBE: OID suffix -> (cipher, key length in bytes)
_PKCS12_CIPHERS = {"3": ("3des", 24), "4": ("3des", 16), "5": ("rc2", 16), "6": ("rc2", 5)}
_PRF: dict[str, type[hashes.SHA1 | hashes.SHA224 | hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "1.2.840.113549.2.7": hashes.SHA1,
    "1.2.840.113549.2.8": hashes.SHA224,
    "1.2.840.113549.2.9": hashes.SHA256,
    "1.2.840.113549.2.10": hashes.SHA384,
    "1.2.840.113549.2.11": hashes.SHA512,
}
_PBES2_CIPHERS = {
    "2.16.840.1.101.3.4.1.2": ("aes", 16),
    "2.16.840.1.101.3.4.1.22": ("aes", 24),
    "2.16.840.1.101.3.4.1.42": ("aes", 32),
    "1.2.840.113549.3.7": ("3des", 24),
}
#: MAC digest OID -> hashlib name
MAC_DIGESTS = {
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
MAC_OIDS = {name: oid for oid, name in MAC_DIGESTS.items()}


# -- a few DER structures read by hand: pyasn1 decoding them was a fifth of a legacy keystore
# read (its PBE parameters and key-bag algorithms, once per bag per read); anything that is not
# the plain DER expected raises ValueError and is decoded by pyasn1 as before
def der_header(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of the contents, end) of the DER element at ``pos`` (definite lengths only)."""
    tag, length = der[pos], der[pos + 1]
    body = pos + 2
    if tag & 0x1F == 0x1F or length == 0x80:
        raise ValueError("high tag number or indefinite length (BER, not DER)")
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4:
            raise ValueError("bad length")
        length = int.from_bytes(der[body : body + n], "big")
        body += n
    if body + length > len(der):
        raise ValueError("truncated")
    return tag, body, body + length


def der_children(der: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, element start, contents start, end) of each element between ``start`` and ``end``."""
    out, pos = [], start
    while pos < end:
        tag, body, stop = der_header(der, pos)
        if stop > end:
            raise ValueError("element overruns its parent")
        out.append((tag, pos, body, stop))
        pos = stop
    return out


def der_oid(body: bytes) -> str:
    """Dotted text of an OBJECT IDENTIFIER's contents."""
    if not body or body[-1] & 0x80:
        raise ValueError("bad OID")
    parts, value = [], 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    first = min(parts[0] // 40, 2)
    return ".".join(map(str, [first, parts[0] - 40 * first, *parts[1:]]))


def der_algorithm(der: bytes, start: int = 0, end: int | None = None) -> tuple[str, bytes | None]:
    """(OID, parameters DER or None) of an AlgorithmIdentifier SEQUENCE at ``start``."""
    tag, body, stop = der_header(der, start)
    if tag != 0x30 or (end is not None and stop != end):
        raise ValueError("not an AlgorithmIdentifier")
    kids = der_children(der, body, stop)
    if not kids or kids[0][0] != 0x06 or len(kids) > 2:
        raise ValueError("not an AlgorithmIdentifier")
    oid = der_oid(der[kids[0][2] : kids[0][3]])
    return oid, (der[kids[1][1] : kids[1][3]] if len(kids) == 2 else None)


def _der_int(der: bytes, kid: tuple[int, int, int, int]) -> int:
    if kid[0] != 0x02:
        raise ValueError("not an INTEGER")
    return int.from_bytes(der[kid[2] : kid[3]], "big", signed=True)


def pkcs12_pbe_params(params: bytes) -> tuple[bytes, int]:
    """(salt, iterations) of RFC 7292 ``pkcs-12PbeParams``."""
    tag, body, stop = der_header(params, 0)
    kids = der_children(params, body, stop)
    if tag != 0x30 or stop != len(params) or len(kids) != 2 or kids[0][0] != 0x04:
        raise ValueError("not pkcs-12PbeParams")
    return params[kids[0][2] : kids[0][3]], _der_int(params, kids[1])


def pbes2_rounds(algorithm_oid: str, params: bytes | None) -> int | None:
    """The PBKDF2 iteration count of a PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) encryption in
    plain DER, else None."""
    try:
        return _pbes2_rounds(algorithm_oid, params)
    except (ValueError, IndexError):
        return None


def _fast_profile(algorithm_oid: str, params: bytes | None, modern_rounds: int, legacy_rounds: int) -> str | None:
    if algorithm_oid == PKCS12_PBE + "3":
        return "legacy" if pkcs12_pbe_params(params or b"")[1] >= legacy_rounds else None
    rounds = _pbes2_rounds(algorithm_oid, params)
    return "modern" if rounds is not None and rounds >= modern_rounds else None


def _pbes2_rounds(algorithm_oid: str, params: bytes | None) -> int | None:
    if algorithm_oid != PBES2:
        return None
    p = params or b""
    tag, body, stop = der_header(p, 0)
    kids = der_children(p, body, stop)
    if tag != 0x30 or stop != len(p) or len(kids) != 2:
        raise ValueError("not PBES2-params")
    kdf_oid, kdf_params = der_algorithm(p, kids[0][1], kids[0][3])
    enc_oid, _ = der_algorithm(p, kids[1][1], kids[1][3])
    if kdf_oid != PBKDF2 or enc_oid != "2.16.840.1.101.3.4.1.42" or kdf_params is None:
        return None
    tag, body, stop = der_header(kdf_params, 0)
    kp = der_children(kdf_params, body, stop)
    if tag != 0x30 or len(kp) < 2 or kp[0][0] != 0x04:
        raise ValueError("not PBKDF2-params (or a salt that is not an OCTET STRING)")
    rounds = _der_int(kdf_params, kp[1])
    rest = kp[2:]
    if rest and rest[0][0] == 0x02:  # keyLength
        rest = rest[1:]
    prf = der_algorithm(kdf_params, rest[0][1], rest[0][3])[0] if rest else None
    if len(rest) > 1:
        raise ValueError("unexpected PBKDF2-params")
    return rounds if prf == "1.2.840.113549.2.9" else None


class UnsupportedAlgorithm(ValueError):
    """The file uses an encryption scheme this reader does not implement."""


def bmp_password(password: str) -> bytes:
    """The password as RFC 7292 wants it for its own KDF: UTF-16BE with two zero bytes."""
    return password.encode("utf-16-be") + b"\x00\x00"


def pkcs12_kdf(password: str, salt: bytes, iterations: int, purpose: int, size: int, digest: str = "sha1") -> bytes:
    """RFC 7292 appendix B.2 key derivation (purpose 1: key, 2: IV, 3: MAC key): OpenSSL's
    ``PKCS12_key_gen_uni`` when this process can reach it, else :func:`pkcs12_kdf_python`."""
    fast = _openssl_kdf()
    if fast is not None and 0 < size <= 1024 and 0 < iterations < 2**31 and len(salt) < 2**31:
        pw = bmp_password(password)
        md = fast.md(digest)
        if md:
            out = ctypes.create_string_buffer(size)
            if fast.keygen(pw, len(pw), salt, len(salt), purpose, iterations, size, out, md) == 1:
                return out.raw
    return pkcs12_kdf_python(password, salt, iterations, purpose, size, digest)


class _OpenSSL:
    """``PKCS12_key_gen_uni`` of the libcrypto that Python's own ``_hashlib`` is linked
    against. ``cryptography`` does the same derivation in C when it reads and writes a whole
    PKCS#12 file, but does not expose it; in Python each of its 2,048 SHA-1 rounds per block
    is a call (1.2-1.7 ms per derivation, the largest CPU item of a legacy keystore install,
    seven derivations per install; OpenSSL's is ~0.2 ms). ctypes releases the GIL meanwhile."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.keygen = lib.PKCS12_key_gen_uni
        self.keygen.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
                                ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p]
        self.keygen.restype = ctypes.c_int
        self._byname = lib.EVP_get_digestbyname
        self._byname.argtypes = [ctypes.c_char_p]
        self._byname.restype = ctypes.c_void_p
        self._mds: dict[str, int | None] = {}

    def md(self, digest: str) -> int | None:
        if digest not in self._mds:
            self._mds[digest] = self._byname(digest.encode("ascii")) or None
        return self._mds[digest]


_OPENSSL: list[_OpenSSL | None] = []


def _openssl_kdf() -> _OpenSSL | None:
    if not _OPENSSL:
        _OPENSSL.append(_load_openssl())
    return _OPENSSL[0]


def _load_openssl() -> _OpenSSL | None:
    try:
        import _hashlib  # noqa: F401 - loads its libcrypto, if it is a shared one

        # the libcrypto already in this process (_hashlib's), else the system's
        for name in (_loaded_libcrypto(), ctypes.util.find_library("crypto")):
            if name:
                try:
                    lib = _OpenSSL(ctypes.CDLL(name))
                except (OSError, AttributeError):
                    continue
                # a known answer before it is trusted (the published "smeg" vector of RFC 7292's KDF)
                probe = ctypes.create_string_buffer(24)
                pw = bmp_password("smeg")
                md = lib.md("sha1")
                if md and lib.keygen(pw, len(pw), _PROBE_SALT, 8, 1, 1, 24, probe, md) == 1 \
                        and probe.raw == _PROBE:
                    return lib
    except (ImportError, OSError, ValueError):
        pass
    return None


_PROBE_SALT = bytes.fromhex("0a58cf64530d823f")
_PROBE = bytes.fromhex("8aaae6297b6cb04642ab5b077851284eb7128f1a2a7fbca3")


def _loaded_libcrypto() -> str | None:
    """The path of a libcrypto this process has loaded (Linux: /proc/self/maps), else None."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                path = line.rstrip("\n").split(" ", 5)[-1].strip()
                if "/libcrypto" in path and ".so" in path:
                    return path
    except OSError:
        pass
    return None


def pkcs12_kdf_python(password: str, salt: bytes, iterations: int, purpose: int, size: int,
                      digest: str = "sha1") -> bytes:
    """RFC 7292 appendix B.2 in Python (where no libcrypto is reachable, e.g. a Python built
    without a shared OpenSSL)."""
    v = hashlib.new(digest).block_size
    pw = bmp_password(password)

    def fill(data: bytes) -> bytes:
        if not data:
            return b""
        n = v * ((len(data) + v - 1) // v)
        return (data * (n // len(data) + 1))[:n]

    d = bytes([purpose]) * v
    i = bytearray(fill(salt) + fill(pw))
    out = b""
    # the named constructor (hashlib.sha1), bound once: hashlib.new(name) per round cost three
    # times as much, and a legacy keystore of 50 entries runs ~300,000 rounds to be read
    h = getattr(hashlib, digest, None) or (lambda data: hashlib.new(digest, data))
    while len(out) < size:
        a = d + bytes(i)
        for _ in range(iterations):
            a = h(a).digest()
        out += a
        b = int.from_bytes(fill(a)[:v], "big")
        for j in range(0, len(i), v):
            block = (int.from_bytes(i[j : j + v], "big") + b + 1) % (1 << (8 * v))
            i[j : j + v] = block.to_bytes(v, "big")
    return out[:size]


def mac(data: bytes, password: str, salt: bytes, iterations: int, digest: str) -> bytes:
    """The PKCS#12 MacData HMAC over the authenticated-safe content."""
    key = pkcs12_kdf(password, salt, iterations, 3, hashlib.new(digest).digest_size, digest)
    return hmac.new(key, data, digest).digest()


def decrypt(algorithm_oid: str, params_der: bytes | None, ciphertext: bytes, password: str) -> bytes:
    """Decrypt ``ciphertext`` encrypted with the named password-based scheme."""
    from pyasn1.codec.ber import decoder
    from pyasn1_modules import rfc7292, rfc8018

    if algorithm_oid.startswith(PKCS12_PBE) and algorithm_oid[len(PKCS12_PBE) :] in _PKCS12_CIPHERS:
        cipher, key_len = _PKCS12_CIPHERS[algorithm_oid[len(PKCS12_PBE) :]]
        try:
            salt, rounds = pkcs12_pbe_params(params_der or b"")
        except (ValueError, IndexError):
            p, _ = decoder.decode(params_der or b"", asn1Spec=rfc7292.Pkcs_12PbeParams())
            salt, rounds = bytes(p["salt"]), int(p["iterations"])
        key = pkcs12_kdf(password, salt, rounds, 1, key_len)
        iv = pkcs12_kdf(password, salt, rounds, 2, 8)
        return _cbc_decrypt(cipher, key, iv, ciphertext, rc2_bits=key_len * 8)
    if algorithm_oid == PBES2:
        p, _ = decoder.decode(params_der or b"", asn1Spec=rfc8018.PBES2_params())
        kdf, scheme = p["keyDerivationFunc"], p["encryptionScheme"]
        if str(kdf["algorithm"]) != PBKDF2:
            raise UnsupportedAlgorithm(f"PBES2 key derivation {kdf['algorithm']}")
        kp, _ = decoder.decode(kdf["parameters"], asn1Spec=rfc8018.PBKDF2_params())
        prf_oid = str(kp["prf"]["algorithm"]) if kp["prf"].isValue else "1.2.840.113549.2.7"
        enc_oid = str(scheme["algorithm"])
        if prf_oid not in _PRF or enc_oid not in _PBES2_CIPHERS:
            raise UnsupportedAlgorithm(f"PBES2 with {prf_oid} / {enc_oid}")
        cipher, key_len = _PBES2_CIPHERS[enc_oid]
        iv_der, _ = decoder.decode(scheme["parameters"])
        key = PBKDF2HMAC(
            algorithm=_PRF[prf_oid](), length=key_len, salt=bytes(kp["salt"]["specified"]),
            iterations=int(kp["iterationCount"]),
        ).derive(password.encode("utf-8"))
        return _cbc_decrypt(cipher, key, bytes(iv_der), ciphertext)
    raise UnsupportedAlgorithm(f"encryption scheme {algorithm_oid}")


def encrypt_3des(plain: bytes, password: str, salt: bytes, rounds: int) -> bytes:
    """``plain`` encrypted with pbeWithSHAAnd3-KeyTripleDES-CBC (RFC 7292 appendix C; the
    legacy profile's key and certificate bags): the key and IV from :func:`pkcs12_kdf`, PKCS#7
    padding. :func:`decrypt` undoes it."""
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

    key = pkcs12_kdf(password, salt, rounds, 1, 24)
    iv = pkcs12_kdf(password, salt, rounds, 2, 8)
    padder = padding.PKCS7(64).padder()
    enc = Cipher(TripleDES(key), modes.CBC(iv)).encryptor()
    return enc.update(padder.update(plain) + padder.finalize()) + enc.finalize()


def fast_kdf() -> bool:
    """Whether :func:`pkcs12_kdf` runs in C here (OpenSSL's, through ctypes)."""
    return _openssl_kdf() is not None


def profile(algorithm_oid: str, params_der: bytes | None, *, modern_rounds: int, legacy_rounds: int) -> str | None:
    """Which of tlsgate's two write profiles an encryption is at least as strong as and the same
    scheme of: "modern" (PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC), "legacy" (SHA-1 3-key 3DES),
    else None (weaker rounds, RC2, another cipher: such bags are re-encrypted on write)."""
    try:
        return _fast_profile(algorithm_oid, params_der, modern_rounds, legacy_rounds)
    except (ValueError, IndexError):
        pass  # not the plain DER read by hand: pyasn1 decides
    from pyasn1.codec.ber import decoder
    from pyasn1.error import PyAsn1Error
    from pyasn1_modules import rfc7292, rfc8018

    try:
        if algorithm_oid == PKCS12_PBE + "3":
            p, _ = decoder.decode(params_der or b"", asn1Spec=rfc7292.Pkcs_12PbeParams())
            return "legacy" if int(p["iterations"]) >= legacy_rounds else None
        if algorithm_oid == PBES2:
            p, _ = decoder.decode(params_der or b"", asn1Spec=rfc8018.PBES2_params())
            kdf, scheme = p["keyDerivationFunc"], p["encryptionScheme"]
            if str(kdf["algorithm"]) != PBKDF2 or str(scheme["algorithm"]) != "2.16.840.1.101.3.4.1.42":
                return None
            kp, _ = decoder.decode(kdf["parameters"], asn1Spec=rfc8018.PBKDF2_params())
            prf = str(kp["prf"]["algorithm"]) if kp["prf"].isValue else None
            return "modern" if prf == "1.2.840.113549.2.9" and int(kp["iterationCount"]) >= modern_rounds else None
    except (PyAsn1Error, ValueError, TypeError, KeyError):
        return None
    return None


def _cbc_decrypt(cipher: str, key: bytes, iv: bytes, data: bytes, rc2_bits: int = 128) -> bytes:
    if cipher == "rc2":
        from Cryptodome.Cipher import ARC2  # pycryptodomex (a pyjks dependency); cryptography has no RC2-40

        # reading old files is the point; nothing is ever written with RC2
        rc2 = ARC2.new(key, ARC2.MODE_CBC, iv=iv, effective_keylen=rc2_bits)  # type: ignore[call-arg]  # noqa: S304
        plain = rc2.decrypt(data)
        block = 64
    else:
        if cipher == "aes":
            algo: algorithms.BlockCipherAlgorithm = algorithms.AES(key)
        else:
            from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

            algo = TripleDES(key + key[:8] if len(key) == 16 else key)  # 2-key 3DES is K1 K2 K1
        dec = Cipher(algo, modes.CBC(iv)).decryptor()
        plain = dec.update(data) + dec.finalize()
        block = algo.block_size
    unpadder = padding.PKCS7(block).unpadder()
    return unpadder.update(plain) + unpadder.finalize()
