"""The loopback peer answers like a BIG-IP: F5's error bodies and refusals (so the driver's
error handling is exercised against the real shapes)."""

from __future__ import annotations

import pytest
from tlsgate_f5.rest import F5Error


def test_profile_refuses_a_key_that_does_not_match_its_certificate(session, peer):
    with pytest.raises(F5Error) as err:
        session.patch("/mgmt/tm/ltm/profile/client-ssl/~Common~cs_www", {"certKeyChain": [
            {"name": "default", "cert": "/Common/www_2025.crt", "key": "/Common/api_2025.key", "chain": "none"}]})
    assert err.value.status == 400 and "Key and certificate do not match" in err.value.f5_message
    assert peer.device.profiles["/Common/cs_www"]["certKeyChain"][0]["key"] == "/Common/www_2025.key"


def test_missing_partition_and_object_are_404(session):
    with pytest.raises(F5Error) as err:
        session.get("/mgmt/tm/ltm/profile/client-ssl/~Nope~cs")
    assert err.value.status == 404 and "(/Nope) was not found" in err.value.f5_message
    with pytest.raises(F5Error) as err:
        session.get("/mgmt/tm/sys/file/ssl-cert/~Common~missing.crt")
    assert err.value.status == 404
    assert session.get("/mgmt/tm/sys/file/ssl-cert/~Common~missing.crt", missing_ok=True) == {}


def test_deleting_a_referenced_object_is_refused(session, peer):
    with pytest.raises(F5Error) as err:
        session.delete("/mgmt/tm/sys/file/ssl-cert/~Common~inter_chain.crt")
    assert err.value.status == 400 and "is in use" in err.value.f5_message
    assert "/Common/inter_chain.crt" in peer.device.certs


def test_installing_over_an_existing_name_is_409(session, web_certs):
    session.upload("dup.crt", web_certs["www"].cert_pem)
    with pytest.raises(F5Error) as err:
        session.post("/mgmt/tm/sys/crypto/cert", {"command": "install", "name": "www_2025.crt",
                                                 "from-local-file": "/var/config/rest/downloads/dup.crt"})
    assert err.value.status == 409 and "already exists" in err.value.f5_message


def test_malformed_pem_is_400(session):
    session.upload("junk.crt", b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(F5Error) as err:
        session.post("/mgmt/tm/sys/crypto/cert", {"command": "install", "name": "junk.crt",
                                                 "from-local-file": "/var/config/rest/downloads/junk.crt"})
    assert err.value.status == 400


def test_content_range_must_match_the_body(session):
    with pytest.raises(F5Error) as err:
        session.request("POST", "/mgmt/shared/file-transfer/uploads/x.bin", data=b"abc",
                        headers={"Content-Type": "application/octet-stream", "Content-Range": "0-3/4"})
    assert "Chunk byte count 4 different from received buffer length 3" in err.value.f5_message


def test_token_limit_is_100_per_user(plain_peer):
    import requests

    url = f"{plain_peer.url}/mgmt/shared/authn/login"  # plain HTTP: 101 logins without 101 handshakes
    body = {"username": "operator", "password": "operator-pw", "loginProviderName": "tmos"}
    with requests.Session() as http:
        for _ in range(100):
            assert http.post(url, json=body, timeout=10).status_code == 200
        resp = http.post(url, json=body, timeout=10)
    assert resp.status_code == 400 and resp.json()["message"] == "user has reached maximum active login tokens"
    assert plain_peer.device.live_tokens("operator") == 100 and plain_peer.device.live_tokens("admin") == 0


def test_empty_transaction_cannot_commit(session):
    tid = session.post("/mgmt/tm/transaction", {})["transId"]
    with pytest.raises(F5Error) as err:
        session.patch(f"/mgmt/tm/transaction/{tid}", {"state": "VALIDATING"})
    assert err.value.status == 404 and "no command to commit" in err.value.f5_message


def test_unauthenticated_calls_are_401(peer, ca_bundle):
    import requests

    resp = requests.get(f"{peer.url}/mgmt/tm/sys", verify=str(ca_bundle), timeout=10)
    assert resp.status_code == 401 and resp.json()["kind"] == ":resterrorresponse"


def test_profile_cannot_reference_another_tenant(session):
    with pytest.raises(F5Error) as err:
        session.patch("/mgmt/tm/ltm/profile/client-ssl/~Common~cs_www", {"certKeyChain": [
            {"name": "default", "cert": "/Tenant_A/shop_2025.crt", "key": "/Tenant_A/shop_2025.key"}]})
    assert err.value.status == 400 and "cannot reference" in err.value.f5_message
