"""The command line end to end (subprocess, real entry points) against the simulated IIS behind the
WinRM loopback peer over winrm_https with the test CA: add, delegate, discover, install (dry run
and real), nodes, restart; the vendor's connection-type rules; the password never stored in clear."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from iis_sim import IISSim
from tlsgate_iis.pfx import thumbprint
from tlsgate_testing.certs import TestCA
from tlsgate_testing.winhost import SimulatedWindowsHost
from tlsgate_testing.winrm_fixtures import WINRM_PASSWORD, WINRM_USER


def tg(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "TLSGATE_GATEWAY_PLATFORM"}
    return subprocess.run([sys.executable, "-m", "tlsgate", *args], capture_output=True, text=True, input=stdin,
                          env={**base, **(env or {})}, timeout=120)


def ok(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    res = tg(*args, stdin=stdin)
    assert res.returncode == 0, f"{args}: {res.stderr}"
    return res


def home_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


def test_cli_add_discover_install_restart_over_winrm_https(winrm_peer_factory, winrm_tls, iis_host: SimulatedWindowsHost,  # type: ignore[no-untyped-def]
                                                           tlsgate_home: Path, iis_ca: TestCA, tmp_path: Path) -> None:
    peer = winrm_peer_factory("https", host=iis_host)
    res = ok("tls", "add", "iis", "--name", "web1", "--connection_type", "winrm_https", "--host", "127.0.0.1",
             "--port", str(peer.port), "--user", WINRM_USER, "--password", "-", "--ca_bundle", str(winrm_tls.ca_bundle),
             stdin=WINRM_PASSWORD + "\n")
    assert res.stdout.startswith("Endpoint 'web1' added successfully. Instance ID: ")
    shown = json.loads(ok("tls", "show", "web1", "--json").stdout)
    assert shown["type"] == "iis" and shown["connection"]["password"] == "********"
    ok("org", "add", "Acme")
    ok("tls", "delegate", "web1", "--org", "Acme")

    nodes = json.loads(ok("tls", "discover", "web1", "--json").stdout)
    assert [(n["name"], n["protocol"], n["port"]) for n in nodes] == [
        ("Default Web Site", "http", 80), ("Default Web Site", "https", 443), ("shop.example.com", "http", 80),
        ("shop.example.com", "https", 443), ("blog.example.com", "https", 443), ("Blog", "https", 8443),
        ("api.example.com", "https", 443)]
    text = ok("tls", "nodes", "web1").stdout
    assert "shop.example.com" in text and "External" in text

    new = iis_ca.issue("shop.example.com")
    crt, key, chain = new.write(tmp_path / "in", "shop")
    before = IISSim.load(iis_host).bindings_view()
    plan = json.loads(ok("tls", "install", "web1", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
                         "--dry-run", "--json").stdout)
    assert plan["dry_run"] and "api" in [s["action"] for s in plan["plan"]]
    assert IISSim.load(iis_host).bindings_view() == before

    done = json.loads(ok("tls", "install", "web1", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
                         "--node", "Shop|https|*:443:shop.example.com", "--json").stdout)
    assert done["nodes"] == ["shop.example.com"] and not done["rolled_back"] and done["certificate_id"] >= 1
    after = IISSim.load(iis_host).bindings_view()
    assert {k for k in after if after[k] != before[k]} == {("Shop", "https", "*:443:shop.example.com")}
    assert after[("Shop", "https", "*:443:shop.example.com")] == thumbprint(new.cert.public_bytes(_der()))
    listed = json.loads(ok("tls", "nodes", "web1", "--json").stdout)
    shop = next(n for n in listed if n["name"] == "shop.example.com" and n["protocol"] == "https")
    assert shop["fingerprint"] == new.fingerprint and shop["ssl"] == str(done["certificate_id"])

    res = ok("tls", "restart", "web1")
    assert "W3SVC" in res.stdout
    assert IISSim.load(iis_host).restarts == 1

    assert WINRM_PASSWORD.encode() not in home_bytes(tlsgate_home)
    for cmd in (["tls", "show", "web1", "--json"], ["tls", "list", "--json"], ["log", "--json"]):
        assert WINRM_PASSWORD not in ok(*cmd).stdout


def _der():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.DER


def test_cli_failed_install_exits_1_and_says_rolled_back(winrm_peer_factory, iis_host: SimulatedWindowsHost,  # type: ignore[no-untyped-def]
                                                         tlsgate_home: Path, iis_ca: TestCA, tmp_path: Path) -> None:
    peer = winrm_peer_factory("http", host=iis_host)
    ok("tls", "add", "iis", "--name", "web2", "--connection_type", "winrm_http", "--host", "127.0.0.1",
       "--port", str(peer.port), "--user", WINRM_USER, "--password", "-", stdin=WINRM_PASSWORD + "\n")
    ok("org", "add", "Acme")
    ok("tls", "delegate", "web2", "--org", "Acme")
    sim = IISSim.load(iis_host)
    before = (sim.bindings_view(), sim.store_view())
    sim.fail("iis-bind", on_call=2, message="Cannot create a file when that file already exists.")
    sim.save(iis_host)
    crt, key, chain = iis_ca.issue("shop.example.com", "blog.example.com").write(tmp_path / "in", "x")
    res = tg("tls", "install", "web2", "--cert", str(crt), "--key", str(key), "--chain", str(chain))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "every change was restored" in res.stderr and "Cannot create a file" in res.stderr
    sim = IISSim.load(iis_host)
    assert (sim.bindings_view(), sim.store_view()) == before
    log = json.loads(ok("log", "--json").stdout)
    assert [e["result"] for e in log if e["action"] == "tls install"] == ["started", "rolled back"]  # the journal entry, then the outcome


@pytest.mark.parametrize(("args", "message"), [
    (["--connection_type", "local"],
     "error: --connection_type: local is not allowed for iis on a gateway on Linux; use a remote connection type"),
    (["--connection_type", "ssh", "--host", "h", "--password", "p"],
     "error: --connection_type: must be one of: local, ssh_windows, winrm_http, winrm_https, winrm_https_insecure "
     "(for iis)"),
    (["--connection_type", "rest", "--host", "h", "--password", "p"],
     "error: --connection_type: must be one of: local, ssh_windows, winrm_http, winrm_https, winrm_https_insecure "
     "(for iis)"),
    (["--connection_type", "winrm_http", "--host", "h", "--password", "p", "--ssh_key_path", "/k"],
     "error: --ssh_key_path: is only used with ssh connection types, not winrm_http"),
    (["--connection_type", "winrm_http", "--host", "h"],
     "error: --password: winrm_http needs --password, --ssh_key_path, or --store with --store_cred_id"),
])
def test_cli_refusals_exit_2_naming_the_option(tlsgate_home: Path, args: list[str], message: str) -> None:
    res = tg("tls", "add", "iis", "--name", "w", *args)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [message]
    assert json.loads(ok("tls", "list", "--json").stdout) == []


def test_cli_local_follows_the_gateway_platform(tlsgate_home: Path) -> None:
    res = tg("tls", "add", "iis", "--name", "w", "--connection_type", "local", env={"TLSGATE_GATEWAY_PLATFORM": "docker"})
    assert res.returncode == 2 and "--connection_type: local is not allowed for iis on a gateway in Docker" in res.stderr
    res = tg("tls", "add", "iis", "--name", "w", "--connection_type", "local", env={"TLSGATE_GATEWAY_PLATFORM": "windows"})
    assert res.returncode == 0, res.stderr


def test_cli_help_lists_the_vendor_options(tlsgate_home: Path) -> None:
    text = ok("tls", "add", "iis", "--help").stdout
    for flag in ("--name", "--connection_type", "--host", "--port", "--user", "--password", "--ssh_key_path",
                 "--ssh_key_password", "--store", "--store_cred_id", "--winrm_auth", "--ca_bundle"):
        assert flag in text
    assert "local, ssh_windows, winrm_http, winrm_https" in " ".join(text.split())


def test_cli_tls_test_says_a_constrained_language_host_needs_full_language(  # type: ignore[no-untyped-def]
        winrm_peer_factory, iis_host: SimulatedWindowsHost, tlsgate_home: Path) -> None:
    sim = IISSim.load(iis_host)
    sim.language_mode = "ConstrainedLanguage"  # an AppLocker / WDAC host
    sim.save(iis_host)
    peer = winrm_peer_factory("http", host=iis_host)
    ok("tls", "add", "iis", "--name", "clm", "--connection_type", "winrm_http", "--host", "127.0.0.1",
       "--port", str(peer.port), "--user", WINRM_USER, "--password", "-", stdin=WINRM_PASSWORD + "\n")
    res = tg("tls", "test", "clm", "--json")
    assert res.returncode == 1, res.stderr
    report = json.loads(res.stdout)
    checks = {c["check"]: c for c in report["checks"]}
    assert checks["connect"]["ok"]
    assert not checks["endpoint readable"]["ok"]
    assert checks["endpoint readable"]["detail"] == (
        "127.0.0.1: reading the IIS configuration failed: PowerShell on this host runs in ConstrainedLanguage mode "
        "(AppLocker or WDAC policy); the IIS driver needs FullLanguage (Add-Type, New-Object).")
    human = tg("tls", "test", "clm")
    assert human.returncode == 1 and "needs FullLanguage" in human.stdout + human.stderr


def test_cli_install_on_an_sni_binding_is_verified_and_names_no_site(winrm_peer_factory, winrm_tls,  # type: ignore[no-untyped-def]
                                                                      iis_host: SimulatedWindowsHost,
                                                                      tlsgate_home: Path, iis_ca: TestCA,
                                                                      tmp_path: Path) -> None:
    """A binding answers for its host header only: the site's name (the node's alias, ``Shop``)
    is no name a client asks for, so the install is not reported "not verified: the certificate
    does not cover Shop" (IIS bindings: protocol, bindingInformation ``ip:port:hostHeader``,
    learn.microsoft.com/iis/configuration/system.applicationhost/sites/site/bindings/binding)."""
    peer = winrm_peer_factory("https", host=iis_host)
    ok("tls", "add", "iis", "--name", "web1", "--connection_type", "winrm_https", "--host", "127.0.0.1",
       "--port", str(peer.port), "--user", WINRM_USER, "--password", "-", "--ca_bundle", str(winrm_tls.ca_bundle),
       stdin=WINRM_PASSWORD + "\n")
    ok("org", "add", "Acme")
    ok("tls", "delegate", "web1", "--org", "Acme")
    ok("tls", "discover", "web1")
    new = iis_ca.issue("shop.example.com")
    crt, key, chain = new.write(tmp_path / "in", "shop")
    done = json.loads(ok("tls", "install", "web1", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
                         "--node", "Shop|https|*:443:shop.example.com", "--json").stdout)
    assert not [m for m in done["messages"] if "not verified" in m or "does not cover" in m], done
    log = json.loads(ok("log", "--json", "--limit", "1").stdout)[0]
    assert log["action"] == "tls install" and log["details"]["verified"] == done["verified"], log


def test_cli_deploy_replaces_reaches_the_sni_and_the_ip_binding_of_one_certificate(  # type: ignore[no-untyped-def]
        winrm_peer_factory, winrm_tls, iis_host: SimulatedWindowsHost, tlsgate_home: Path, iis_ca: TestCA,
        scene_certs, tmp_path: Path) -> None:
    """`cert deploy --replaces OLD`: the Blog certificate is bound to an SNI binding
    (blog.example.com:443) and an IP-specific one (127.0.0.5:8443); both get the new one, the
    other sites' bindings stay, and the re-discovery shows the new certificate on both."""
    peer = winrm_peer_factory("https", host=iis_host)
    ok("tls", "add", "iis", "--name", "web1", "--connection_type", "winrm_https", "--host", "127.0.0.1",
       "--port", str(peer.port), "--user", WINRM_USER, "--password", "-", "--ca_bundle", str(winrm_tls.ca_bundle),
       stdin=WINRM_PASSWORD + "\n")
    ok("org", "add", "Acme")
    ok("tls", "delegate", "web1", "--org", "Acme")
    ok("tls", "discover", "web1")
    before = IISSim.load(iis_host).bindings_view()
    new = iis_ca.issue("blog.example.com")
    crt, key, chain = new.write(tmp_path / "in", "blog")
    job = json.loads(ok("cert", "deploy", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
                        "--replaces", scene_certs.blog.fingerprint, "--json").stdout)
    assert [(i["endpoint"], i["state"]) for i in job["items"]] == [("web1", "changed")], job
    after = IISSim.load(iis_host).bindings_view()
    assert {k for k in after if after[k] != before[k]} == {("Blog", "https", "*:443:blog.example.com"),
                                                         ("Blog", "https", "127.0.0.5:8443:")}
    nodes = json.loads(ok("tls", "nodes", "web1", "--json").stdout)
    assert sorted(n["port"] for n in nodes if n["fingerprint"] == new.fingerprint) == [443, 8443]


def test_cli_verify_does_not_fail_a_binding_whose_certificate_discovery_could_not_read(  # type: ignore[no-untyped-def]
        winrm_peer_factory, winrm_tls, tlsgate_home: Path, scene_certs, tmp_path: Path) -> None:
    """`tls verify` compares what a binding serves with what discovery read. A binding that takes
    its certificate from the Centralized Certificate Store (sslFlags 3: SNI + CCS; the
    certificate is a file on the CCS share, not in the binding:
    learn.microsoft.com/iis/configuration/system.applicationhost/sites/site/bindings/binding,
    "sslFlags") has none to compare with: it is left out, not reported unreachable or a mismatch
    that fails the whole verify job; the SNI binding beside it is verified by its handshake."""
    from httpsys import SimHttpSys
    from iis_scene import der
    from iis_sim import install_iis

    host = SimulatedWindowsHost()
    install_iis(host, IISSim())
    server = SimHttpSys(host)
    port = server.port
    sim = IISSim.load(host)
    sim.add_site("Shop", ("https", f"*:{port}:shop.example.com", 1))
    sim.add_site("Central", ("https", f"*:{port}:ccs.example.com", 3))
    sim.bind("Shop", f"*:{port}:shop.example.com", sim.add_certificate(der(scene_certs.shop), key=scene_certs.shop.key))
    sim.save(host)
    server.start()
    try:
        peer = winrm_peer_factory("https", host=host)
        ok("tls", "add", "iis", "--name", "web1", "--connection_type", "winrm_https", "--host", "127.0.0.1",
           "--port", str(peer.port), "--user", WINRM_USER, "--password", "-", "--ca_bundle",
           str(winrm_tls.ca_bundle), stdin=WINRM_PASSWORD + "\n")
        ok("org", "add", "Acme")
        ok("tls", "delegate", "web1", "--org", "Acme")
        ok("tls", "discover", "web1")
        res = tg("tls", "verify", "--endpoint", "web1", "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        rows = [r for item in json.loads(res.stdout)["items"] for r in item["details"]["nodes"]]
        assert [(r["node"], r["result"]) for r in rows] == [("shop.example.com", "ok")], rows
    finally:
        server.stop()
