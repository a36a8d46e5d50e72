"""Install over the loopback iControl REST peer: new objects, one PATCH per profile, verify,
save, delete what nothing references; any failure leaves the device exactly as before."""

from __future__ import annotations

from pathlib import Path

import pytest
from f5_setup import VERSIONS, credentials, make_endpoint
from tlsgate import CertificateBundle, OperationError, ValidationError
from tlsgate_f5 import plugin
from tlsgate_f5.discovery import discover
from tlsgate_testing.certs import TestCA


def bundle_for(ca: TestCA, *names: str, chain: bool = True, key_type: str | None = None) -> CertificateBundle:
    issued = ca.issue(*names, key_type=key_type)
    return CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem if chain else None)


def profile_chain(peer, profile: str) -> list[dict]:
    return peer.device.profiles[profile]["certKeyChain"]


def patches(peer) -> list[tuple[str, str, object]]:
    return [entry for entry in peer.device.log if entry[0] == "PATCH" and "/ltm/profile/" in entry[1]]


@pytest.mark.parametrize("f5_version", VERSIONS)
def test_install_to_one_profile_leaves_the_others(session, peer, web_ca, f5_version):
    dev = peer.device
    before = dev.snapshot()
    bundle = bundle_for(web_ca, "www.example.com")
    result = plugin.install(endpoint=None, connection=session, bundle=bundle, nodes=[], dry_run=False)

    assert result.verified and not result.rolled_back and not result.dry_run
    assert result.nodes == ("/Common/vs_www",)
    entry = profile_chain(peer, "/Common/cs_www")[0]
    stem = entry["cert"].removeprefix("/Common/").removesuffix(".crt")
    assert entry == {"name": "default", "cert": f"/Common/{stem}.crt", "key": f"/Common/{stem}.key",
                     "chain": f"/Common/{stem}_chain.crt"}
    assert stem.startswith("www.example.com_")
    # the other profiles are untouched
    for other in ("/Common/cs_api", "/Tenant_A/cs_shop", "/Common/clientssl"):
        assert dev.profiles[other] == before["profiles"][other]
    # one PATCH, with cert, key and chain together
    (patch,) = patches(peer)
    assert patch[1] == "/mgmt/tm/ltm/profile/client-ssl/~Common~cs_www"
    assert patch[2] == {"certKeyChain": [entry]}
    # new objects read back with the leaf's fingerprint and the chain as a bundle
    item = dev.cert_item(f"/Common/{stem}.crt")
    assert item["fingerprint"].replace("SHA256/", "").replace(":", "").lower() == bundle.fingerprint
    assert dev.cert_item(f"/Common/{stem}_chain.crt")["isBundle"] == "false"  # one intermediate
    # old www objects deleted, the shared chain kept (cs_api uses it), uploads cleaned
    assert "/Common/www_2025.crt" not in dev.certs and "/Common/www_2025.key" not in dev.keys
    assert "/Common/inter_chain.crt" in dev.certs
    assert dev.files == {} and dev.uploads == {}
    assert dev.saves >= 1
    assert any("verified by TLS handshake" in m for m in result.messages)
    assert any("deleted old objects" in m for m in result.messages)
    # a fresh discovery shows the new certificate on the www node only
    nodes = {n.locator: n for n in discover(session)}
    assert nodes["/Common/vs_www|/Common/cs_www"].fingerprint == bundle.fingerprint
    assert nodes["/Common/vs_www|/Common/cs_www"].certificate is not None
    assert nodes["/Common/vs_www|/Common/cs_api"].fingerprint != bundle.fingerprint


def test_install_in_a_partition_uses_that_partition(session, peer, web_ca):
    bundle = bundle_for(web_ca, "shop.example.org", key_type="rsa")
    result = plugin.install(endpoint=None, connection=session, bundle=bundle, nodes=[], dry_run=False)
    assert result.nodes == ("/Tenant_A/vs_shop",)
    entry = profile_chain(peer, "/Tenant_A/cs_shop")[0]
    assert entry["cert"].startswith("/Tenant_A/") and entry["key"].startswith("/Tenant_A/")
    assert entry["chain"].startswith("/Tenant_A/")
    assert any("not reachable from the gateway" in m for m in result.messages)  # route domain 2
    assert "/Tenant_A/shop_chain.crt" not in peer.device.certs  # old chain no longer referenced


def test_dry_run_changes_nothing_and_lists_the_plan(session, peer, web_ca):
    before = peer.device.snapshot()
    saves = peer.device.saves
    result = plugin.install(endpoint=None, connection=session, bundle=bundle_for(web_ca, "www.example.com"),
                            nodes=[], dry_run=True)
    assert result.dry_run and peer.device.snapshot() == before and peer.device.saves == saves
    actions = [(s.action, s.target) for s in result.plan]
    assert [a for a, _ in actions].count("upload") == 3
    assert ("replace-entry", "/Common/cs_www") in actions
    assert ("remove", "/Common/www_2025.crt") in actions and ("remove", "/Common/www_2025.key") in actions
    assert ("remove", "/Common/inter_chain.crt") not in actions
    assert ("api", "save sys config") in actions
    assert not [e for e in peer.device.log if e[0] != "GET" and "authz/tokens" not in e[1] and "login" not in e[1]]


def test_bundle_without_chain_is_refused(session, peer, web_ca):
    with pytest.raises(ValidationError) as err:
        plugin.install(endpoint=None, connection=session, bundle=bundle_for(web_ca, "www.example.com", chain=False),
                       nodes=[], dry_run=False)
    assert err.value.option == "--chain"


def test_no_covered_node_is_a_clear_error(session, peer, web_ca):
    with pytest.raises(ValidationError) as err:
        plugin.install(endpoint=None, connection=session, bundle=bundle_for(web_ca, "other.example.net"),
                       nodes=[], dry_run=False)
    assert err.value.option == "--node" and "other.example.net" in str(err.value)


def test_chosen_nodes_move_together_in_one_transaction(session, peer, web_ca):
    nodes = [n for n in discover(session) if n.name == "/Common/vs_www"]
    bundle = bundle_for(web_ca, "*.example.com", "www.example.com", "api.example.com")
    result = plugin.install(endpoint=None, connection=session, bundle=bundle, nodes=nodes, dry_run=False)
    www, api = profile_chain(peer, "/Common/cs_www")[0], profile_chain(peer, "/Common/cs_api")[0]
    assert www["cert"] == api["cert"] and www["cert"].startswith("/Common/wildcard.example.com_")
    assert any(e[0] == "PATCH" and e[1].startswith("/mgmt/tm/transaction/") for e in peer.device.log)
    assert any("also used by /Common/vs_api6" in m for m in result.messages)
    # both old leaf pairs and the shared chain are now unreferenced and deleted
    assert not {"/Common/www_2025.crt", "/Common/api_2025.crt", "/Common/inter_chain.crt"} & set(peer.device.certs)


FAULTS = [
    ("POST", r"/mgmt/shared/file-transfer/uploads/.*_chain\.crt$", 500),
    ("POST", r"/mgmt/tm/sys/crypto/cert$", 500),
    ("PATCH", r"/mgmt/tm/ltm/profile/client-ssl/~Common~cs_www$", 400),
    ("POST", r"/mgmt/tm/sys/config$", 500),
]


@pytest.mark.parametrize(("method", "pattern", "status"), FAULTS, ids=["upload", "install-cert", "repoint", "save"])
def test_injected_failure_leaves_the_device_as_before(session, peer, web_ca, method, pattern, status):
    dev = peer.device
    before = dev.snapshot()
    dev.fail(method, pattern, status, "01070734:3: Configuration error: injected by the test")
    with pytest.raises(OperationError) as err:
        plugin.install(endpoint=None, connection=session, bundle=bundle_for(web_ca, "www.example.com"),
                       nodes=[], dry_run=False)
    assert err.value.rolled_back, str(err.value)
    assert "injected by the test" in str(err.value)
    assert dev.snapshot() == before


def test_handshake_mismatch_rolls_back(session, peer, web_ca):
    """The device accepts the change but the virtual server keeps serving the old certificate."""
    dev = peer.device
    before = dev.snapshot()
    peer.freeze_listeners = True
    with pytest.raises(OperationError) as err:
        plugin.install(endpoint=None, connection=session, bundle=bundle_for(web_ca, "www.example.com"),
                       nodes=[], dry_run=False)
    assert err.value.rolled_back and "handshake" in str(err.value)
    assert dev.snapshot() == before


def test_transaction_failure_rolls_back_every_profile(session, peer, web_ca):
    dev = peer.device
    before = dev.snapshot()
    dev.fail("PATCH", r"/mgmt/tm/transaction/\d+$", 400, "transaction failed:01070313:3: injected")
    nodes = [n for n in discover(session) if n.name == "/Common/vs_www"]
    with pytest.raises(OperationError) as err:
        plugin.install(endpoint=None, connection=session,
                       bundle=bundle_for(web_ca, "www.example.com", "api.example.com"), nodes=nodes, dry_run=False)
    assert err.value.rolled_back
    assert dev.snapshot() == before


def test_reinstalling_the_same_certificate_changes_nothing(session, peer, web_ca):
    bundle = bundle_for(web_ca, "www.example.com")
    plugin.install(endpoint=None, connection=session, bundle=bundle, nodes=[], dry_run=False)
    snap = peer.device.snapshot()
    again = plugin.install(endpoint=None, connection=session, bundle=bundle, nodes=[], dry_run=False)
    assert peer.device.snapshot() == snap
    assert any("already presents this certificate" in m for m in again.messages)


def test_stale_node_is_reported(session, peer, web_ca):
    nodes = [n for n in discover(session) if n.name == "/Common/vs_www"]
    del peer.device.virtuals["/Common/vs_www"]
    with pytest.raises(OperationError, match="no longer on the device"):
        plugin.install(endpoint=None, connection=session, bundle=bundle_for(web_ca, "www.example.com"),
                       nodes=nodes, dry_run=False)


def test_rest_insecure_install_says_so(peer, web_ca):
    endpoint = make_endpoint(peer, connection_type="rest_insecure")
    with plugin.connect(endpoint, credentials(endpoint)) as conn:
        result = plugin.install(endpoint=endpoint, connection=conn, bundle=bundle_for(web_ca, "www.example.com"),
                                nodes=[], dry_run=False)
    assert result.verified
    assert any("TLS verification of the BIG-IP certificate is disabled" in m for m in result.messages)
    assert peer.device.live_tokens() == 0


def test_restart_is_a_no_op_that_says_why(session):
    result = plugin.restart(endpoint=None, connection=session)
    assert not result.restarted and "live" in result.message


def test_new_key_never_stays_in_downloads(session, peer, web_ca, tmp_path: Path):
    plugin.install(endpoint=None, connection=session, bundle=bundle_for(web_ca, "www.example.com"),
                   nodes=[], dry_run=False)
    rm = [e for e in peer.device.log if e[1] == "/mgmt/tm/util/unix-rm"]
    assert len(rm) == 3 and peer.device.files == {}


def test_only_the_entry_with_the_same_key_type_is_replaced(session, peer, web_ca):
    """A profile with an RSA and an ECDSA certificate: an ECDSA install replaces the ECDSA entry."""
    dev = peer.device
    rsa_api = web_ca.issue("api.example.com", key_type="rsa")
    dev.add_cert("/Common/api_rsa.crt", rsa_api.cert_pem)
    dev.add_key("/Common/api_rsa.key", rsa_api.key_pem)
    rsa_entry = {"name": "rsa", "cert": "/Common/api_rsa.crt", "key": "/Common/api_rsa.key",
                 "chain": "/Common/inter_chain.crt"}
    dev.profiles["/Common/cs_api"]["certKeyChain"].insert(0, rsa_entry)
    plugin.install(endpoint=None, connection=session, bundle=bundle_for(web_ca, "api.example.com", key_type="ec"),
                   nodes=[], dry_run=False)
    rsa, ec_entry = profile_chain(peer, "/Common/cs_api")
    assert rsa == rsa_entry
    assert ec_entry["name"] == "default" and ec_entry["cert"].startswith("/Common/api.example.com_")
    assert "/Common/api_rsa.crt" in dev.certs and "/Common/api_2025.crt" not in dev.certs


def test_a_name_taken_meanwhile_is_never_deleted(session, peer, web_ca, monkeypatch):
    """Another job creates an object under our new name between plan and install: the install
    fails on the 409 and the rollback leaves that object alone."""
    from tlsgate_f5 import install as inst

    dev = peer.device
    real = inst.plan_install

    def racing_plan(conn, bundle, nodes):  # type: ignore[no-untyped-def]
        plan, state = real(conn, bundle, nodes)
        other = web_ca.issue("other.example.com")
        dev.add_key(f"/Common/{plan.stem}.key", other.key_pem)
        return plan, state

    monkeypatch.setattr(inst, "plan_install", racing_plan)
    bundle = bundle_for(web_ca, "www.example.com")
    with pytest.raises(OperationError) as err:
        plugin.install(endpoint=None, connection=session, bundle=bundle, nodes=[], dry_run=False)
    assert err.value.rolled_back and "already exists" in str(err.value)
    stem = [k for k in dev.keys if k.startswith("/Common/www.example.com_")]
    assert len(stem) == 1  # the other job's key is still there
    assert dev.files == {}


def test_device_refusing_a_mismatched_pair_rolls_back(session, peer, web_ca):
    """The key that lands on the device is not the certificate's (a corrupted transfer): BIG-IP
    refuses the profile change ("Key and certificate do not match") and nothing is left."""
    dev = peer.device
    before = dev.snapshot()
    dev.corrupt_uploads[r"\.key$"] = web_ca.issue("someone.example").key_pem
    with pytest.raises(OperationError) as err:
        plugin.install(endpoint=None, connection=session, bundle=bundle_for(web_ca, "www.example.com"),
                       nodes=[], dry_run=False)
    assert err.value.rolled_back and "Key and certificate do not match" in str(err.value)
    assert dev.snapshot() == before


def test_old_profile_entries_go_to_the_jobs_backup_sink(session, peer, web_ca):
    import json

    from tlsgate.plugin import Transaction

    saved: list[tuple[str, str, bytes | None]] = []

    class Sink:
        def save(self, host: str, path: str, data: bytes | None, mode: int | None) -> str:
            saved.append((host, path, data))
            return f"backup-{len(saved)}"

    with Transaction.backups_to(Sink()):
        result = plugin.install(endpoint=None, connection=session, bundle=bundle_for(web_ca, "www.example.com"),
                                nodes=[], dry_run=False)
    assert result.backups == ("backup-1",)
    (host, path, data) = saved[0]
    assert host == "127.0.0.1"
    assert path == "/mgmt/tm/ltm/profile/client-ssl/~Common~cs_www#certKeyChain"
    assert json.loads(data)["certKeyChain"][0]["cert"] == "/Common/www_2025.crt"


def test_failure_while_queueing_a_transaction_discards_it(session, peer, web_ca):
    dev = peer.device
    before = dev.snapshot()
    dev.fail("PATCH", r"/ltm/profile/client-ssl/~Common~cs_www$", 400, "01070734:3: Configuration error: injected")
    nodes = [n for n in discover(session) if n.name == "/Common/vs_www"]
    with pytest.raises(OperationError) as err:
        plugin.install(endpoint=None, connection=session,
                       bundle=bundle_for(web_ca, "www.example.com", "api.example.com"), nodes=nodes, dry_run=False)
    assert err.value.rolled_back and dev.snapshot() == before and dev.transactions == {}
