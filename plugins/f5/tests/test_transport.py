"""The rest / rest_insecure transports: TLS verification, token life cycle, Basic fallback,
role checks and clear errors (never the password)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from f5_setup import ADMIN_PASSWORD, credentials, make_endpoint, pem
from tlsgate import ConnectionFailed, ConnectionSpec, Endpoint, OperationError, Secret
from tlsgate_f5 import plugin
from tlsgate_f5.discovery import discover
from tlsgate_f5.rest import F5Connection
from tlsgate_testing.certs import TestCA
from tlsgate_testing.fixtures_core import free_port


def test_rest_refuses_an_untrusted_device_certificate(peer):
    endpoint = make_endpoint(peer)  # no --ca_bundle: the system store does not know the test CA
    with pytest.raises(ConnectionFailed) as err:
        plugin.connect(endpoint, credentials(endpoint))
    text = str(err.value)
    assert "TLS verification of the BIG-IP certificate failed" in text and "--ca_bundle" in text
    assert ADMIN_PASSWORD not in text
    assert peer.device.tokens_issued == 0  # the password never left over an unverified channel


def test_rest_refuses_a_device_certificate_from_another_ca(peer, tmp_path: Path):
    other = tmp_path / "other-ca.pem"
    other.write_bytes(pem(TestCA("Someone Else").root))
    endpoint = make_endpoint(peer, ca_bundle=other)
    with pytest.raises(ConnectionFailed, match="certificate verify failed"):
        plugin.connect(endpoint, credentials(endpoint))


def test_rest_insecure_works_against_it_and_says_so(peer):
    endpoint = make_endpoint(peer, connection_type="rest_insecure")
    with plugin.connect(endpoint, credentials(endpoint)) as conn:
        assert conn.insecure
        assert any("TLS verification of the BIG-IP certificate is disabled" in m for m in conn.messages)
        assert "TLS verification disabled (rest_insecure)" in conn.describe()
        assert len(discover(conn)) == 4
    assert peer.device.live_tokens() == 0


def test_plain_http_port_is_a_clear_error(plain_peer):
    endpoint = make_endpoint(plain_peer, connection_type="rest_insecure")
    with pytest.raises(ConnectionFailed, match="does not speak TLS"):
        plugin.connect(endpoint, credentials(endpoint))


def test_refused_port_is_a_clear_error(ca_bundle):
    spec = ConnectionSpec("rest", host="127.0.0.1", port=free_port(), user="admin", password=Secret("x"),
                          extra={"ca_bundle": str(ca_bundle)})
    endpoint = Endpoint(name="gone", type="f5", connection=spec)
    with pytest.raises(ConnectionFailed, match="connection refused"):
        plugin.connect(endpoint, credentials(endpoint))


def test_wrong_password_is_401_and_never_echoed(peer, ca_bundle):
    endpoint = make_endpoint(peer, ca_bundle=ca_bundle, password="not-the-Secret-123")
    with pytest.raises(ConnectionFailed) as err:
        plugin.connect(endpoint, credentials(endpoint))
    assert "authentication failed for user 'admin'" in str(err.value)
    assert "not-the-Secret-123" not in str(err.value) and "not-the-Secret-123" not in repr(err.value)


def test_token_is_deleted_after_every_job(endpoint, peer, web_ca):
    for _ in range(3):
        with plugin.connect(endpoint, credentials(endpoint)) as conn:
            assert conn.auth_mode == "token" and peer.device.live_tokens() == 1
            discover(conn)
        assert peer.device.live_tokens() == 0
    assert peer.device.tokens_issued == peer.device.tokens_deleted == 3


def test_token_is_deleted_when_the_job_fails(endpoint, peer):
    with pytest.raises(OperationError):
        with plugin.connect(endpoint, credentials(endpoint)) as conn:
            conn.get("/mgmt/tm/ltm/virtual/~Nope~vs")
    assert peer.device.live_tokens() == 0


def test_expired_token_is_renewed_after_a_401(session, peer):
    peer.device.expire_tokens()
    assert len(discover(session)) == 4
    assert peer.device.tokens_issued == 2


def test_token_close_to_expiry_is_renewed_before_use(endpoint, peer):
    peer.device.token_timeout = 30  # under the 60 s renewal margin
    with plugin.connect(endpoint, credentials(endpoint)) as conn:
        conn.get("/mgmt/tm/sys")
        conn.get("/mgmt/tm/sys")
    assert peer.device.tokens_issued == 3 and peer.device.live_tokens() == 0
    assert not [e for e in peer.device.log if e[0] == "GET" and "401" in str(e)]


def test_token_limit_falls_back_to_basic(endpoint, peer):
    peer.device.max_tokens = 0
    with plugin.connect(endpoint, credentials(endpoint)) as conn:
        assert conn.auth_mode == "basic"
        assert any("maximum active login tokens" in m and "Basic" in m for m in conn.messages)
        assert len(discover(conn)) == 4


def test_administrator_role_is_checked(session, peer):
    assert "Administrator role" in session.check_role()
    assert "BIG-IP 15.1.10" in session.describe()


def test_non_administrator_gets_a_clear_message(peer, ca_bundle, web_ca):
    from tlsgate import CertificateBundle

    endpoint = make_endpoint(peer, ca_bundle=ca_bundle, user="operator", password="operator-pw")
    with plugin.connect(endpoint, credentials(endpoint)) as conn:
        with pytest.raises(OperationError, match="lacks the Administrator role"):
            conn.check_role()
        with pytest.raises(OperationError, match="lacks the Administrator role"):
            discover(conn)  # so `tls test`, which discovers, says it
        assert len(conn.get("/mgmt/tm/ltm/virtual")["items"]) == 4  # the device lets it read
        issued = web_ca.issue("www.example.com")
        bundle = CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)
        with pytest.raises(OperationError) as err:
            plugin.install(endpoint=endpoint, connection=conn, bundle=bundle, nodes=[], dry_run=False)
    assert "Administrator role" in str(err.value)
    assert peer.device.live_tokens() == 0


def test_basic_is_refused_for_non_administrators(peer, ca_bundle):
    peer.device.max_tokens = 0
    endpoint = make_endpoint(peer, ca_bundle=ca_bundle, user="operator", password="operator-pw")
    with pytest.raises(ConnectionFailed, match="Basic authentication failed"):
        plugin.connect(endpoint, credentials(endpoint))


def test_a_rest_session_has_no_shell(session):
    for call in (lambda: session.run(["id"]), lambda: session.read_file("/etc/passwd"),
                 lambda: session.write_file("/tmp/x", b"x"), lambda: session.listdir("/")):
        with pytest.raises(OperationError, match="iControl REST"):
            call()


def test_uploads_are_chunked_with_content_range(session, peer):
    data = bytes(range(256)) * 9  # 2304 bytes
    session.upload("blob.bin", data, chunk_size=1000)
    assert peer.device.files["/var/config/rest/downloads/blob.bin"] == data
    uploads = [e for e in peer.device.log if "file-transfer" in e[1]]
    assert len(uploads) == 3
    session.remove_upload("blob.bin")
    assert peer.device.files == {}


def test_requests_is_not_imported_by_the_entry_module():
    import subprocess
    import sys

    code = "import sys, tlsgate_f5.plugin; print('requests' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_connection_types_and_validation(tmp_path: Path):
    types = {t.name: t for t in plugin.tlsgate_connection_types()}
    assert types["rest"].default_port == types["rest_insecure"].default_port == 443
    assert types["rest_insecure"].insecure and not types["rest"].insecure
    (etype,) = plugin.tlsgate_endpoint_types()
    assert etype.connection_types == ("rest", "rest_insecure") and etype.local_platforms == ()

    def problems(**kw) -> list[str]:
        spec = ConnectionSpec(**{"type": "rest", "host": "bigip.example", "user": "admin", **kw})
        return [str(p) for p in plugin.validate(Endpoint(name="b", type="f5", connection=spec))]

    assert problems() == []
    assert problems(type="local") == ["--connection_type: must be one of: rest, rest_insecure"]
    assert problems(extra={"ca_bundle": str(tmp_path / "missing.pem")})[0].startswith("--ca_bundle:")
    assert "rest_insecure" in problems(type="rest_insecure", extra={"ca_bundle": "x"})[0]
    assert problems(ssh_key_path="/k")[0].startswith("--ssh_key_path:")
    assert problems(host=None) == ["--host: is required for F5 BIG-IP endpoints"]
    assert problems(user=None)[0].startswith("--user: is required")
    assert problems(user=None, store="vault", store_cred_id="bigip") == []


def test_token_lifetime_is_counted_on_the_gateways_clock(session):
    """A device whose clock is off by hours must not make every call renew the token."""
    assert time.monotonic() + 1100 < session._token_expires < time.monotonic() + 1300


def test_remote_users_are_not_refused_by_discovery(peer, ca_bundle):
    from icontrol_peer import User

    peer.device.users["ldap-admin"] = User("ldap-pw", remote=True)
    endpoint = make_endpoint(peer, ca_bundle=ca_bundle, user="ldap-admin", password="ldap-pw")
    with plugin.connect(endpoint, credentials(endpoint)) as conn:
        assert len(discover(conn)) == 4
        assert "not a local BIG-IP user" in conn.check_role(strict=False)
        with pytest.raises(OperationError, match="not a local BIG-IP user"):
            conn.check_role()


@pytest.mark.parametrize("ignore_paging", [False, True])
def test_collections_are_read_in_pages(session, peer, monkeypatch, ignore_paging):
    from tlsgate_f5 import rest

    monkeypatch.setattr(rest, "PAGE_SIZE", 2)
    peer.device.ignore_paging = ignore_paging
    certs = session.items("/mgmt/tm/sys/file/ssl-cert")
    assert sorted(c["fullPath"] for c in certs) == sorted(peer.device.certs)
    assert len(discover(session)) == 4


def test_restarting_device_is_retried(session, peer, monkeypatch):
    from tlsgate_f5 import rest

    monkeypatch.setattr(rest, "RETRY_DELAYS", (0.0, 0.0, 0.0))
    peer.device.fail("GET", r"^/mgmt/tm/sys$", 503, "Configuration Utility restarting...", times=2, html=True)
    assert session.get("/mgmt/tm/sys")["selfLink"]
    peer.device.fail("GET", r"^/mgmt/tm/sys$", 503, "Configuration Utility restarting...", times=9, html=True)
    with pytest.raises(OperationError, match="Configuration Utility may be restarting"):
        session.get("/mgmt/tm/sys")


def test_unknown_or_unreachable_host_is_a_clear_error():
    with pytest.raises(ConnectionFailed, match="host name does not resolve"):
        F5Connection("no-such-bigip.invalid", 443, "admin", "x", timeout=0.5).open()
    # TEST-NET-1: dropped (unreachable, timeout) or refused by a sandbox, depending on the network
    with pytest.raises(ConnectionFailed, match=r"unreachable|no answer|refused"):
        F5Connection("192.0.2.1", 443, "admin", "x", timeout=0.5).open()


def test_rest_refuses_a_certificate_for_another_host_name(device, mgmt_ca, ca_bundle):
    from f5_setup import server_context
    from icontrol_peer import IControlPeer

    other = IControlPeer(device, server_context(mgmt_ca.issue("bigip1.example.net"))).start()
    try:
        endpoint = make_endpoint(other, ca_bundle=ca_bundle)
        with pytest.raises(ConnectionFailed) as err:
            plugin.connect(endpoint, credentials(endpoint))
        assert "TLS verification of the BIG-IP certificate failed" in str(err.value)
        assert "does not name 127.0.0.1" in str(err.value)
    finally:
        other.stop()


def test_odata_keys_are_sent_literally(session, peer, monkeypatch):
    seen: list[str] = []
    real = session._session.request

    def spy(method, url, **kw):  # type: ignore[no-untyped-def]
        resp = real(method, url, **kw)
        seen.append(resp.request.url)
        return resp

    monkeypatch.setattr(session._session, "request", spy)
    session.items("/mgmt/tm/ltm/virtual", params={"expandSubcollections": "true"})
    assert "?expandSubcollections=true&$top=500&$skip=0" in seen[0]


def test_403_names_the_missing_role(session, peer):
    peer.device.fail("POST", r"/mgmt/tm/sys/config$", 403, "Forbidden: role resource-admin may not save")
    with pytest.raises(OperationError) as err:
        session.post("/mgmt/tm/sys/config", {"command": "save"})
    assert "needs the Administrator role" in str(err.value) and "resource-admin" in str(err.value)
