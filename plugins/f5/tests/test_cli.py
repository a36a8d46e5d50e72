"""End to end through the ``tlsgate`` command line (subprocesses, private TLSGATE_HOME) against
the loopback iControl REST peer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from f5_setup import ADMIN_PASSWORD
from tlsgate_testing.certs import TestCA

TLSGATE = str(Path(sys.executable).with_name("tlsgate"))


@pytest.fixture
def cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TLSGATE_")}
    env["TLSGATE_HOME"] = str(home)
    outputs: list[str] = []

    def run(*args: str, expect: int | None = 0, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([TLSGATE, *args], capture_output=True, text=True, env=env, input=stdin, timeout=60)
        outputs.append(proc.stdout + proc.stderr)
        assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
        assert expect is None or proc.returncode == expect, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    run.home = home  # type: ignore[attr-defined]
    run.outputs = outputs  # type: ignore[attr-defined]
    return run


def _files(tmp: Path, ca: TestCA, *names: str) -> tuple[str, str, str]:
    issued = ca.issue(*names)
    crt, key, chain = issued.write(tmp, names[0].replace("*", "wildcard"))
    return str(crt), str(key), str(chain)


def _discovered_bigip(cli, peer, ca_bundle) -> None:  # type: ignore[no-untyped-def]
    """Endpoint ``bigip1`` on the peer (REST, its CA bundle), delegated to Acme, discovered."""
    cli("tls", "add", "f5", "--name", "bigip1", "--connection_type", "rest", "--host", "127.0.0.1",
        "--port", str(peer.port), "--user", "admin", "--password", "-", "--ca_bundle", str(ca_bundle),
        stdin=ADMIN_PASSWORD + "\n")
    cli("org", "add", "Acme")
    cli("tls", "delegate", "bigip1", "--org", "Acme")
    cli("tls", "discover", "bigip1")


def test_cli_end_to_end(cli, peer, ca_bundle, web_ca, tmp_path):
    if not Path(TLSGATE).exists():
        pytest.skip("the tlsgate command is not installed in this environment")
    dev = peer.device
    out = cli("tls", "add", "f5", "--name", "bigip1", "--connection_type", "rest", "--host", "127.0.0.1",
              "--port", str(peer.port), "--user", "admin", "--password", "-", "--ca_bundle", str(ca_bundle),
              stdin=ADMIN_PASSWORD + "\n")
    assert "bigip1" in out.stdout
    cli("org", "add", "Acme")
    cli("tls", "discover", "bigip1", expect=1)  # not delegated yet
    cli("tls", "delegate", "bigip1", "--org", "Acme")
    cli("tls", "discover", "bigip1")
    assert dev.live_tokens() == 0
    nodes = json.loads(cli("tls", "nodes", "bigip1", "--json").stdout)
    rows = nodes if isinstance(nodes, list) else nodes.get("nodes", nodes)
    assert sorted(r["name"] for r in rows) == ["/Common/vs_api6", "/Common/vs_www", "/Common/vs_www", "/Tenant_A/vs_shop"]

    crt, key, chain = _files(tmp_path, web_ca, "www.example.com")
    before = dev.snapshot()
    plan = cli("tls", "install", "bigip1", "--cert", crt, "--key", key, "--chain", chain, "--dry-run")
    assert "/Common/cs_www" in plan.stdout and dev.snapshot() == before

    refused = cli("tls", "install", "bigip1", "--cert", crt, "--key", key, expect=2)
    assert "--chain" in refused.stdout + refused.stderr and dev.snapshot() == before

    cli("tls", "install", "bigip1", "--cert", crt, "--key", key, "--chain", chain, "--node", "/Common/cs_www")
    assert dev.profiles["/Common/cs_www"]["certKeyChain"][0]["cert"].startswith("/Common/www.example.com_")
    assert dev.profiles["/Common/cs_api"] == before["profiles"]["/Common/cs_api"]
    assert dev.live_tokens() == 0

    restart = cli("tls", "restart", "bigip1")
    assert "live" in restart.stdout + restart.stderr
    cli("tls", "test", "bigip1")
    assert dev.live_tokens() == 0

    # the password is nowhere: not in any file under TLSGATE_HOME, not in any output
    for path in cli.home.rglob("*"):
        if path.is_file():
            assert ADMIN_PASSWORD.encode() not in path.read_bytes(), path
    assert not [o for o in cli.outputs if ADMIN_PASSWORD in o]


def test_cli_rest_without_trust_fails_clearly_and_rest_insecure_says_so(cli, peer):
    if not Path(TLSGATE).exists():
        pytest.skip("the tlsgate command is not installed in this environment")
    for name, ctype in (("strict", "rest"), ("loose", "rest_insecure")):
        cli("tls", "add", "f5", "--name", name, "--connection_type", ctype, "--host", "127.0.0.1",
            "--port", str(peer.port), "--user", "admin", "--password", ADMIN_PASSWORD)
    cli("org", "add", "Acme")
    for name in ("strict", "loose"):
        cli("tls", "delegate", name, "--org", "Acme")
    failed = cli("tls", "discover", "strict", expect=1)
    assert "TLS verification of the BIG-IP certificate failed" in failed.stdout + failed.stderr
    cli("tls", "discover", "loose")
    shown = cli("tls", "show", "loose", "--json").stdout
    assert "insecure" in shown
    assert dev_tokens(peer) == 0


def test_cli_tls_test_reports_a_missing_administrator_role(cli, peer, ca_bundle):
    if not Path(TLSGATE).exists():
        pytest.skip("the tlsgate command is not installed in this environment")
    cli("tls", "add", "f5", "--name", "op", "--connection_type", "rest", "--host", "127.0.0.1",
        "--port", str(peer.port), "--user", "operator", "--password", "operator-pw", "--ca_bundle", str(ca_bundle))
    report = cli("tls", "test", "op", expect=1)
    assert "lacks the Administrator role" in report.stdout + report.stderr
    assert dev_tokens(peer) == 0


def dev_tokens(peer) -> int:  # type: ignore[no-untyped-def]
    return int(peer.device.live_tokens())


def test_cli_verify_sends_each_sni_profile_its_server_name(cli, peer, ca_bundle):
    """``tls verify`` reaches a virtual server's SNI profiles with their ``serverName``: the
    node's name is the virtual server's path (``/Common/vs_www``), which is no host name, and a
    BIG-IP answers an SNI that matches no profile's Server Name with the profile marked "Default
    SSL Profile for SNI" (F5 K13452, referenced by community.f5.com "SNI Routing with BIG-IP";
    DevCentral "SSL Profiles Part 7: Server Name Indication"), which the peer models, so sending
    the path reported every non-default profile as a mismatch."""
    if not Path(TLSGATE).exists():
        pytest.skip("the tlsgate command is not installed in this environment")
    _discovered_bigip(cli, peer, ca_bundle)
    out = cli("tls", "verify", "--endpoint", "bigip1", "--json", expect=None)
    job = json.loads(out.stdout)
    rows = [n for item in job["items"] for n in item["details"]["nodes"]]
    www = sorted((r["node"], r["expected"] == r["served"], r["result"]) for r in rows if r["node"] == "/Common/vs_www")
    assert www == [("/Common/vs_www", True, "ok"), ("/Common/vs_www", True, "ok")], rows


def test_cli_verify_probes_virtual_addresses_not_the_management_address(cli, device, mgmt_cert, ca_bundle):
    """A virtual server answers on its own destination address, not on the management address
    the endpoint's --host names, so `tls verify` probes the node's address. Nodes the gateway
    cannot reach are "not probed", not failures: a virtual in route domain 2 (F5 TMOS Routing
    Administration, "Route Domains": a route domain "isolates network traffic", an address
    ``10.0.10.1%2`` lives in route domain 2; techdocs.f5.com tmos-routing-administration-13-1-0/9),
    and a disabled virtual (F5 clouddocs training, class4 module5 lab2: "a disabled virtual server
    will not process new connections", it answers SYNs with resets)."""
    from f5_setup import server_context
    from icontrol_peer import IControlPeer
    from tlsgate_testing.fixtures_core import free_port

    if not Path(TLSGATE).exists():
        pytest.skip("the tlsgate command is not installed in this environment")
    del device.virtuals["/Common/vs_api6"]  # ::1 with nothing listening: unreachable by design
    device.add_virtual("/Common/vs_dmz", f"/Common/127.0.0.2:{free_port()}",
                       [("/Common/tcp", "all"), ("/Common/cs_www", "clientside")])
    del device.virtuals["/Common/vs_www"]  # keep only the virtual on 127.0.0.2 with a listener
    peer = IControlPeer(device, server_context(mgmt_cert)).start()
    try:
        assert peer.serve_virtuals() == ["/Common/vs_dmz"]
        _discovered_bigip(cli, peer, ca_bundle)
        nodes = {n["name"]: n for n in json.loads(cli("tls", "nodes", "bigip1", "--json").stdout)}
        assert nodes["/Tenant_A/vs_shop"]["state"].startswith("disabled; not probed: "), nodes
        out = cli("tls", "verify", "--endpoint", "bigip1", "--json")  # exit 0: nothing failed
        rows = {r["node"]: r for item in json.loads(out.stdout)["items"] for r in item["details"]["nodes"]}
        assert rows["/Common/vs_dmz"]["result"] == "ok", rows
        assert rows["/Common/vs_dmz"]["served"] == nodes["/Common/vs_dmz"]["fingerprint"]
        assert rows["/Tenant_A/vs_shop"]["result"] == "not probed", rows
    finally:
        peer.stop()


def test_cli_install_claims_a_handshake_only_when_one_happened(cli, peer, ca_bundle, web_ca, tmp_path):
    """The install line says how it was verified, truthfully: a handshake to vs_www, which
    listens on 127.0.0.1; for vs_shop (route domain 2, unreachable from the gateway) only the
    profile read back. A node's name (the virtual server's path) and its profile's path are no
    host names, so neither is reported as a name the certificate does not cover."""
    if not Path(TLSGATE).exists():
        pytest.skip("the tlsgate command is not installed in this environment")
    _discovered_bigip(cli, peer, ca_bundle)
    shop = cli("tls", "install", "bigip1", *_as_args(_files(tmp_path, web_ca, "shop.example.org")),
               "--node", "/Tenant_A/vs_shop").stdout
    first = shop.splitlines()[0]
    assert "verified by reading" in first and "verified by TLS handshake" not in first, shop
    assert "not verified" not in shop and "does not cover" not in shop, shop
    www = cli("tls", "install", "bigip1", *_as_args(_files(tmp_path, web_ca, "www.example.com")),
              "--node", "/Common/cs_www").stdout
    assert "verified by TLS handshake" in www.splitlines()[0] and "not verified" not in www, www
    entries = json.loads(cli("log", "--json", "--limit", "5").stdout)
    installs = [e for e in entries if e["action"] == "tls install" and e["result"] == "ok"]
    assert len(installs) == 2 and all(e["details"]["verified"] is True for e in installs), installs


def _as_args(files: tuple[str, str, str]) -> list[str]:
    crt, key, chain = files
    return ["--cert", crt, "--key", key, "--chain", chain]


def test_cli_expiring_shows_a_certificate_only_the_device_knows_and_deploy_replaces_it(cli, peer, ca_bundle,  # type: ignore[no-untyped-def]
                                                                                         web_ca, web_certs, tmp_path):
    """``/Tenant_A/vs_shop`` is disabled and in route domain 2: the gateway cannot reach it, so
    discovery knows its certificate only from ``sys/file/ssl-cert`` (fingerprint, subject,
    expirationDate), not the certificate itself. ``cert expiring`` must still list it (no ID:
    the inventory holds no copy; its fingerprint is what ``--replaces`` takes), and after
    ``cert deploy --replaces FINGERPRINT`` the new certificate is listed there instead."""
    if not Path(TLSGATE).exists():
        pytest.skip("the tlsgate command is not installed in this environment")
    _discovered_bigip(cli, peer, ca_bundle)
    old = web_certs["shop"].fingerprint
    listed = json.loads(cli("cert", "expiring", "--days", "4000", "--json").stdout)
    shop = [c for c in listed if c["fingerprint"] == old]
    assert len(shop) == 1, listed
    assert shop[0]["id"] is None and shop[0]["subject"] == "CN=shop.example.org" and shop[0]["not_after"]
    assert [(n["endpoint"], n["name"]) for n in shop[0]["nodes"]] == [("bigip1", "/Tenant_A/vs_shop")]
    # one shape for every item (a script reads c["names"] or c["issuer"] of each): unknown is null
    assert all(set(c) == set(listed[0]) for c in listed) and shop[0]["issuer"] is None and shop[0]["names"] is None
    row = next(line for line in cli("cert", "expiring", "--days", "4000").stdout.splitlines() if "shop" in line)
    assert row.split()[0] == "-" and "/Tenant_A/vs_shop" in row and old[:16] in row

    crt, key, chain = _files(tmp_path, web_ca, "shop.example.org")
    job = json.loads(cli("cert", "deploy", "--cert", crt, "--key", key, "--chain", chain, "--replaces", old,
                         "--json").stdout)
    assert [i["state"] for i in job["items"]] == ["changed"]
    after = json.loads(cli("cert", "expiring", "--days", "4000", "--json").stdout)
    assert not [c for c in after if c["fingerprint"] == old]
    new = [c for c in after if [n["name"] for n in c["nodes"]] == ["/Tenant_A/vs_shop"]]
    assert len(new) == 1 and isinstance(new[0]["id"], int) and new[0]["fingerprint"] == job["items"][0]["after"]
