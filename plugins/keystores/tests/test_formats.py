"""The PKCS#12 reader against every encryption scheme openssl writes, our MAC against openssl's,
and ``validate``'s path rule for any generated path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlsgate import ConnectionSpec, Endpoint, Secret
from tlsgate_keystores import p12_codec
from tlsgate_keystores.errors import KeystoreError
from tlsgate_keystores.plugin import validate
from tlsgate_testing.certs import Issued

PW = "pässwörd-€"


@pytest.mark.parametrize("scheme", [
    ["-certpbe", "AES-128-CBC", "-keypbe", "AES-192-CBC", "-macalg", "sha512"],
    ["-certpbe", "DES-EDE3-CBC", "-keypbe", "DES-EDE3-CBC", "-macalg", "sha384"],
    ["-certpbe", "PBE-SHA1-3DES", "-keypbe", "PBE-SHA1-2DES", "-macalg", "sha1"],
    ["-legacy", "-certpbe", "PBE-SHA1-RC2-128", "-keypbe", "PBE-SHA1-3DES"],
    ["-legacy"],  # RC2-40 certificates, what OpenSSL 1.1 and Java < 12 wrote
])
def test_reads_every_openssl_scheme(tmp_path: Path, leaf_a: Issued, kt: Any, scheme: list[str]) -> None:
    crt, key, chain = leaf_a.write(tmp_path, "a")
    out = tmp_path / "x.p12"
    kt.run_tool(["openssl", "pkcs12", "-export", *scheme, "-in", str(crt), "-inkey", str(key), "-certfile",
                 str(chain), "-name", "Entry One", "-passout", "env:KS_TEST_PW", "-out", str(out)], PW)
    data = out.read_bytes()
    store = p12_codec.load(data, PW)
    assert store.aliases() == ["Entry One"]
    assert [c.subject.rfc4514_string() for c in store.entries[0].certs] == [
        "CN=a.example.org", "CN=tlsgate Test Intermediate CA", "CN=tlsgate Test Root CA"]
    pfx = p12_codec.read_pfx(data)
    assert p12_codec._mac_matches(pfx, PW) and not p12_codec._mac_matches(pfx, PW + "x")
    with pytest.MonkeyPatch.context() as m:  # OpenSSL's files read by hand as pyasn1 reads them
        m.setattr(p12_codec, "_pfx_by_hand", lambda _data: (_ for _ in ()).throw(ValueError("refused")))
        assert p12_codec.read_pfx(data) == pfx
    with pytest.raises(KeystoreError) as err:
        p12_codec.load(data, "wrong")
    assert err.value.kind == "password" and err.value.option == "--store_password"


def test_garbage_is_a_format_error() -> None:
    for data in (b"", b"\x30\x03\x02\x01\x03", b"hello"):
        with pytest.raises(KeystoreError) as err:
            p12_codec.load(data, PW)
        assert err.value.kind == "format" and err.value.option == "--path"


@settings(max_examples=60, deadline=None)
@given(path=st.text(min_size=1, max_size=60), connection=st.sampled_from(
    ["ssh", "ssh_windows", "winrm_http", "winrm_https", "winrm_https_insecure"]))
def test_remote_path_rule(registry: Any, path: str, connection: str) -> None:
    """Remote endpoints: a problem exactly when the path is not absolute for the host's platform;
    never an exception, never a look at this machine's files."""
    import ntpath
    import posixpath

    options = registry.endpoint_types["p12"].options(path=path, store_password=Secret("x"))
    ep = Endpoint(name="n", type="p12", connection=ConnectionSpec(connection, host="h"), options=options)
    isabs = posixpath.isabs if connection == "ssh" else ntpath.isabs
    problems = validate(ep)
    assert [(p.option, p.message) for p in problems] == ([] if isabs(path) else [("--path", "must be an absolute path")])


_SAMPLE = {}


def _samples() -> dict[str, bytes]:
    if not _SAMPLE:
        from tlsgate_keystores import jks_codec
        from tlsgate_keystores.entries import KeyEntry, Keystore
        from tlsgate_testing.certs import TestCA

        issued = TestCA().issue("fuzz.example.org")
        store = Keystore("jks", [KeyEntry("k", (issued.cert, *issued.chain), issued.key)])
        _SAMPLE.update(p12=issued.pfx("pw"), jks=jks_codec.dump(store, "pw"),
                       pem=issued.cert_pem + issued.chain_pem + issued.key_pem)
    return _SAMPLE


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["p12", "jks", "pem"]), flips=st.lists(
    st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=4), cut=st.integers(0, 10**6))
def test_damaged_files_give_a_keystore_error_never_a_crash(kind: str, flips: list[tuple[int, int]], cut: int) -> None:
    """``tls add`` opens whatever file it is given: damage must end in KeystoreError (an exit-2
    line naming the option), never another exception (a plugin-bug traceback)."""
    from tlsgate_keystores import jks_codec, pem_codec

    data = bytearray(_samples()[kind])
    for pos, xor in flips:
        data[pos % len(data)] ^= xor
    damaged = bytes(data[: max(1, cut % (len(data) + 1))])
    try:
        if kind == "p12":
            p12_codec.load(damaged, "pw")
        elif kind == "jks":
            jks_codec.load(damaged, "pw")
        else:
            content = pem_codec.parse(damaged)
            pem_codec.ordered(content)
            pem_codec.load_key(content, None)
    except KeystoreError:
        pass
