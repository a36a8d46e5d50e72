"""The library API over the inventory: add/validate, delegation, discovery, install, audit,
secrets at rest, credential stores, concurrency."""

from __future__ import annotations

import os
import sqlite3

import pytest
from tlsgate import CertificateBundle, OperationError, ValidationError
from tlsgate.api import Gateway
from tlsgate_testing.certs import TestCA

SECRET = "Pa55-w0rd-only-in-this-test"


def _bundle(ca: TestCA, name: str = "svc.example.org") -> CertificateBundle:
    issued = ca.issue(name)
    return CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)


def _all_bytes(home) -> bytes:
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


def test_local_endpoint_lifecycle(gateway: Gateway, test_ca: TestCA, tmp_path) -> None:
    folder = tmp_path / "certs"
    folder.mkdir()
    ep = gateway.add_endpoint("folder", name="web", connection_type="local", options={"folder": str(folder)})
    assert len(ep.instance_id) == 36
    with pytest.raises(OperationError, match="not delegated"):
        gateway.discover("web")
    gateway.add_org("Acme")
    gateway.add_department("Acme", "Web")
    gateway.delegate("web", "Acme", "Web")
    assert gateway.discover("web") == []
    bundle = _bundle(test_ca)
    outcome = gateway.install("web", bundle)
    assert outcome.certificate_id is not None and outcome.result.verified
    views = gateway.nodes("web")
    assert [(v.node.name, v.ssl) for v in views] == [("svc.example.org", str(outcome.certificate_id))]
    log = gateway.inventory.audit_log()
    install = [e for e in log if e["action"] == "tls install"][-1]
    assert install["result"] == "ok" and install["after"] == bundle.fingerprint


def test_discovered_unassigned_certificate_shows_external(gateway: Gateway, test_ca: TestCA, tmp_path) -> None:
    tmp_path = tmp_path / "ep"
    tmp_path.mkdir()
    issued = test_ca.issue("ext.example.org")
    (tmp_path / "cert.pem").write_bytes(issued.cert_pem)
    gateway.add_endpoint("folder", name="ext", connection_type="local", options={"folder": str(tmp_path)})
    gateway.add_org("Acme")
    gateway.delegate("ext", "Acme")
    gateway.discover("ext")
    assert [v.ssl for v in gateway.nodes("ext")] == ["External"]
    cert_id = next(c.id for c in gateway.certificates() if c.fingerprint == issued.fingerprint)
    gateway.assign_certificate(cert_id, "Acme")
    assert [v.ssl for v in gateway.nodes("ext")] == [str(cert_id)]


def test_failed_install_is_restored_and_audited(gateway: Gateway, test_ca: TestCA, tmp_path) -> None:
    tmp_path = tmp_path / "ep"
    tmp_path.mkdir()
    old = test_ca.issue("svc.example.org")
    (tmp_path / "cert.pem").write_bytes(old.cert_pem)
    (tmp_path / "key.pem").write_bytes(old.key_pem)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    gateway.add_endpoint("folder", name="f", connection_type="local",
                         options={"folder": str(tmp_path), "fail_after_write": "true"})
    gateway.add_org("Acme")
    gateway.delegate("f", "Acme")
    with pytest.raises(OperationError) as err:
        gateway.install("f", _bundle(test_ca))
    assert err.value.rolled_back and "injected failure" in str(err.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    last = gateway.inventory.audit_log()[-1]
    assert (last["action"], last["result"]) == ("tls install", "rolled back")
    # backups were kept encrypted: the old private key is not in clear under TLSGATE_HOME
    assert old.key_pem.split(b"\n")[1] not in _all_bytes(gateway.inventory.path.parent)


def test_validation_rules(gateway: Gateway, tmp_path) -> None:
    opts = {"folder": str(tmp_path)}
    cases = [
        (dict(name="", connection_type="local"), "--name: must be between 1 and 32 characters"),
        (dict(name="x" * 33, connection_type="local"), "--name: must be between 1 and 32 characters"),
        (dict(name="a", connection_type="ssh"), "--connection_type: must be one of: local, fakeremote, fakeinsecure (for folder)"),
        (dict(name="a", connection_type="local", host="h"), "--host: is not used with --connection_type local"),
        (dict(name="a", connection_type="fakeremote"), "--host: is required"),
        (dict(name="a", connection_type="fakeremote", host="h", port="0", password="p"),
         "--port: must be an integer between 1 and 65535"),
        (dict(name="a", connection_type="fakeremote", host="h"),
         "--password: fakeremote needs --password, --ssh_key_path, or --store with --store_cred_id"),
        (dict(name="a", connection_type="fakeremote", host="h", store="nope", store_cred_id="1"),
         "--store: no credential store named 'nope' (see: tlsgate store list)"),
        (dict(name="a", connection_type="fakeremote", host="h", ssh_key_path="/k"),
         "--ssh_key_path: is only used with ssh connection types, not fakeremote"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValidationError) as err:
            gateway.add_endpoint("folder", options=opts, **kwargs)
        assert str(err.value) == message
    gateway.add_endpoint("folder", name="a", connection_type="local", options=opts)
    with pytest.raises(ValidationError, match="--name: an endpoint named 'a' already exists"):
        gateway.add_endpoint("folder", name="a", connection_type="local", options=opts)


def test_docker_gateway_never_allows_local(gateway: Gateway, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TLSGATE_GATEWAY_PLATFORM", "docker")
    with pytest.raises(ValidationError, match="local is not allowed for folder on a gateway in Docker"):
        gateway.add_endpoint("folder", name="d", connection_type="local", options={"folder": str(tmp_path)})


def test_secrets_never_in_clear_at_rest(gateway: Gateway, tmp_path, registry) -> None:
    ep = gateway.add_endpoint("folder", name="r", connection_type="fakeremote", host="h.example", user="u",
                              password=SECRET, options={"folder": str(tmp_path)})
    assert ep.connection.port == 2222
    home = gateway.inventory.path.parent
    assert SECRET.encode() not in _all_bytes(home)
    assert SECRET not in str(gateway.describe(gateway.inventory.get_endpoint("r")))
    # ...but the transport gets it at job time
    gateway.add_org("O")
    gateway.delegate("r", "O")
    gateway.discover("r")
    creds = registry._objects["fakeremote"].credentials[-1]
    assert creds.password.reveal() == SECRET and creds.user == "u"


def test_local_credential_store(gateway: Gateway, tmp_path, registry) -> None:
    gateway.add_store("local", "vault1", {})
    gateway.put_store_secret("vault1", "web-admin", {"user": "admin", "password": SECRET})
    gateway.add_endpoint("folder", name="s", connection_type="fakeremote", host="h", store="vault1",
                         store_cred_id="web-admin", options={"folder": str(tmp_path)})
    assert SECRET.encode() not in _all_bytes(gateway.inventory.path.parent)
    gateway.add_org("O")
    gateway.delegate("s", "O")
    gateway.discover("s")
    creds = registry._objects["fakeremote"].credentials[-1]
    assert (creds.user, creds.password.reveal()) == ("admin", SECRET)


def test_audit_log_is_append_only(gateway: Gateway) -> None:
    gateway.add_org("A")
    # a second client of the same database, as a forger would use
    if gateway.inventory.url:
        from tlsgate.database import PostgresConnection

        db = PostgresConnection(gateway.inventory.url)
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("TRUNCATE audit")
    else:
        db = sqlite3.connect(gateway.inventory.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit SET result = 'forged'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM audit")


def _add_orgs(home: str, prefix: str) -> None:
    os.environ["TLSGATE_HOME"] = home
    from tlsgate.inventory import open_inventory

    inv = open_inventory()
    for i in range(40):
        inv.add_org(f"{prefix}-{i}")
        inv.audit("org add", "ok", details={"i": i})


def test_two_processes_write_at_once(tlsgate_home) -> None:
    from tlsgate.inventory import open_inventory

    open_inventory().close()
    import subprocess
    import sys

    code = ("import os,sys; os.environ['TLSGATE_HOME']=sys.argv[1]\n"
            "from tlsgate.inventory import open_inventory\ninv=open_inventory()\n"
            "for i in range(40):\n    inv.add_org(f'{sys.argv[2]}-{i}'); inv.audit('org add','ok',details={'i':i})\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tlsgate_home), p]) for p in ("a", "b")]
    for p in procs:
        assert p.wait(60) == 0
    inv = open_inventory()
    assert len(inv.orgs()) == 80 and len(inv.audit_log()) == 80


def test_insecure_transport_is_said_in_show_and_audit(gateway: Gateway, tmp_path) -> None:
    gateway.add_endpoint("folder", name="ins", connection_type="fakeinsecure", host="h", password="p",
                         options={"folder": str(tmp_path)})
    assert gateway.describe(gateway.inventory.get_endpoint("ins"))["insecure"] is True
    gateway.add_org("O")
    gateway.delegate("ins", "O")
    gateway.discover("ins")
    report = gateway.test("ins")
    assert report.insecure and ("tls verification", True, "SKIPPED: insecure connection type") in report.checks
    entries = [e for e in gateway.inventory.audit_log() if e["endpoint"] == "ins" and e["action"] != "tls delegate"]
    assert entries and all(e["details"]["tls_verification"].startswith("disabled") for e in entries)
