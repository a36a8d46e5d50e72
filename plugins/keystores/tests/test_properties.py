"""Property tests: keystores round-trip for any alias and any password (printable and non-ASCII).

Most examples go through our own reader (fast); a few go through the real openssl and keytool
(a JVM start costs about a second, so those keep their example counts small).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from tlsgate import certs
from tlsgate_keystores import jks_codec, p12_codec, pem_codec
from tlsgate_keystores.entries import _BIDI, KeyEntry, Keystore, TrustedEntry
from tlsgate_testing.certs import TestCA

_CA = TestCA()
_OLD, _NEW = _CA.issue("old.example.org"), _CA.issue("new.example.org")

printable = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters=sorted(_BIDI))
aliases = st.text(printable, min_size=1, max_size=40)
passwords = st.text(printable, min_size=1, max_size=40)
bmp_aliases = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters=sorted(_BIDI),
                                    max_codepoint=0xFFFF), min_size=1, max_size=40)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def base_store() -> Keystore:
    return Keystore("pkcs12", [KeyEntry("other", (_OLD.cert, *_OLD.chain), _OLD.key),
                               TrustedEntry("rootca", _CA.root)])


def key_der(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,  # type: ignore[no-any-return]
                             serialization.NoEncryption())


@SETTINGS
@given(alias=aliases, password=passwords, legacy=st.booleans())
def test_p12_round_trip(alias: str, password: str, legacy: bool) -> None:
    assume(alias.casefold() not in ("other", "rootca"))
    store = base_store().with_entry(KeyEntry(alias, (_NEW.cert, _CA.intermediate), _NEW.key))
    back = p12_codec.load(p12_codec.dump(store, password, legacy=legacy), password)
    assert back.aliases() == ["other", alias, "rootca"]  # key entries first, then trusted ones
    entry = back.find(alias)
    assert isinstance(entry, KeyEntry) and entry.alias == alias
    assert certs.fingerprint(entry.leaf) == _NEW.fingerprint
    assert [certs.fingerprint(c) for c in entry.certs[1:]] == [certs.fingerprint(_CA.intermediate),
                                                               certs.fingerprint(_CA.root)]
    assert key_der(p12_codec.entry_key(entry, password)) == key_der(_NEW.key)  # decrypted on demand
    assert isinstance(back.find("rootca"), TrustedEntry)


@SETTINGS
@given(alias=bmp_aliases, password=passwords)
def test_jks_round_trip(alias: str, password: str) -> None:
    import jks

    assume(alias.lower().casefold() not in ("other", "rootca"))
    store = Keystore("jks", [KeyEntry("other", (_OLD.cert,), _OLD.key), TrustedEntry("rootca", _CA.root)])
    store = store.with_entry(KeyEntry(alias.lower(), (_NEW.cert, _CA.intermediate), _NEW.key))
    data = jks_codec.dump(store, password)
    back = jks_codec.load(data, password)
    entry = back.find(alias.lower())
    assert entry is not None and certs.fingerprint(entry.leaf) == _NEW.fingerprint
    assert back.aliases() == ["other", "rootca", alias.lower()]
    # the key was protected with the store password, as keytool expects
    assert jks.KeyStore.loads(data, password).private_keys[alias.lower()].pkey_pkcs8 == key_der(_NEW.key)


@settings(max_examples=25, deadline=None)
@given(password=passwords)
def test_pem_encrypted_key_round_trip(password: str) -> None:
    text = pem_codec.key_text(_NEW.key, password=password)
    content = pem_codec.parse(_NEW.cert_pem + text)
    assert content.key_encrypted
    assert key_der(pem_codec.load_key(content, password)) == key_der(_NEW.key)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(alias=aliases, password=passwords, legacy=st.booleans())
def test_p12_install_through_the_registry(driver: Any, kt: Any, hyp_dir: Path, alias: str, password: str,
                                         legacy: bool) -> None:
    """The whole install path (read, replace, write, read back) for any alias and password, and
    openssl verifies the MAC with the same password."""
    with tempfile.TemporaryDirectory(dir=hyp_dir) as d:
        path = Path(d) / "k.p12"
        path.write_bytes(_OLD.pfx(password))
        ep = driver.endpoint("p12", path, store_password=password, is_legacy=legacy)
        result = driver.install(ep, kt.bundle_of(_NEW), alias=alias)
        assert result.alias == alias
        nodes = {n.name: n.fingerprint for n in driver.discover(ep)}
        assert nodes[alias] == _NEW.fingerprint
        if alias.casefold() != "leaf":
            assert nodes["leaf"] == _OLD.fingerprint
        proc = kt.run_tool(["openssl", "pkcs12", "-in", str(path), "-passin", "env:KS_TEST_PW", "-nokeys",
                            "-noout"], password, check=False)
        assert proc.returncode == 0, proc.stderr


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(alias=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FF, blacklist_categories=("Cc",)),
                     min_size=1, max_size=12),
       password=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=6, max_size=16))
@example(alias="0\xa0", password="secret-pw")  # a trailing no-break space, as keytool prints it
def test_jks_install_read_by_keytool(driver: Any, kt: Any, keytool: str, hyp_dir: Path, alias: str,
                                    password: str) -> None:
    from tlsgate_keystores import jks_codec as codec

    assume(alias.strip())  # an alias of only white space (U+00A0 included) is refused since issue 10
    with tempfile.TemporaryDirectory(dir=hyp_dir) as d:
        path = Path(d) / "k.jks"
        path.write_bytes(codec.dump(Keystore("jks", [KeyEntry("other", (_OLD.cert,), _OLD.key)]), password))
        ep = driver.endpoint("jks", path, store_password=password)
        result = driver.install(ep, kt.bundle_of(_NEW), alias=alias)
        listed = kt.keytool_list(path, password)
        assert listed[result.alias]["sha256"] == _NEW.fingerprint
        assert set(listed) == {"other", result.alias} or result.alias == "other"


@pytest.fixture(scope="module")
def hyp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One pytest-owned directory for the examples' files (the function-scoped tmp_path is shared
    by every example of a hypothesis test)."""
    return tmp_path_factory.mktemp("hypothesis")


@SETTINGS
@given(password=st.text(alphabet=st.characters(codec="ascii", exclude_categories=("Cc",)), min_size=1, max_size=12),
       legacy=st.booleans())
def test_p12_rewrite_keeps_unchanged_entries_byte_for_byte(password: str, legacy: bool) -> None:
    """Installing one entry keeps the others' encrypted items as they were (no re-encryption),
    in the same profile; writing in the other profile re-encrypts every entry, keys included."""
    first = p12_codec.dump(base_store(), password, legacy=legacy)
    loaded = p12_codec.load(first, password)
    other = loaded.find("other")
    assert isinstance(other, KeyEntry) and other.key is None  # not decrypted: not needed
    second = p12_codec.dump(loaded.with_entry(KeyEntry("new", (_NEW.cert,), _NEW.key)), password, legacy=legacy)
    kept = other.opaque.items
    assert all(item in second for item in kept)
    back = p12_codec.load(second, password)
    assert key_der(p12_codec.entry_key(back.find("other"), password)) == key_der(_OLD.key)  # type: ignore[arg-type]
    flipped = p12_codec.dump(loaded, password, legacy=not legacy)
    assert not any(item in flipped for item in kept)
    again = p12_codec.load(flipped, password)
    assert again.layout["legacy"] is (not legacy)
    assert key_der(p12_codec.entry_key(again.find("other"), password)) == key_der(_OLD.key)  # type: ignore[arg-type]


def _bag_facts(data: bytes, password: str, by_hand: bool, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    import attrs

    def refuse(*_args: Any) -> Any:
        raise ValueError("by hand refused: pyasn1 reads it")

    with monkeypatch.context() as m:
        if not by_hand:
            m.setattr(p12_codec, "_items_by_hand", refuse)
            m.setattr(p12_codec, "_safe_bags_by_hand", refuse)
            m.setattr(p12_codec.pbe, "_fast_profile", refuse)
            m.setattr(p12_codec, "_pfx_by_hand", refuse)
        p12_codec._SAFES.clear(), p12_codec._PARSED.clear()
        pfx = p12_codec.read_pfx(data)
        return [attrs.astuple(pfx)] + [(b.kind, b.value, b.shrouded, b.friendly, b.local_id, b.trusted, b.item, b.profile)
                for b in p12_codec._bags(pfx, password)]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(names=st.lists(bmp_aliases, min_size=1, max_size=3, unique_by=str.casefold), password=passwords,
       legacy=st.sampled_from([True, True, True, False]), trusted=st.booleans())
def test_p12_bags_read_by_hand_are_the_bags_pyasn1_reads(names: list[str], password: str, legacy: bool, trusted: bool,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The PFX and its MacData, the safes, bags, attributes and encryption profiles read as plain
    DER by hand (the fast path of a read) are exactly what pyasn1 decodes from the same file."""
    assume(not {n.casefold() for n in names} & {"rootca"})
    store = Keystore("pkcs12", [KeyEntry(n, (_NEW.cert, _CA.intermediate), _NEW.key) for n in names]
                     + ([TrustedEntry("rootca", _CA.root)] if trusted else []))
    data = p12_codec.dump(store, password, legacy=legacy)
    fast = _bag_facts(data, password, True, monkeypatch)
    assert fast == _bag_facts(data, password, False, monkeypatch)
    pfx, bags = fast[0], fast[1:]
    assert pfx[0] == "1.2.840.113549.1.7.1" and pfx[2] and pfx[5] == p12_codec.MAC_ROUNDS  # data, MacData
    assert [f[3] for f in bags if f[0] == "key"] == names
    assert {f[7] for f in bags} == {"legacy" if legacy else "modern"}
    assert any(f[5] for f in bags) == trusted


@SETTINGS
@given(arcs=st.lists(st.integers(min_value=0, max_value=2**40), min_size=1, max_size=8),
       first=st.integers(min_value=0, max_value=2), second=st.integers(min_value=0, max_value=39))
def test_der_oid_reads_what_the_writer_encodes(arcs: list[int], first: int, second: int) -> None:
    dotted = ".".join(map(str, [first, second, *arcs]))
    encoded = p12_codec._oid(dotted)
    _, body, end = p12_codec.pbe.der_header(encoded, 0)
    assert end == len(encoded) and p12_codec.pbe.der_oid(encoded[body:end]) == dotted


def test_ber_indefinite_lengths_are_left_to_pyasn1() -> None:
    with pytest.raises(ValueError, match="indefinite"):
        p12_codec.pbe.der_header(b"\x30\x80\x04\x00\x00\x00", 0)
    with pytest.raises(ValueError):
        p12_codec._items_by_hand(b"\x30\x80\x00\x00")


# -- the RFC 7292 key derivation: OpenSSL's (through ctypes) and the Python fallback agree ----------
def test_openssl_kdf_is_the_one_in_use_here() -> None:
    """On this Linux machine the C derivation must be found (a silent fallback to Python is what
    made every legacy install ~10 ms slower); both give RFC 7292's published vector."""
    from tlsgate_keystores import pbe

    assert pbe._openssl_kdf() is not None
    salt = bytes.fromhex("0a58cf64530d823f")
    for kdf in (pbe.pkcs12_kdf, pbe.pkcs12_kdf_python):
        assert kdf("smeg", salt, 1, 1, 24).hex() == "8aaae6297b6cb04642ab5b077851284eb7128f1a2a7fbca3"
        assert kdf("smeg", salt, 1, 2, 8).hex() == "79993dfe048d3b76"


@settings(max_examples=150, deadline=None)
@given(password=st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
       salt=st.binary(max_size=40), iterations=st.integers(min_value=1, max_value=2100),
       purpose=st.integers(min_value=1, max_value=3), size=st.integers(min_value=1, max_value=70),
       digest=st.sampled_from(["sha1", "sha256", "sha512"]))
def test_openssl_and_python_kdf_agree(password: str, salt: bytes, iterations: int, purpose: int, size: int,
                                      digest: str) -> None:
    from tlsgate_keystores import pbe

    assert pbe.pkcs12_kdf(password, salt, iterations, purpose, size, digest) == \
        pbe.pkcs12_kdf_python(password, salt, iterations, purpose, size, digest)


def test_pure_python_kdf_reads_and_writes_legacy_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no libcrypto is reachable the Python derivation does the whole job: a legacy file
    written and read with it opens with cryptography's reader."""
    from cryptography.hazmat.primitives.serialization import pkcs12
    from tlsgate_keystores import pbe

    monkeypatch.setattr(pbe, "_OPENSSL", [None])
    monkeypatch.setattr(p12_codec, "_SAFES", {})
    monkeypatch.setattr(p12_codec, "_PARSED", {})
    data = p12_codec.dump(base_store(), "pw", legacy=True)
    assert pkcs12.load_pkcs12(data, b"pw").cert is not None
    store = p12_codec.load(data, "pw")
    assert sorted(store.aliases()) == ["other", "rootca"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(password=st.text(alphabet=st.characters(codec="ascii", exclude_categories=("Cc",)), min_size=1, max_size=12),
       legacy=st.booleans(), alias=aliases)
def test_p12_one_entry_file_round_trips_and_takes_a_second_entry(password: str, legacy: bool, alias: str) -> None:
    """A file of one entry (written in one call, its chain with its certificate) reads back
    with the chain, the key and the alias, in our reader and in cryptography's; its key is
    decrypted only when needed; a second entry of the same CA added to it keeps the first one's
    items byte for byte, writes the chain once, and leaves both entries whole."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    assume(alias.casefold() != "second")
    # (the modern profile at 2,048 rounds here: the conftest's fast_kdf)
    one = p12_codec.dump(Keystore("pkcs12", [KeyEntry(alias, (_OLD.cert, *_OLD.chain), _OLD.key)]), password,
                         legacy=legacy)
    loaded = p12_codec.load(one, password)
    (entry,) = loaded.entries
    assert isinstance(entry, KeyEntry) and entry.alias == alias and entry.key is None  # not decrypted yet
    assert [certs.fingerprint(c) for c in entry.certs] == [certs.fingerprint(c) for c in (_OLD.cert, *_OLD.chain)]
    theirs = pkcs12.load_pkcs12(one, password.encode())
    assert theirs.cert is not None and theirs.cert.certificate == _OLD.cert  # (its friendly name: not for
    # every alias, cryptography 50 gives None for one outside the BMP; our reader's alias is checked above)
    assert [c.certificate for c in theirs.additional_certs] == list(_OLD.chain)
    assert key_der(theirs.key) == key_der(_OLD.key)
    two = p12_codec.dump(loaded.with_entry(KeyEntry("second", (_NEW.cert, *_NEW.chain), _NEW.key)), password,
                         legacy=legacy)
    assert all(item in two for item in entry.opaque.items)  # the first entry kept byte for byte, chain included
    bags = [b for b in p12_codec._bags(p12_codec.read_pfx(two), password) if b.kind == "cert"]
    assert len(bags) == 2 + len(_OLD.chain)  # the same CA chain once, not again for the second entry
    back = p12_codec.load(two, password)
    assert set(back.aliases()) == {alias, "second"}
    for name, issued in ((alias, _OLD), ("second", _NEW)):
        got = back.find(name)
        assert isinstance(got, KeyEntry) and certs.fingerprint(got.leaf) == issued.fingerprint
        assert key_der(p12_codec.entry_key(got, password)) == key_der(issued.key)
        assert [certs.fingerprint(c) for c in got.certs[1:]] == [certs.fingerprint(c) for c in issued.chain]


def _plain_items(items: list[bytes], password: str) -> list[tuple[Any, ...]]:
    """Each authenticated-safe item with its encryption undone: (kind, scheme, rounds, salt length,
    plaintext), where a key item's plaintext is its SafeContents with the shrouded key's
    EncryptedPrivateKeyInfo (random salt, ciphertext) cut out, followed by the decrypted
    PrivateKeyInfo."""
    from tlsgate_keystores import pbe

    out: list[tuple[Any, ...]] = []
    for item in items:
        [(kind, body, alg, params)] = p12_codec._items_by_hand(p12_codec._tlv(0x30, item))
        if kind == p12_codec._ENCRYPTED_DATA:
            salt, rounds = pbe.pkcs12_pbe_params(params or b"")
            out.append(("encrypted", alg, rounds, len(salt), pbe.decrypt(alg, params, body, password)))
            continue
        (bag,) = p12_codec._safe_bags_by_hand(body)
        _, kb_body, kb_end = pbe.der_header(bag.value, 0)
        (alg_kid, ct_kid) = pbe.der_children(bag.value, kb_body, kb_end)
        alg, params = pbe.der_algorithm(bag.value, alg_kid[1], alg_kid[3])
        salt, rounds = pbe.pkcs12_pbe_params(params or b"")
        plain = pbe.decrypt(alg, params, bag.value[ct_kid[2]:ct_kid[3]], password)
        out.append(("data", alg, rounds, len(salt), body.replace(bag.value, b""), plain))
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alias=aliases, password=passwords,
       names=st.lists(st.none() | st.text(printable, min_size=1, max_size=90), min_size=0, max_size=2))
@example(alias="x" * 100, password="p", names=["intermediate"])  # a friendlyName sorting after localKeyId
def test_legacy_items_written_by_hand_are_the_bags_cryptography_writes(alias: str, password: str,
                                                                        names: list[str | None]) -> None:
    """The legacy profile's entry items encoded here (``legacy_items``: the same derivations in
    the system OpenSSL) are cryptography's to the byte once their encryption is undone: the same
    bags, attributes (in DER SET order), schemes, rounds and salt sizes; cryptography's reader
    opens the file with the certificate, the chain's friendly names and the key."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    cas = [pkcs12.PKCS12Certificate(c, n.encode() if n else None)
           for c, n in zip((_CA.intermediate, _CA.root), names, strict=False)]
    ours = p12_codec.legacy_items(alias, _NEW.key, _NEW.cert, cas, password)
    assert ours is not None
    theirs = p12_codec.safe_items(pkcs12.serialize_key_and_certificates(
        alias.encode(), _NEW.key, _NEW.cert, cas or None, p12_codec.encryption(password, legacy=True)))
    assert _plain_items(ours, password) == _plain_items(theirs, password)
    assert [len(i) for i in ours] == [len(i) for i in theirs]
    opened = pkcs12.load_pkcs12(p12_codec._pfx(ours, password, True), password.encode())
    assert opened.cert is not None and opened.cert.certificate == _NEW.cert
    # (friendly names outside the BMP: cryptography 50 reads None, for its own files too)
    assert [(c.certificate, c.friendly_name) for c in opened.additional_certs] == [
        (c.certificate, c.friendly_name if c.friendly_name and max(c.friendly_name.decode()) <= "\uffff" else None)
        for c in cas]
    assert key_der(opened.key) == key_der(_NEW.key)


def test_legacy_items_leave_an_empty_password_to_cryptography() -> None:
    assert p12_codec.legacy_items("a", _NEW.key, _NEW.cert, [], "") is None
