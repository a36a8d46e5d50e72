"""Parsing and naming helpers, with property-based round trips."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tlsgate_f5.names import (
    f5_fingerprint,
    hex_fingerprint,
    object_stem,
    parse_destination,
    split_path,
    unique_stem,
    uri_name,
)


@pytest.mark.parametrize(("text", "address", "rd", "port"), [
    ("/Common/1.1.1.1:443", "1.1.1.1", None, 443),
    ("/Common/1.1.1.1%2:443", "1.1.1.1", 2, 443),
    ("/Common/2700:bc00:1f10:101::6.443", "2700:bc00:1f10:101::6", None, 443),
    ("/Common/2700:bc00:1f10:101::6%2.443", "2700:bc00:1f10:101::6", 2, 443),
    ("/Common/0.0.0.0:any", "0.0.0.0", None, None),
    ("/Common/10.0.0.1:0", "10.0.0.1", None, None),
    ("/Common/any6.any", "any6", None, None),
    ("/Common/web-vip:8443", "web-vip", None, 8443),
    ("/Tenant/app.app/10.2.3.4:443", "10.2.3.4", None, 443),
])
def test_destinations(text, address, rd, port):
    dest = parse_destination(text)
    assert (dest.address, dest.route_domain, dest.port) == (address, rd, port)


@pytest.mark.parametrize("bad", ["", "/Common/", "/Common/1.1.1.1", "/Common/1.1.1.1:http", "/Common/1.1.1.1:99999"])
def test_bad_destinations(bad):
    with pytest.raises(ValueError):
        parse_destination(bad)


@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), st.integers(1, 65535),
       st.one_of(st.none(), st.integers(0, 65534)), st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,20}", fullmatch=True))
def test_destination_round_trip(ip, port, rd, partition):
    sep = "." if isinstance(ip, ipaddress.IPv6Address) else ":"
    text = f"/{partition}/{ip}{'' if rd is None else f'%{rd}'}{sep}{port}"
    dest = parse_destination(text)
    assert ipaddress.ip_address(dest.address) == ip and dest.port == port
    assert dest.route_domain == rd and dest.partition == partition
    assert dest.probeable == (rd in (None, 0) and not ip.is_unspecified)


@given(st.binary(min_size=32, max_size=32))
def test_fingerprint_round_trip(digest):
    assert hex_fingerprint(f5_fingerprint(digest.hex())) == digest.hex()


def test_fingerprint_edge_cases():
    assert hex_fingerprint(None) is None and hex_fingerprint("SHA1/AA:BB") is None


def test_names_and_paths():
    assert uri_name("/Common/x.crt") == "~Common~x.crt"
    assert uri_name("/Common/app.app/a b%") == "~Common~app.app~a%20b%25"
    assert split_path("/Tenant_A/x.key") == ("Tenant_A", "x.key") and split_path("x") == ("Common", "x")


@given(st.text(max_size=80), st.integers(1, 2**159))
def test_object_stem_is_a_valid_tmsh_name(cn, serial):
    stem = object_stem(cn, dt.datetime(2030, 1, 2, tzinfo=dt.UTC), serial)
    assert stem[0].isalpha() and all((c.isalnum() and c.isascii()) or c in "._-" for c in stem)
    assert "_20300102_" in stem and len(stem) <= 140


def test_unique_stem_avoids_taken_names():
    assert unique_stem("a", set()) == "a"
    assert unique_stem("a", {"a.key"}) == "a_2"
    assert unique_stem("a", {"a_chain.crt", "a_2.crt"}) == "a_3"
