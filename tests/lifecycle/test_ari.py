"""ARI (RFC 9773): ``cert renew`` follows the CA's suggested window when the CA offers one (a
real Pebble fronted by the loopback renewalInfo shim of tlsgate_testing.ari: Debian's Pebble 2.4
has none), renewing when the window is open although one third of the lifetime is years away,
not renewing while it is closed; without ARI the rule is one third of the lifetime left."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st
from tlsgate_testing.ari import cert_id, encode_cert_id, parse_cert_id
from tlsgate_testing.fixtures_core import free_port
from tlsgate_testing.lifecycle import tg_json

from .test_acme_dns01 import add_dns

pytestmark = pytest.mark.slow


def _account(name: str, directory: str, ca_bundle) -> None:  # type: ignore[no-untyped-def]
    tg_json("acme", "add", name, "--directory", directory, "--email", "ops@example.test",
            "--ca_bundle", str(ca_bundle), "--agree_tos")


def _request(account: str, domain: str) -> int:
    return int(tg_json("cert", "request", "--acme", account, "--challenge", "dns-01", "--dns", "bind",
                       "--domain", domain)["certificate_id"])


def _leaf(cert_id_: int) -> x509.Certificate:
    from tlsgate.api import Gateway

    gw = Gateway()
    try:
        return gw.lifecycle.bundle(cert_id_).leaf
    finally:
        gw.close()


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


@pytest.fixture
def estate(tlsgate_home, bind_server, pebble_factory, ari_factory):  # type: ignore[no-untyped-def]
    pebble = pebble_factory(http_port=free_port())
    shim = ari_factory(pebble, retry_after=7200)
    add_dns(bind_server)
    _account("ari", shim.directory, pebble.ca_bundle)  # the CA offers ARI
    return shim, _request("ari", "ari.test")


def test_renew_follows_the_cas_window_open_or_closed_else_one_third_of_the_lifetime(estate) -> None:  # type: ignore[no-untyped-def]
    shim, with_ari = estate
    _account("plain", shim.pebble.directory, shim.pebble.ca_bundle)  # the same CA without ARI
    without = _request("plain", "plain.test")
    leaf = _leaf(with_ari)
    lifetime_rule = leaf.not_valid_after_utc - (leaf.not_valid_after_utc - leaf.not_valid_before_utc) / 3
    now = dt.datetime.now(dt.UTC)
    assert lifetime_rule > now + dt.timedelta(days=30)  # the lifetime rule alone would not renew for long

    # closed: the window opens in 30 days -> not due, renew_at inside the window, asked again per Retry-After
    start, end = now + dt.timedelta(days=30), now + dt.timedelta(days=31)
    shim.set_window(start, end)
    report = tg_json("cert", "renew", "--cert", str(with_ari))
    item = report["certificates"][0]
    assert item["action"] == "not due" and item["window"] == "ari", item
    assert start - dt.timedelta(seconds=1) <= _when(item["renew_at"]) <= end
    assert abs(_when(item["next_check"]) - (now + dt.timedelta(seconds=7200))) < dt.timedelta(minutes=5)
    assert shim.requests == [cert_id(leaf)]  # RFC 9773 §4.1's certID, computed independently

    # without ARI (the other account): one third of the lifetime left, exactly; --days N: ends within N days
    plain = _leaf(without)
    begin, finish = plain.not_valid_before_utc, plain.not_valid_after_utc
    item = tg_json("cert", "renew", "--cert", str(without), "--dry-run")["certificates"][0]
    assert item["window"] == "lifetime" and item["action"] == "not due" and item["next_check"] is None
    assert abs(_when(item["renew_at"]) - (finish - (finish - begin) / 3)) <= dt.timedelta(seconds=1)
    days = (finish - dt.datetime.now(dt.UTC)).days + 1
    item = tg_json("cert", "renew", "--cert", str(without), "--days", str(days), "--dry-run")["certificates"][0]
    assert item["window"] == "days" and item["action"] == "would renew"
    assert shim.requests == [cert_id(leaf)]  # never asked about the other CA's certificate

    # open: the window started 20 days ago (its end a second from now, so the random time the client
    # picks within it is in the past: renew now) -> renewed, far from one third of the lifetime
    shim.set_window(now - dt.timedelta(days=20), dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    report = tg_json("cert", "renew")
    by_id = {c["certificate_id"]: c for c in report["certificates"]}
    assert by_id[with_ari]["action"] == "renewed" and by_id[with_ari]["window"] == "ari", by_id
    # the account without ARI: one third of its lifetime left, not due; the shim was never asked about it
    assert by_id[without]["action"] == "not due" and by_id[without]["window"] == "lifetime"
    assert by_id[without]["next_check"] is None
    assert shim.requests == [cert_id(leaf)] * 2
    certs = {c["id"]: c for c in tg_json("cert", "list")}
    assert certs[with_ari]["superseded_by"] == by_id[with_ari]["new_certificate_id"]
    assert certs[without]["superseded_by"] is None


def test_the_shim_answers_as_rfc_9773_says(estate) -> None:  # type: ignore[no-untyped-def]
    """The shim itself (so the window tests above test the client, not a lenient fake)."""
    import requests

    shim, with_ari = estate
    shim.set_window(dt.datetime(2030, 1, 1, tzinfo=dt.UTC), dt.datetime(2030, 1, 2, tzinfo=dt.UTC))
    verify = str(shim.pebble.ca_bundle)
    directory = requests.get(shim.directory, verify=verify, timeout=10).json()
    base = directory["renewalInfo"]  # §3
    assert directory["newOrder"].startswith(f"https://127.0.0.1:{shim.pebble.port}/")  # the rest is Pebble's
    good = cert_id(_leaf(with_ari))
    ok = requests.get(f"{base}/{good}", verify=verify, timeout=10)  # §4.1: a plain GET
    assert ok.status_code == 200 and ok.headers["Retry-After"] == "7200"  # §4.3
    assert ok.json() == {"suggestedWindow": {"start": "2030-01-01T00:00:00Z", "end": "2030-01-02T00:00:00Z"}}  # §4.2
    aki, serial = good.split(".")
    assert requests.get(f"{base}/{aki}.AQ", verify=verify, timeout=10).status_code == 404  # serial 1: not issued
    assert requests.get(f"{base}/AAAA.{serial}", verify=verify, timeout=10).status_code == 404  # another issuer
    for bad in (aki, f"{aki}.{serial}=", f"{aki}.{serial}.x", f"{aki}.+/"):
        assert requests.get(f"{base}/{bad}", verify=verify, timeout=10).status_code == 400, bad
    assert requests.post(f"{base}/{good}", verify=verify, timeout=10).status_code == 405


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=2**159))
def test_cert_ids_round_trip(key_identifier: bytes, serial: int) -> None:
    text = encode_cert_id(key_identifier, serial)
    assert "=" not in text and parse_cert_id(text) == (key_identifier, serial)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_text_is_a_cert_id_or_value_error(text: str) -> None:
    try:
        aki, _serial = parse_cert_id(text)
    except ValueError:
        return
    assert aki and text.count(".") == 1
