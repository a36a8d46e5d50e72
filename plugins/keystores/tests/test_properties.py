"""Property tests: keystores round-trip for any alias and any password (printable and non-ASCII).

Most examples go through our own reader (fast); a few go through the real openssl and keytool
(a JVM start costs about a second, so those keep their example counts small).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
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
