"""Fleet rollout against real peers, through the ``tlsgate`` command line: 30 endpoints of mixed
types (p12 / jks / pem over the real sshd, a real nginx with several server blocks, a real
apache), ``cert deploy --replaces OLD`` changing exactly the nodes that served OLD, ``tls
verify``; injected failures (a config test that fails, an unreachable host, an install script
that exits non-zero), ``--max-failures``, ``job retry``; two deploys at once on overlapping
selectors; kill -9 of a running deploy. One set of servers for the module (lean in time)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jks
import pytest
from cryptography.hazmat.primitives import serialization
from tlsgate import CertificateBundle, registry
from tlsgate.api import Gateway
from tlsgate.probe import try_served_fingerprint
from tlsgate_testing.fixtures_core import free_port
from tlsgate_testing.sshd import SshdServer

# the real nginx and apache2 fixtures live with their plugins' tests (importable by name)
ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "plugins" / "nginx" / "tests"), str(ROOT / "plugins" / "apache" / "tests")]
from apache_peer import ApacheServer, apache_binary, apache_site  # noqa: E402
from nginx_peer import NginxServer, nginx_binary, nginx_site  # noqa: E402

pytestmark = pytest.mark.slow

TLSGATE = str(Path(sys.executable).with_name("tlsgate"))
PW = "changeit"
N_P12, N_JKS, N_PEM = 12, 6, 10  # + nginx + apache = 30 endpoints


class Forwarder:
    """A loopback TCP forwarder to sshd that the test can stop: a host that becomes unreachable."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target = target_port
        self._sock: socket.socket | None = None
        self._conns: list[socket.socket] = []

    def start(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(8)
        self._sock = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, s: socket.socket) -> None:
        while True:
            try:
                client, _ = s.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not on Linux)
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        for c in self._conns:
            c.close()
        self._conns = []


class Fleet:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env

    def tg(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TLSGATE, *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        r = self.tg(*args)
        assert r.returncode == 0, f"tlsgate {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def js(self, *args: str, code: int = 0) -> object:
        r = self.tg(*args, "--json")
        assert r.returncode == code, f"tlsgate {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
        return json.loads(r.stdout)

    def nodes(self, name: str) -> list[dict]:  # type: ignore[type-arg]
        """The inventory's nodes of an endpoint, read directly (what ``tls nodes --json`` prints;
        one CLI start per endpoint would be most of this module's time)."""
        db = sqlite3.connect(Path(self.env["TLSGATE_HOME"]) / "inventory.sqlite3")
        try:
            rows = db.execute("SELECT n.name, n.port, n.fingerprint FROM nodes n JOIN endpoints e "
                              "ON e.id = n.endpoint_id WHERE e.name = ? ORDER BY n.id", (name,)).fetchall()
        finally:
            db.close()
        return [{"name": r[0], "port": r[1], "fingerprint": r[2]} for r in rows]


def _write_jks(path: Path, issued, alias: str) -> None:  # type: ignore[no-untyped-def]
    der = issued.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    certs = [c.public_bytes(serialization.Encoding.DER) for c in (issued.cert, *issued.chain)]
    jks.KeyStore.new("jks", [jks.PrivateKeyEntry.new(alias, certs, der, "pkcs8")]).save(str(path), PW)


def _files(*dirs: Path) -> dict[Path, bytes]:
    skip = ("logs", "run", "temp")
    return {p: p.read_bytes() for d in dirs for p in sorted(d.rglob("*"))
            if p.is_file() and not any(part in skip for part in p.relative_to(d).parts)}


@pytest.fixture(scope="module")
def fleet(sshd: SshdServer, test_ca, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:  # type: ignore[no-untyped-def]
    """The estate, set up through the library (fast); the tests drive it through the CLI."""
    if nginx_binary() is None or apache_binary() is None:
        pytest.fail("nginx and apache2 must be installed (scripts/bootstrap.sh)")
    root = tmp_path_factory.mktemp("fleet")
    home = root / "home"
    home.mkdir(mode=0o700)
    env = {**os.environ, "TLSGATE_HOME": str(home), "HOME": str(root), "TLSGATE_LEASE_TTL": "5",
           "TLSGATE_LEASE_WAIT": "120"}
    env.pop("TLSGATE_MASTER_KEY", None)
    f = Fleet(root, env)
    f.ca = test_ca  # type: ignore[attr-defined]
    f.sshd = sshd  # type: ignore[attr-defined]
    # every certificate a test deploys to the web servers' beta.test blocks covers beta.test: an
    # install refuses a leaf that does not cover the names of the nodes it goes to (issue 14)
    f.old = test_ca.issue("old.test", "beta.test")  # type: ignore[attr-defined]
    f.other = test_ca.issue("other.test")  # type: ignore[attr-defined]
    f.keep = test_ca.issue("keep.test")  # type: ignore[attr-defined]
    ks = root / "ks"
    ks.mkdir()
    site = nginx_site(root / "nginx", test_ca)
    f.nginx_site = site  # type: ignore[attr-defined]
    nginx = NginxServer(site.prefix, site.config, site.pid_file, [site.http_port, site.tls_port, site.tls_port2])
    asite = apache_site(root / "apache", test_ca)
    f.apache_site = asite  # type: ignore[attr-defined]
    apache = ApacheServer(asite)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLSGATE_HOME", str(home))
        mp.setenv("HOME", str(root))
        mp.delenv("TLSGATE_MASTER_KEY", raising=False)
        registry.set_registry(None)
        gw = Gateway()
        try:
            gw.add_org("Acme")
            ssh = {"connection_type": "ssh", "host": sshd.host, "port": sshd.port, "user": "root",
                   "ssh_key_path": str(sshd.root_key.path)}
            f.ks = {}  # type: ignore[attr-defined]
            # half of each keystore type holds OLD (p12/jks next to a second entry), the rest OTHER
            for kind, count in (("p12", N_P12), ("jks", N_JKS), ("pem", N_PEM)):
                for i in range(count):
                    name = f"ks-{kind}-{i:02d}"
                    cert = f.old if i % 2 == 0 else f.other  # type: ignore[attr-defined]
                    path = ks / f"{name}.{kind}"
                    if kind == "p12":
                        path.write_bytes(cert.pfx(PW))
                    elif kind == "jks":
                        _write_jks(path, cert, "main")
                    else:
                        path.write_bytes(cert.cert_pem + cert.chain_pem + cert.key_pem)
                    opts = {"path": str(path), **({"store_password": PW} if kind != "pem" else {})}
                    gw.add_endpoint(kind, name=name, options=opts, **ssh)
                    gw.delegate(name, "Acme")
                    f.ks[name] = path  # type: ignore[attr-defined]
                    if len(f.ks) == 1:  # type: ignore[attr-defined]
                        gw.trust_host_key(name, gw.host_key(name)[2])
            keep = CertificateBundle.from_pem(f.keep.cert_pem, f.keep.key_pem, f.keep.chain_pem)  # type: ignore[attr-defined]
            for name in f.ks:  # type: ignore[attr-defined]
                if not name.startswith("ks-pem") and int(name[-2:]) % 2 == 0:
                    gw.install(name, keep)  # a second entry that must stay as it is
            nginx.start()
            apache.start()
            gw.add_endpoint("nginx", name="web-nginx", connection_type="local",
                            options={"nginx_config_path": str(site.config), "certs_dir": str(site.prefix / "tlsgate-certs")})
            gw.add_endpoint("apache", name="web-apache", connection_type="local",
                            options={"apachectl_path": str(asite.apachectl), "certs_dir": str(asite.root / "tlsgate-certs")})
            old = CertificateBundle.from_pem(f.old.cert_pem, f.old.key_pem, f.old.chain_pem)  # type: ignore[attr-defined]
            for name in ("web-nginx", "web-apache"):
                gw.delegate(name, "Acme")
                gw.install(name, old, nodes=["beta.test"])
        finally:
            gw.close()
            registry.set_registry(None)
    try:
        yield f
    finally:
        nginx.stop()
        apache.stop()


def _served(host: str, port: int, sni: str) -> str | None:
    return try_served_fingerprint(host, port, sni)


def test_deploy_replaces_exactly_the_nodes_that_served_old(fleet: Fleet, tmp_path: Path) -> None:
    f = fleet
    summary = f.ok("tls", "discover", "--all")
    assert "30 unchanged" in summary.stdout or "changed" in summary.stdout
    old_fp, new = f.old.fingerprint, f.ca.issue("old.test", "new.test", "beta.test")  # type: ignore[attr-defined]
    before_nodes = {name: f.nodes(name) for name in (*f.ks, "web-nginx", "web-apache")}  # type: ignore[attr-defined]
    expected = {name for name, ns in before_nodes.items() if any(n["fingerprint"] == old_fp for n in ns)}
    assert len(expected) == N_P12 // 2 + N_JKS // 2 + N_PEM // 2 + 2
    site, asite = f.nginx_site, f.apache_site  # type: ignore[attr-defined]
    files_before = _files(f.root / "ks", site.prefix, asite.root)
    served_before = {(s, port): _served("127.0.0.1", port, s) for s in ("alpha.test", "gamma.test")
                     for port in (site.tls_port, asite.tls_port)}

    crt, key, chain = new.write(tmp_path, "new")
    colons = ":".join(old_fp[i:i + 2] for i in range(0, 64, 2)).upper()  # fingerprint with colons
    job = f.js("cert", "deploy", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
               "--replaces", colons, "--parallel", "8")
    assert job["state"] == "done", job  # type: ignore[index]
    items = {i["endpoint"]: i for i in job["items"]}  # type: ignore[index]
    assert set(items) == expected
    assert {i["state"] for i in items.values()} == {"changed"}
    assert all(i["before"] == old_fp and i["after"] == new.fingerprint for i in items.values())

    # every other node's certificate and every other file byte-identical
    files_after = _files(f.root / "ks", site.prefix, asite.root)
    for path, data in files_before.items():
        changed_ks = path.parent == f.root / "ks" and path.stem in expected
        web_edit = path.suffix == ".conf" and ("beta" in path.name)
        if path.parent.name == "tlsgate-certs" and old_fp[:12] in path.name:
            # tlsgate's own pair of the old certificate, referenced by no configuration any more:
            # removed after the verified install (issue 14 item 6)
            assert path not in files_after, f"{path} left behind"
        elif not changed_ks and not web_edit:
            assert files_after.get(path) == data, f"{path} changed"
    for (s, port), fp in served_before.items():
        assert _served("127.0.0.1", port, s) == fp
    for port in (site.tls_port, asite.tls_port):
        assert _served("127.0.0.1", port, "beta.test") == new.fingerprint
    for name in expected:
        after = {(n["name"], n["port"]): n["fingerprint"] for n in f.nodes(name)}
        before = {(n["name"], n["port"]): n["fingerprint"] for n in before_nodes[name]}
        for k, fp in before.items():
            if fp == old_fp:
                assert new.fingerprint in after.values()
            else:
                assert after.get(k) == fp, (name, k)  # the keep entry, alpha, gamma: untouched

    cli_nodes = f.js("tls", "nodes", "web-nginx")
    assert sorted((n["name"], n["port"], n["fingerprint"]) for n in cli_nodes) == sorted(
        (n["name"], n["port"], n["fingerprint"]) for n in f.nodes("web-nginx"))
    verify = f.js("tls", "verify", "--all")
    rows = [c for i in verify["items"] for c in i["details"]["nodes"]]  # type: ignore[index]
    assert rows and all(c["result"] in ("ok", "not probed") for c in rows), rows
    served_new = {c["endpoint"] for c in rows if c["served"] == new.fingerprint}
    assert served_new == expected
    assert not any(c["served"] == old_fp for c in rows)
    listed = f.js("job", "list")
    assert [j["kind"] for j in listed][-2:] == ["deploy", "verify"]  # type: ignore[index]
    expiring = f.js("cert", "expiring", "--days", "400")
    new_rec = next(c for c in expiring if c["fingerprint"] == new.fingerprint)  # type: ignore[union-attr]
    assert {n["endpoint"] for n in new_rec["nodes"]} == expected
    shown = f.js("cert", "show", str(new_rec["id"]))
    assert shown["key_held"] and shown["names"] == ["old.test", "new.test", "beta.test"]  # type: ignore[index]
    # no selector: exit 2, never "all"
    none = f.tg("cert", "deploy", str(new_rec["id"]))
    assert none.returncode == 2 and "no endpoints selected: give --endpoint, --type, --org, --replaces or --all" in none.stderr


def test_injected_failures_max_failures_and_retry(fleet: Fleet, tmp_path: Path) -> None:
    f = fleet
    sshd: SshdServer = f.sshd  # type: ignore[attr-defined]
    old2, new2 = f.ca.issue("two.test", "beta.test"), f.ca.issue("two.test", "www.two.test", "beta.test")  # type: ignore[attr-defined]
    ks = f.root / "ks2"
    ks.mkdir()
    ssh = ["--connection_type", "ssh", "--host", sshd.host, "--user", "root", "--ssh_key_path",
           str(sshd.root_key.path)]
    fwd = Forwarder(sshd.port)
    fwd.start()
    flag = ks / "fail-flag"
    flag.touch()
    script = ks / "install.sh"
    script.write_text(f"#!/bin/sh\nif [ -e '{flag}' ]; then echo 'reload refused' >&2; exit 3; fi\nexit 0\n")
    script.chmod(0o755)
    f.ok("org", "add", "Lab")  # kept apart from Acme's endpoints that the other tests select
    for name in ("f-good1", "f-good2", "f-script", "f-unreach"):
        (ks / f"{name}.p12").write_bytes(old2.pfx(PW))
        port = str(fwd.port if name == "f-unreach" else sshd.port)
        extra = ["--install_script", str(script)] if name == "f-script" else []
        f.ok("tls", "add", "p12", "--name", name, *ssh, "--port", port, "--path", str(ks / f"{name}.p12"),
             "--store_password", PW, *extra)
        f.ok("tls", "delegate", name, "--org", "Lab")
    f.ok("tls", "trust", "f-unreach", "--yes")
    # a second real nginx whose configuration test will fail
    site = nginx_site(f.root / "nginx2", f.ca)  # type: ignore[attr-defined]
    nginx = NginxServer(site.prefix, site.config, site.pid_file, [site.http_port, site.tls_port, site.tls_port2])
    nginx.start()
    try:
        f.ok("tls", "add", "nginx", "--name", "f-nginx", "--connection_type", "local",
             "--nginx_config_path", str(site.config), "--certs_dir", str(site.prefix / "tlsgate-certs"))
        f.ok("tls", "delegate", "f-nginx", "--org", "Lab")
        oc, okey, och = old2.write(tmp_path, "old2")
        f.ok("tls", "install", "f-nginx", "--cert", str(oc), "--key", str(okey), "--chain", str(och),
             "--node", "beta.test")
        f.ok("tls", "discover", "--endpoint", "f-good1", "--endpoint", "f-good2", "--endpoint", "f-script",
             "--endpoint", "f-unreach", "--endpoint", "f-nginx")
        broken = site.prefix / "conf.d" / "30-wip.conf"
        broken.write_text("server {\n    listen 127.0.0.1:1 ssl;\n")  # unfinished: nginx -t refuses it
        fwd.stop()
        nginx_files = _files(site.prefix)
        unreach_bytes = (ks / "f-unreach.p12").read_bytes()

        nc, nk, nch = new2.write(tmp_path, "new2")
        job = f.js("cert", "deploy", "--cert", str(nc), "--key", str(nk), "--chain", str(nch),
                   "--replaces", old2.fingerprint, "--parallel", "4", code=1)
        items = {i["endpoint"]: i for i in job["items"]}  # type: ignore[index]
        assert set(items) == {"f-good1", "f-good2", "f-script", "f-unreach", "f-nginx"}
        assert items["f-good1"]["state"] == items["f-good2"]["state"] == "changed"
        assert items["f-nginx"]["state"] == "failed" and "30-wip.conf" in items["f-nginx"]["reason"]
        assert items["f-unreach"]["state"] == "failed" and str(fwd.port) in items["f-unreach"]["reason"]
        assert items["f-script"]["state"] == "failed" and "exited 3" in items["f-script"]["reason"]
        assert _files(site.prefix) == nginx_files  # restored
        assert _served("127.0.0.1", site.tls_port, "beta.test") == old2.fingerprint
        assert (ks / "f-unreach.p12").read_bytes() == unreach_bytes
        shown = f.js("job", "show", str(job["id"]), code=0)  # type: ignore[index]
        assert shown["state"] == "failed"  # type: ignore[index]

        # --max-failures 1, one at a time: after the first failure nothing else starts
        limited = f.js("cert", "deploy", "--cert", str(nc), "--key", str(nk), "--chain", str(nch),
                       "--endpoint", "f-nginx", "--endpoint", "f-unreach", "--endpoint", "f-good1",
                       "--parallel", "1", "--max-failures", "1", code=1)
        states = {i["endpoint"]: i["state"] for i in limited["items"]}  # type: ignore[index]
        assert states == {"f-good1": "changed", "f-nginx": "failed", "f-unreach": "skipped"}

        # fix the causes; job retry finishes the first job
        broken.unlink()
        fwd.start()
        flag.unlink()
        retried = f.js("job", "retry", str(job["id"]))  # type: ignore[index]
        assert retried["state"] == "done", retried  # type: ignore[index]
        assert {i["endpoint"]: i["state"] for i in retried["items"]}["f-nginx"] == "changed"  # type: ignore[index]
        assert _served("127.0.0.1", site.tls_port, "beta.test") == new2.fingerprint
        assert any(n["fingerprint"] == new2.fingerprint for n in f.nodes("f-unreach"))
    finally:
        nginx.stop()
        fwd.stop()


def test_two_deploys_at_once_on_overlapping_selectors(fleet: Fleet, tmp_path: Path) -> None:
    f = fleet
    a, b = f.ca.issue("conc-a.test", "beta.test"), f.ca.issue("conc-b.test", "beta.test")  # type: ignore[attr-defined]
    pa, pb = a.write(tmp_path, "a"), b.write(tmp_path, "b")
    p12 = sorted(n for n in f.ks if n.startswith("ks-p12"))  # type: ignore[attr-defined]
    jks_names = sorted(n for n in f.ks if n.startswith("ks-jks"))  # type: ignore[attr-defined]
    sel_b = [x for n in (*p12[:4], *jks_names[:2]) for x in ("--endpoint", n)]
    procs = [
        subprocess.Popen([TLSGATE, "cert", "deploy", "--cert", str(pa[0]), "--key", str(pa[1]), "--chain", str(pa[2]),
                          "--type", "p12", "--org", "Acme", "--parallel", "4", "--json"], env=f.env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True),
        subprocess.Popen([TLSGATE, "cert", "deploy", "--cert", str(pb[0]), "--key", str(pb[1]), "--chain", str(pb[2]),
                          *sel_b, "--parallel", "4", "--json"], env=f.env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True),
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, out + err
    jobs = [json.loads(out) for out, _ in outs]
    assert all(j["state"] == "done" for j in jobs)
    # no lost update: every keystore both deploys touched holds both new entries, and reads back
    f.ok("tls", "discover", "--type", "p12", "--type", "jks", "--org", "Acme")
    for name in p12:
        fps = {n["fingerprint"] for n in f.nodes(name)}
        assert a.fingerprint in fps, name
        if name in p12[:4]:
            assert b.fingerprint in fps, name
    for name in jks_names[:2]:
        assert b.fingerprint in {n["fingerprint"] for n in f.nodes(name)}


def test_kill_9_of_a_running_deploy_then_retry(fleet: Fleet, tmp_path: Path) -> None:
    f = fleet
    sshd: SshdServer = f.sshd  # type: ignore[attr-defined]
    c = f.ca.issue("killed.test", "beta.test")  # type: ignore[attr-defined]
    ks = f.root / "ks3"
    ks.mkdir()
    flag, marker = ks / "slow-flag", ks / "running"
    flag.touch()
    script = ks / "slow.sh"
    script.write_text(f"#!/bin/sh\nif [ -e '{flag}' ]; then touch '{marker}'; sleep 60; fi\nexit 0\n")
    script.chmod(0o755)
    old = f.ca.issue("slow.test", "beta.test")  # type: ignore[attr-defined]
    path = ks / "a-slow.pem"
    path.write_bytes(old.cert_pem + old.key_pem)
    original = path.read_bytes()
    f.ok("tls", "add", "pem", "--name", "a-slow", "--connection_type", "ssh", "--host", sshd.host, "--port",
         str(sshd.port), "--user", "root", "--ssh_key_path", str(sshd.root_key.path), "--path", str(path),
         "--install_script", str(script))
    f.ok("tls", "delegate", "a-slow", "--org", "Acme")
    crt, key, chain = c.write(tmp_path, "c")
    targets = ["a-slow", "ks-pem-00", "ks-pem-01"]
    proc = subprocess.Popen([TLSGATE, "cert", "deploy", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
                             *[x for n in targets for x in ("--endpoint", n)], "--parallel", "1"],
                            env=f.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    data = path.read_bytes()
    assert data == original or c.cert_pem in data  # never half-written
    jobs = f.js("job", "list")
    job = jobs[-1]  # type: ignore[index]
    assert job["kind"] == "deploy" and job["state"] == "interrupted"
    shown = f.js("job", "show", str(job["id"]))
    assert {i["endpoint"]: i["state"] for i in shown["items"]} == dict.fromkeys(targets, "interrupted")  # type: ignore[index]
    flag.unlink()
    retried = f.js("job", "retry", str(job["id"]))
    assert retried["state"] == "done", retried  # type: ignore[index]
    for name in targets:
        assert c.fingerprint in {n["fingerprint"] for n in f.nodes(name)}, name
    assert path.read_bytes().startswith(c.cert_pem)  # fully new
    # the dead attempt (killed in the install script, the file already written) was the retry's
    # own: its originals were put back first, then one install ran to its end
    log = [e for e in f.js("log") if e["endpoint"] == "a-slow"]  # type: ignore[union-attr]
    assert [e["result"] for e in log if e["action"] == "tls install" and e["result"] != "started"] == ["ok"]
    restores = [e for e in log if e["action"] == "backup restore"]
    assert [(e["result"], e["details"]["retry_of"]) for e in restores] == [("restored", job["id"])]
    assert restores[0]["details"]["restored"] == [str(path)]
    assert "unfinished" not in {s["state"] for s in f.js("backup", "list")}  # type: ignore[union-attr]
