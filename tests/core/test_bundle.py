"""CertificateBundle: PEM and PFX inputs, key match, chain order, one-line errors naming the file."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tlsgate import CertificateBundle, ValidationError
from tlsgate_testing.certs import TestCA


def test_pem_files_with_shuffled_chain_are_ordered_and_root_dropped(test_ca: TestCA, tmp_path) -> None:
    issued = test_ca.issue("www.example.org", "example.org")
    crt, key, _ = issued.write(tmp_path, "leaf")
    chain = tmp_path / "shuffled.pem"
    chain.write_bytes(test_ca.root.public_bytes(__import__("cryptography").hazmat.primitives.serialization.Encoding.PEM)
                      + issued.chain_pem)  # root first, then intermediate, then root again
    bundle = CertificateBundle.from_pem_files(crt, key, chain)
    assert bundle.chain == (test_ca.intermediate,)
    with_root = CertificateBundle.from_pem_files(crt, key, chain, include_root=True)
    assert with_root.chain == (test_ca.intermediate, test_ca.root)
    assert bundle.covers("www.example.org") and not bundle.covers("other.example.org")
    assert bundle.default_alias() == "www.example.org"


def test_cert_file_holding_leaf_and_chain(test_ca: TestCA, tmp_path) -> None:
    issued = test_ca.issue("a.example")
    full = tmp_path / "full.pem"
    full.write_bytes(issued.chain_pem + issued.cert_pem)  # leaf last: the key picks it out
    key = tmp_path / "k.pem"
    key.write_bytes(issued.key_pem)
    bundle = CertificateBundle.from_pem_files(full, key)
    assert bundle.fingerprint == issued.fingerprint and bundle.chain == (test_ca.intermediate,)


def test_mismatched_key_is_refused_naming_the_files(test_ca: TestCA, tmp_path) -> None:
    a, b = test_ca.issue("a.example"), test_ca.issue("b.example")
    crt, _, _ = a.write(tmp_path, "a")
    _, key_b, _ = b.write(tmp_path, "b")
    with pytest.raises(ValidationError) as err:
        CertificateBundle.from_pem_files(crt, key_b)
    assert str(err.value).startswith(f"--key {key_b}: the private key does not match the certificate")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("content", [b"", b"garbage\n", b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"])
def test_garbage_certificate_is_one_line_naming_the_file(tmp_path, test_ca: TestCA, content: bytes) -> None:
    bad = tmp_path / "bad.crt"
    bad.write_bytes(content)
    key = tmp_path / "k.pem"
    key.write_bytes(test_ca.issue("x.example").key_pem)
    with pytest.raises(ValidationError) as err:
        CertificateBundle.from_pem_files(bad, key)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_missing_file_is_named(tmp_path) -> None:
    with pytest.raises(ValidationError, match=r"--cert: .*nope\.crt: no such file"):
        CertificateBundle.from_pem_files(tmp_path / "nope.crt", tmp_path / "nope.key")


def test_pfx_round_trip_and_wrong_password(test_ca: TestCA, tmp_path) -> None:
    issued = test_ca.issue("pfx.example")
    path = tmp_path / "b.pfx"
    path.write_bytes(issued.pfx("s3cret"))
    bundle = CertificateBundle.from_pfx_file(path, "s3cret")
    assert bundle.fingerprint == issued.fingerprint and bundle.chain == (test_ca.intermediate,)
    with pytest.raises(ValidationError) as err:
        CertificateBundle.from_pfx_file(path, "Xk9-guess")
    assert "wrong password" in str(err.value)
    assert "s3cret" not in str(err.value) and "Xk9-guess" not in str(err.value)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), extra_dupes=st.integers(0, 3), key_pw=st.one_of(st.none(), st.text(min_size=1, max_size=20)))
def test_bundle_round_trip_any_order(test_ca: TestCA, seed: int, extra_dupes: int, key_pw: str | None) -> None:
    """Whatever order and duplication the chain arrives in, and whatever key password, the bundle
    reloads from its own PEM output to the same leaf, key and chain."""
    issued = _ISSUED.setdefault("x", test_ca.issue("rt.example"))
    pieces = [issued.chain_pem.split(b"-----END CERTIFICATE-----\n")[i] + b"-----END CERTIFICATE-----\n" for i in range(2)]
    pieces += pieces[:1] * extra_dupes
    random.Random(seed).shuffle(pieces)
    first = CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, b"".join(pieces))
    again = CertificateBundle.from_pem(first.cert_pem(), first.key_pem(key_pw), first.chain_pem(), key_password=key_pw)
    assert again.fingerprint == first.fingerprint == issued.fingerprint
    assert again.chain == first.chain == (test_ca.intermediate,)
    assert again.key_der() == first.key_der()


_ISSUED: dict = {}


_IDN_LABEL = st.text(alphabet="abcxyzäöüßéñçø0123456789", min_size=1, max_size=8).filter(
    lambda s: s[0] not in "0123456789")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(labels=st.lists(_IDN_LABEL, min_size=1, max_size=2))
def test_an_internationalized_name_is_covered_by_its_a_label_san(test_ca: TestCA, labels: list[str]) -> None:
    """A certificate holds IDNs as A-labels (RFC 5280 section 7.2: dNSName is IA5String); an
    IIS host header may be the U-label (IIS 7+ and HTTP.sys accept Unicode host names:
    blogs.iis.net/thomad, "Hosting Übersites: IIS7 Support for International Domain Names").
    Matching compares A-labels (RFC 6125 section 6.4.2), so the U-label is covered too."""
    import idna

    unicode_name = ".".join([*labels, "example"])
    try:
        a_label = idna.encode(unicode_name, uts46=True).decode("ascii")
    except idna.IDNAError:
        return  # not a valid IDN at all: nothing to compare
    issued = _issue(test_ca, a_label)
    bundle = CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)
    assert bundle.covers(a_label) and bundle.covers(unicode_name) and bundle.covers(unicode_name.replace("example", "EXAMPLE"))
    assert not bundle.covers("other." + unicode_name)


_ISSUED: dict[str, object] = {}


def _issue(ca: TestCA, name: str):  # type: ignore[no-untyped-def]
    if name not in _ISSUED:
        _ISSUED[name] = ca.issue(name)
    return _ISSUED[name]


_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
_DNS = st.lists(_LABEL, min_size=1, max_size=3).map(".".join)


def _covers_by_rfc6125(names: list[str], host: str) -> bool:
    """The rule written out (RFC 6125 section 6.4: exact, case-insensitive, trailing dot ignored;
    a wildcard only as the whole left-most label, covering exactly one label)."""
    host = host.rstrip(".").lower()
    for name in (n.rstrip(".").lower() for n in names):
        if name == host or (name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]):
            return True
    return False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.one_of(_DNS, _DNS.map("*.{}".format)), min_size=1, max_size=6, unique=True),
       hosts=st.lists(st.one_of(_DNS, _DNS.map("{}.".format), _DNS.map(str.upper)), min_size=1, max_size=6))
def test_covers_follows_rfc6125_for_every_name_of_a_many_name_certificate(test_ca: TestCA, names: list[str],
                                                                          hosts: list[str]) -> None:
    """The names of a certificate are read once per certificate (a deploy checks thousands of
    node names against one leaf); the answer is still the rule's, host after host."""
    from tlsgate.certs import covers

    leaf = test_ca.issue(*names).cert
    for host in [*hosts, *(n.replace("*", "x") for n in names)]:
        assert covers(leaf, host) == _covers_by_rfc6125(names, host), (names, host)


_ATTR = st.tuples(st.sampled_from(["CN", "O", "OU"]), st.sampled_from(["a", "b", "A", "é", "a b"]))
_RDNS = st.lists(st.lists(_ATTR, min_size=1, max_size=2, unique_by=lambda x: x[0]), min_size=0, max_size=3)


@given(a=_RDNS, b=_RDNS)
def test_chain_ordering_compares_names_as_cryptography_does(a, b) -> None:  # type: ignore[no-untyped-def]
    """The issuer lookup of order_chain keys names once per certificate; the key is equal exactly
    when x509.Name says the names are equal (OIDs and values per RDN, in order)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    from tlsgate.bundle import _name_key

    oids = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME}

    def name(rdns):  # type: ignore[no-untyped-def]
        return x509.Name([x509.RelativeDistinguishedName(
            [x509.NameAttribute(oids[k], v) for k, v in rdn])
            for rdn in rdns])

    na, nb = name(a), name(b)
    assert (_name_key(na) == _name_key(nb)) == (na == nb)


def test_trusted_roots_load_quietly_from_parallel_threads() -> None:
    """A parallel deploy checks every endpoint's bundle against the trusted roots in its own
    thread: the warning about system roots with non-positive serials, hidden while they load,
    must not reach stderr because two threads' catch_warnings() undid each other's filter (the
    parse is slowed down here so that two loads overlap, as they do on a busy gateway)."""
    import ssl

    cafile = ssl.get_default_verify_paths().cafile
    if not cafile or not Path(cafile).exists():
        pytest.skip("no system CA file")
    script = f"""
import threading, time, warnings
from pathlib import Path
from cryptography import x509
from tlsgate import bundle
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    x509.load_pem_x509_certificates(Path({cafile!r}).read_bytes())
if not seen:
    raise SystemExit(3)  # no root here makes cryptography warn: nothing to show
real = x509.load_pem_x509_certificates
def slow(data, _order=[]):
    _order.append(1)
    time.sleep(0.2 if len(_order) == 1 else 0.4)  # the first load ends while the second is inside
    return real(data)
x509.load_pem_x509_certificates = slow
barrier = threading.Barrier(2)
def load(delay):
    barrier.wait()
    time.sleep(delay)
    bundle._load_roots({cafile!r})
threads = [threading.Thread(target=load, args=(d,)) for d in (0.0, 0.1)]
for t in threads: t.start()
for t in threads: t.join()
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    if res.returncode == 3:
        pytest.skip("no system root here makes cryptography warn")
    assert res.returncode == 0, res.stderr
    assert res.stderr == "", res.stderr
