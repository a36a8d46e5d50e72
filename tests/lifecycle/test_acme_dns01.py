"""dns-01 through a real BIND 9 with the rfc2136 provider (TSIG), EAB, revocation, secrets at
rest, all against a real Pebble started by the tests."""

from __future__ import annotations

import json
import sqlite3

import pytest
from tlsgate_testing.fixtures_core import free_port
from tlsgate_testing.lifecycle import tg, tg_json
from tlsgate_testing.pebble import EAB_KEYS

pytestmark = pytest.mark.slow


def add_dns(bind, name: str = "bind", secret: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    return tg_json("dns", "add", name, "rfc2136", "--server", "127.0.0.1", "--port", str(bind.port), "--zone", "test",
                   "--tsig_key_name", bind.key_name, "--tsig_secret", "-", "--timeout", "10",
                   stdin=(secret or bind.key_secret) + "\n")


def add_account(pebble, name: str = "pebble") -> dict:  # type: ignore[no-untyped-def]
    return tg_json("acme", "add", name, "--directory", pebble.directory, "--email", "ops@example.test",
                   "--ca_bundle", str(pebble.ca_bundle), "--agree_tos")


def test_dns01_with_rfc2136_wildcard_record_removed_secrets_sealed(tlsgate_home, bind_server, pebble_factory) -> None:  # type: ignore[no-untyped-def]
    pebble = pebble_factory(http_port=free_port())
    shown = add_dns(bind_server)
    assert shown["options"]["tsig_secret"] == "********"
    assert "is authoritative for test" in tg("dns", "test", "bind").stdout
    assert bind_server.txt("_tlsgate-test.test") == []
    add_account(pebble)
    issued = tg_json("cert", "request", "--acme", "pebble", "--challenge", "dns-01", "--dns", "bind",
                     "--domain", "*.wild.test", "--domain", "Wild.test", "--key_type", "ec384")
    assert issued["names"] == ["*.wild.test", "wild.test"] and issued["challenge"] == "dns-01"
    assert bind_server.txt("_acme-challenge.wild.test") == [], "the challenge record was not removed"
    listed = {c["id"]: c for c in tg_json("cert", "list")}
    rec = listed[issued["certificate_id"]]
    assert rec["acme_account"] == "pebble" and rec["has_key"] and set(rec["names"]) == {"*.wild.test", "wild.test"}
    assert "key" not in rec and rec["renewal"]["dns"] == "bind"

    # secrets at rest: the TSIG secret, the account key and the certificate key are sealed
    from tlsgate.api import Gateway

    gw = Gateway()
    try:
        key_pem = gw.lifecycle.bundle(issued["certificate_id"]).key_pem()
        jwk = json.loads(gw.inventory.acme_account("pebble")["key"].reveal())
    finally:
        gw.close()
    raw = b"".join(p.read_bytes() for p in tlsgate_home.glob("inventory.sqlite3*"))
    body = b"".join(key_pem.splitlines()[1:-1])
    assert bind_server.key_secret.encode() not in raw and body[:40] not in raw and jwk["d"].encode() not in raw
    db = sqlite3.connect(tlsgate_home / "inventory.sqlite3")
    assert db.execute("SELECT key FROM certificates WHERE id = ?", (issued["certificate_id"],)).fetchone()[0].startswith("enc:v1:")
    # never in --json or the audit log
    everything = tg("acme", "show", "pebble", "--json").stdout + tg("dns", "list", "--json").stdout + json.dumps(
        [list(r) for r in db.execute("SELECT details FROM audit")])
    assert jwk["d"] not in everything and bind_server.key_secret not in everything

    # revocation through the issuing account; a second one is the CA's one-line refusal
    assert tg_json("cert", "revoke", str(issued["certificate_id"]), "--reason", "superseded")["revoked"]
    again = tg("cert", "revoke", str(issued["certificate_id"]), check=False)
    assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
    assert "alreadyRevoked" in again.stderr and "wild.test" in again.stderr
    # the inventory says so, and never deploys it again (cert list/show showed nothing, and
    # cert deploy ID installed the revoked certificate)
    cid = str(issued["certificate_id"])
    assert tg_json("cert", "show", cid)["status"] == "revoked (superseded)"
    assert [c["status"] for c in tg_json("cert", "list") if c["id"] == issued["certificate_id"]] == ["revoked (superseded)"]
    res = tg("cert", "deploy", cid, "--all", check=False)
    assert res.returncode == 2 and res.stderr.startswith(f"error: ID: certificate {cid} was revoked (superseded)")


def test_a_wrong_tsig_secret_fails_in_one_line_and_the_order_leaves_nothing(tlsgate_home, bind_server,  # type: ignore[no-untyped-def]
                                                                          pebble_factory) -> None:
    add_dns(bind_server, "bad", secret="d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldA==")
    res = tg("dns", "test", "bad", check=False)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "adding TXT _tlsgate-test.test." in res.stderr
    assert bind_server.txt("_tlsgate-test.test") == []
    add_account(pebble_factory(http_port=free_port()))
    res = tg("cert", "request", "--acme", "pebble", "--challenge", "dns-01", "--dns", "bad", "--domain", "nope.test",
             check=False)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stderr.startswith("error: dns bad: adding TXT _acme-challenge.nope.test.: 127.0.0.1:")
    assert "refused the TSIG key (PeerBadSignature: check --tsig_key_name" in res.stderr
    assert bind_server.txt("_acme-challenge.nope.test") == [] and tg_json("cert", "list") == []


def test_a_dns_server_given_by_host_name_is_reached_at_its_address(tlsgate_home, bind_server) -> None:  # type: ignore[no-untyped-def]
    # dnspython takes only addresses: a --server host name crashed every use ("internal error: ValueError")
    tg_json("dns", "add", "byname", "rfc2136", "--server", "localhost", "--port", str(bind_server.port), "--zone",
            "test", "--tsig_key_name", bind_server.key_name, "--tsig_secret", "-", stdin=bind_server.key_secret + "\n")
    res = tg("dns", "test", "byname")
    assert res.stdout.startswith("localhost:") and "is authoritative for test" in res.stdout


def test_external_account_binding_refused_without_accepted_with(tlsgate_home, pebble_factory) -> None:  # type: ignore[no-untyped-def]
    pebble = pebble_factory(http_port=free_port(), eab=True)
    base = ["acme", "add", "corp", "--directory", pebble.directory, "--email", "ops@example.test",
            "--ca_bundle", str(pebble.ca_bundle), "--agree_tos"]
    unagreed = tg(*base[:-1], check=False)
    assert unagreed.returncode == 2 and unagreed.stderr.startswith(
        "error: --agree_tos: the CA's terms of service must be agreed to (data:text/plain,")
    res = tg(*base, check=False)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "requires External Account Binding" in res.stderr and "--eab_kid" in res.stderr
    wrong = tg(*base, "--eab_kid", "kid-1", "--eab_hmac_key", "-", stdin="AAAA" + EAB_KEYS["kid-1"][4:] + "\n",
               check=False)
    assert wrong.returncode == 1 and wrong.stderr.startswith("error: ACME account registration for ops@example.test: ")
    assert tg_json("acme", "list") == []
    secret = EAB_KEYS["kid-1"]
    ok = tg_json(*base, "--eab-kid", "kid-1", "--eab-hmac-key", "-", stdin=secret + "\n")
    assert ok["eab_kid"] == "kid-1" and ok["uri"].startswith("https://127.0.0.1:")
    assert secret not in json.dumps(tg_json("acme", "show", "corp"))
    # registering again with the same name, directory and e-mail finds the account
    assert tg_json(*base, "--eab_kid", "kid-1", "--eab_hmac_key", "-", stdin=secret + "\n")["found"] is True
    assert tg_json("acme", "remove", "corp") == {"removed": "corp", "certificates": []}
    assert tg_json("acme", "list") == []


def test_an_untrusted_acme_server_is_one_balanced_line(tlsgate_home, pebble_factory) -> None:  # type: ignore[no-untyped-def]
    # the reason lost its closing parenthesis: "(certificate verify failed: ... (_ssl.c:1006); trust its CA"
    pebble = pebble_factory(http_port=free_port())
    res = tg("acme", "add", "p", "--directory", pebble.directory, "--email", "ops@example.test", "--agree_tos",
             check=False)
    line = res.stderr.strip()
    assert res.returncode == 1 and len(line.splitlines()) == 1, res.stderr
    assert "TLS verification of the ACME server failed (" in line and line.endswith("; trust its CA with --ca_bundle")
    assert line.count("(") == line.count(")"), line


def test_a_bad_nonce_is_retried_once_then_one_clear_line(tlsgate_home, pebble_factory) -> None:  # type: ignore[no-untyped-def]
    pebble = pebble_factory(http_port=free_port(), nonce_reject=100)  # every nonce is "bad"
    res = tg("acme", "add", "p", "--directory", pebble.directory, "--email", "ops@example.test",
             "--ca_bundle", str(pebble.ca_bundle), "--agree_tos", check=False)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stderr.startswith("error: ACME account registration for ops@example.test: ") and "(badNonce)" in res.stderr
    assert pebble.log().count("POST /sign-me-up") == 2  # the first try and exactly one retry


def test_a_rejected_identifier_is_one_line_naming_the_domain_and_leaves_nothing(tlsgate_home, bind_server,  # type: ignore[no-untyped-def]
                                                                               pebble_factory) -> None:
    pebble = pebble_factory(http_port=free_port(), domain_blocklist=["blocked.test"])
    add_dns(bind_server)
    add_account(pebble)
    res = tg("cert", "request", "--acme", "pebble", "--challenge", "dns-01", "--dns", "bind",
             "--domain", "blocked.test", check=False)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    line = res.stderr.strip()
    assert line.startswith("error: ACME new order for blocked.test: ") and line.endswith("(rejectedIdentifier)")
    assert "forbidden by policy" in line  # the CA's own detail
    assert tg_json("cert", "list") == [] and bind_server.txt("_acme-challenge.blocked.test") == []
