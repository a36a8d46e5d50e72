"""Layouts real operators' nginx servers have, driven through the ``tlsgate`` command with stdout
piped, as a script runs it: one server block listening on plain http and https, an RSA and an
ECDSA pair in one block, a ``proxy_protocol`` listen behind a load balancer, a wildcard name,
a ``.example.org`` name (the domain and every name under it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from nginx_peer import NginxServer, _main_conf, nginx_binary
from tlsgate.plugin import try_served_fingerprint
from tlsgate_testing.certs import Issued, TestCA
from tlsgate_testing.cli import cli_runner, tree_snapshot
from tlsgate_testing.daemons import running
from tlsgate_testing.fixtures_core import free_port

pytestmark = pytest.mark.slow



@attrs.frozen
class Site:
    prefix: Path
    config: Path
    http: int
    tls: int
    proxied: int
    certs: dict[str, Issued]

    def snapshot(self) -> dict[Path, bytes]:
        return tree_snapshot(self.prefix, skip=("logs", "temp"))


def _write_site(root: Path, ca: TestCA) -> Site:
    for d in ("logs", "sites", "certs", *(f"temp/{t}" for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))):
        (root / d).mkdir(parents=True, exist_ok=True)
    ports: list[int] = []
    while len(ports) < 3:
        if (p := free_port()) not in ports:
            ports.append(p)
    http, tls, proxied = ports
    certs = {
        "web": ca.issue("web.test", "www.web.test"),
        "dual-rsa": ca.issue("dual.test", key_type="rsa"),
        "dual-ec": ca.issue("dual.test"),
        "lb": ca.issue("lb.test"),
        "wild": ca.issue("*.wild.test"),
        "dot": ca.issue("dot.test", "*.dot.test"),
    }
    for name, issued in certs.items():
        (root / "certs" / f"{name}.crt").write_bytes(issued.cert_pem + issued.chain_pem)
        (root / "certs" / f"{name}.key").write_bytes(issued.key_pem)
    (root / "nginx.conf").write_text(_main_conf(root, "    ssl_session_cache off;\n    include sites/*.conf;\n"))
    (root / "sites" / "web.conf").write_text(f"""# the usual shape: one block for http and https
server {{
    listen 127.0.0.1:{http};
    listen 127.0.0.1:{tls} ssl default_server;
    server_name web.test www.web.test;
    ssl_certificate certs/web.crt;
    ssl_certificate_key certs/web.key;
}}
""")
    (root / "sites" / "dual.conf").write_text(f"""server {{
    listen 127.0.0.1:{tls} ssl;
    server_name dual.test;
    # an RSA pair for old clients, an ECDSA pair for the rest
    ssl_certificate certs/dual-rsa.crt;
    ssl_certificate_key certs/dual-rsa.key;
    ssl_certificate certs/dual-ec.crt;
    ssl_certificate_key certs/dual-ec.key;
}}
""")
    (root / "sites" / "lb.conf").write_text(f"""server {{
    # behind a load balancer that speaks the PROXY protocol
    listen 127.0.0.1:{proxied} ssl proxy_protocol;
    server_name lb.test;
    ssl_certificate certs/lb.crt;
    ssl_certificate_key certs/lb.key;
}}
""")
    (root / "sites" / "wild.conf").write_text(f"""server {{
    listen 127.0.0.1:{tls} ssl;
    server_name *.wild.test;
    ssl_certificate certs/wild.crt;
    ssl_certificate_key certs/wild.key;
}}
""")
    (root / "sites" / "dot.conf").write_text(f"""server {{
    listen 127.0.0.1:{tls} ssl;
    server_name .dot.test;   # dot.test and every name under it
    ssl_certificate certs/dot.crt;
    ssl_certificate_key certs/dot.key;
}}
""")
    return Site(root, root / "nginx.conf", http, tls, proxied, certs)


@pytest.fixture
def site(tmp_path: Path, test_ca: TestCA) -> Iterator[Site]:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    s = _write_site(tmp_path / "nginx", test_ca)
    server = NginxServer(s.prefix, s.config, s.prefix / "logs" / "nginx.pid", [s.http, s.tls, s.proxied])
    with running(server):
        yield s


@pytest.fixture
def cli(tmp_path: Path):
    return cli_runner(tmp_path, timeout=180)


@pytest.fixture
def web(site: Site, cli) -> Site:
    """The site as an endpoint 'web', delegated and discovered."""
    assert cli("tls", "add", "nginx", "--name", "web", "--connection_type", "local",
               "--nginx_config_path", str(site.config)).returncode == 0
    assert cli("org", "add", "acme").returncode == 0
    assert cli("tls", "delegate", "web", "--org", "acme").returncode == 0
    found = cli("tls", "discover", "web")
    assert found.returncode == 0, found.stderr
    return site


def files_for(tmp_path: Path, issued: Issued, stem: str) -> list[str]:
    crt, key, chain = issued.write(tmp_path / "in", stem)
    return ["--cert", str(crt), "--key", str(key), "--chain", str(chain)]


def changed_files(before: dict[Path, bytes], after: dict[Path, bytes]) -> list[str]:
    return sorted(p.name for p in before if before[p] != after.get(p))


def test_node_of_a_block_that_also_listens_on_plain_http(web: Site, cli, test_ca: TestCA, tmp_path: Path) -> None:
    nodes = json.loads(cli("tls", "nodes", "web", "--json").stdout)
    assert sorted((n["protocol"], n["port"]) for n in nodes if n["name"] == "web.test") == sorted(
        [("http", web.http), ("https", web.tls)])
    new = test_ca.issue("web.test", "www.web.test")
    before = web.snapshot()
    done = cli("tls", "install", "web", *files_for(tmp_path, new, "web"), "--node", "web.test")
    assert done.returncode == 0, done.stderr
    assert try_served_fingerprint("127.0.0.1", web.tls, "web.test") == new.fingerprint
    assert changed_files(before, web.snapshot()) == ["web.conf"]
    # a name that is plain http everywhere is still refused, naming the option
    (web.prefix / "sites" / "plain.conf").write_text(
        f"server {{\n    listen 127.0.0.1:{web.http};\n    server_name plain.test;\n}}\n")
    assert cli("tls", "discover", "web").returncode == 0
    refused = cli("tls", "install", "web", *files_for(tmp_path, test_ca.issue("plain.test"), "plain"),
                  "--node", "plain.test", "--apply-pending")
    assert refused.returncode == 2
    assert "--node" in refused.stderr and "plain http" in refused.stderr


def test_rsa_and_ecdsa_pairs_in_one_block(web: Site, cli, test_ca: TestCA, tmp_path: Path) -> None:
    rsa, ec = web.certs["dual-rsa"], web.certs["dual-ec"]
    # discovery reports the first pair and checks it by a handshake that asks for its key type
    dual = [n for n in json.loads(cli("tls", "nodes", "web", "--json").stdout) if n["name"] == "dual.test"]
    assert [n["fingerprint"] for n in dual] == [rsa.fingerprint]
    assert "reload pending" not in dual[0]["state"] and "2 certificate pairs" in dual[0]["state"]
    current = {"rsa": rsa.fingerprint, "ec": ec.fingerprint}
    for kind in ("rsa", "ec"):
        new = test_ca.issue("dual.test", key_type=kind)
        before = web.snapshot()
        done = cli("tls", "install", "web", *files_for(tmp_path, new, f"dual-{kind}"), "--node", "dual.test")
        assert done.returncode == 0, done.stderr
        assert "verified" in done.stdout
        current[kind] = new.fingerprint
        # the pair of that key type is replaced; the other one is untouched and still served
        assert {k: try_served_fingerprint("127.0.0.1", web.tls, "dual.test", key_kind=k) for k in current} == current
        assert changed_files(before, web.snapshot()) == ["dual.conf"]
    text = (web.prefix / "sites" / "dual.conf").read_text()
    assert text.count("ssl_certificate ") == 2 and text.count("ssl_certificate_key ") == 2


def test_proxy_protocol_listen_is_discovered_and_verified(web: Site, cli, test_ca: TestCA, tmp_path: Path) -> None:
    lb = [n for n in json.loads(cli("tls", "nodes", "web", "--json").stdout) if n["name"] == "lb.test"]
    assert [(n["port"], n["fingerprint"]) for n in lb] == [(web.proxied, web.certs["lb"].fingerprint)]
    assert "not reachable" not in lb[0]["state"]
    new = test_ca.issue("lb.test")
    done = cli("tls", "install", "web", *files_for(tmp_path, new, "lb"))
    assert done.returncode == 0, done.stderr
    assert "verified by TLS handshake" in done.stdout
    assert try_served_fingerprint("127.0.0.1", web.proxied, "lb.test", proxy_protocol=True) == new.fingerprint
    # a plain handshake gets nothing there: the PROXY header is what made it answer
    assert try_served_fingerprint("127.0.0.1", web.proxied, "lb.test") is None
    assert cli("tls", "discover", "web").returncode == 0
    checked = cli("tls", "verify", "--endpoint", "web", "--json")
    rows = [r for item in json.loads(checked.stdout)["items"] for r in item["details"]["nodes"]
            if r["node"] == "lb.test"]
    assert [r["result"] for r in rows] == ["ok"], checked.stdout


def test_verify_reaches_every_node_as_discovery_did(web: Site, cli) -> None:
    checked = cli("tls", "verify", "--endpoint", "web", "--json")
    rows = {(r["node"], r["port"]): r["result"] for item in json.loads(checked.stdout)["items"]
            for r in item["details"]["nodes"] if r["protocol"] == "https"}
    # a wildcard name (SNI of a label under it), the RSA pair of an RSA+ECDSA block (a handshake
    # asking for RSA), the PROXY protocol listen (the header first)
    assert rows == {("web.test", web.tls): "ok", ("dual.test", web.tls): "ok", ("lb.test", web.proxied): "ok",
                    ("*.wild.test", web.tls): "ok", (".dot.test", web.tls): "ok"}, checked.stdout
    assert checked.returncode == 0


def test_leading_dot_server_name(web: Site, cli, test_ca: TestCA, tmp_path: Path) -> None:
    dot = [n for n in json.loads(cli("tls", "nodes", "web", "--json").stdout) if n["name"] == ".dot.test"]
    assert [(n["fingerprint"], n["state"]) for n in dot] == [(web.certs["dot"].fingerprint, "active")]
    # ".dot.test" answers dot.test itself too: a certificate for *.dot.test alone does not cover it
    before = web.snapshot()
    refused = cli("tls", "install", "web", *files_for(tmp_path, test_ca.issue("*.dot.test"), "star"),
                  "--node", ".dot.test")
    assert refused.returncode == 2 and "does not cover dot.test" in refused.stderr, refused.stderr
    assert web.snapshot() == before
    new = test_ca.issue("dot.test", "*.dot.test")
    done = cli("tls", "install", "web", *files_for(tmp_path, new, "dot"))
    assert done.returncode == 0, done.stderr
    assert "verified by TLS handshake" in done.stdout and ".dot.test" in done.stdout
    for name in ("dot.test", "www.dot.test"):
        assert try_served_fingerprint("127.0.0.1", web.tls, name) == new.fingerprint


def test_block_inheriting_two_pairs_keeps_the_other_one(web: Site, cli, test_ca: TestCA, tmp_path: Path) -> None:
    main = web.config.read_text().replace(
        "    include sites/*.conf;",
        "    ssl_certificate certs/dual-rsa.crt;\n    ssl_certificate_key certs/dual-rsa.key;\n"
        "    ssl_certificate certs/dual-ec.crt;\n    ssl_certificate_key certs/dual-ec.key;\n    include sites/*.conf;")
    web.config.write_text(main)
    (web.prefix / "sites" / "inherit.conf").write_text(
        f"server {{\n    listen 127.0.0.1:{web.tls} ssl;\n    server_name dual2.test;\n}}\n")
    assert cli("tls", "restart", "web").returncode == 0
    assert cli("tls", "discover", "web").returncode == 0
    rsa = web.certs["dual-rsa"].fingerprint
    node = next(n for n in json.loads(cli("tls", "nodes", "web", "--json").stdout) if n["name"] == "dual2.test")
    assert node["fingerprint"] == rsa and "pending" not in node["state"], node["state"]
    new = test_ca.issue("dual2.test")  # EC
    before = web.snapshot()
    done = cli("tls", "install", "web", *files_for(tmp_path, new, "dual2"))
    assert done.returncode == 0, done.stderr
    # the block got its own pairs: the new EC one, and the RSA one it inherited, kept
    assert try_served_fingerprint("127.0.0.1", web.tls, "dual2.test", key_kind="ec") == new.fingerprint
    assert try_served_fingerprint("127.0.0.1", web.tls, "dual2.test", key_kind="rsa") == rsa
    assert changed_files(before, web.snapshot()) == ["inherit.conf"]
    text = (web.prefix / "sites" / "inherit.conf").read_text()
    assert "ssl_certificate certs/dual-rsa.crt;" in text and text.count("ssl_certificate ") == 2


def test_block_on_a_unix_socket_is_discovered_installed_and_not_probed(web: Site, cli, test_ca: TestCA,
                                                                       tmp_path: Path) -> None:
    """A block a local proxy reaches over a socket (``listen unix:... ssl``) serves a certificate
    too: discovery shows it (not probed: no handshake reaches a socket), ``cert expiring`` and an
    install by name reach it, and verify says what it could not check instead of "ok"."""
    sock = web.prefix / "logs" / "tls.sock"
    old = test_ca.issue("sock.test")
    (web.prefix / "certs" / "sock.crt").write_bytes(old.cert_pem + old.chain_pem)
    (web.prefix / "certs" / "sock.key").write_bytes(old.key_pem)
    (web.prefix / "sites" / "sock.conf").write_text(
        f"server {{\n    listen unix:{sock} ssl;\n    server_name sock.test;\n"
        "    ssl_certificate certs/sock.crt;\n    ssl_certificate_key certs/sock.key;\n}\n")
    assert cli("tls", "restart", "web").returncode == 0
    assert cli("tls", "discover", "web").returncode == 0
    nodes = [n for n in json.loads(cli("tls", "nodes", "web", "--json").stdout) if n["name"] == "sock.test"]
    assert [(n["ip"], n["port"], n["protocol"], n["fingerprint"]) for n in nodes] == [
        (f"unix:{sock}", None, "https", old.fingerprint)], nodes
    assert "not probed: listens on a unix socket" in nodes[0]["state"]
    new = test_ca.issue("sock.test")
    before = web.snapshot()
    done = cli("tls", "install", "web", *files_for(tmp_path, new, "sock"))
    assert done.returncode == 0, done.stderr
    assert "not verified" in done.stdout and "verified by TLS handshake" not in done.stdout, done.stdout
    assert changed_files(before, web.snapshot()) == ["sock.conf"]
    node = next(n for n in json.loads(cli("tls", "nodes", "web", "--json").stdout) if n["name"] == "sock.test")
    assert node["fingerprint"] == new.fingerprint
    checked = cli("tls", "verify", "--endpoint", "web", "--json")
    rows = [r["result"] for item in json.loads(checked.stdout)["items"] for r in item["details"]["nodes"]
            if r["node"] == "sock.test"]
    assert rows == ["not probed"], checked.stdout
