"""Discovery against a real nginx (started by the fixture on 127.0.0.1 free ports)."""

from __future__ import annotations

from nginx_helpers import local_endpoint
from tlsgate_nginx import plugin
from tlsgate_nginx.config import load, parse_listen
from tlsgate_nginx.lexer import parse
from tlsgate_testing.connections import LocalConnection
from tlsgate_testing.fake import FakeConnection


def summary(nodes):
    return sorted(
        (n.name, n.alias, n.protocol, n.ip, n.port, n.fingerprint, n.state, n.locator.rsplit("/", 2)[-2:])
        for n in nodes
    )


def test_discovered_nodes_exactly(nginx_server) -> None:
    site, _server = nginx_server
    nodes = plugin.discover_nodes(local_endpoint(site.config), LocalConnection())
    fp = {name: issued.fingerprint for name, issued in site.certs.items()}
    inherited = "active; certificate inherited from http"
    assert summary(nodes) == sorted([
        ("plain.test", (), "http", "127.0.0.1", site.http_port, None, "active", ["conf.d", "00-plain.conf:server[0]"]),
        ("alpha.test", ("www.alpha.test",), "https", "127.0.0.1", site.tls_port, fp["alpha.test"], "active",
         ["conf.d", "10-alpha.conf:server[0]"]),
        ("beta.test", (), "https", "127.0.0.1", site.tls_port, fp["beta.test"], "active",
         ["conf.d", "20-beta.conf:server[0]"]),
        ("gamma.test", (), "https", "127.0.0.1", site.tls_port, fp["fallback"], inherited,
         ["sites enabled", "gamma.conf:server[0]"]),
        ("gamma.test", (), "https", "127.0.0.1", site.tls_port2, fp["fallback"], inherited,
         ["sites enabled", "gamma.conf:server[0]"]),
    ])
    beta = next(n for n in nodes if n.name == "beta.test")
    assert beta.subject == "CN=beta.test" and beta.not_after is not None and beta.certificate


def test_handshake_overrides_files_when_nginx_was_not_reloaded(nginx_server, test_ca) -> None:
    site, _server = nginx_server
    newer = test_ca.issue("beta.test")
    (site.prefix / "certs" / "beta.test.crt").write_bytes(newer.cert_pem)  # not reloaded yet
    nodes = plugin.discover_nodes(local_endpoint(site.config), LocalConnection())
    beta = next(n for n in nodes if n.name == "beta.test")
    assert beta.fingerprint == site.certs["beta.test"].fingerprint
    assert "serves a certificate other than its files" in beta.state


def test_unreachable_nodes_keep_what_files_say(tmp_path, test_ca) -> None:
    from nginx_peer import nginx_site

    site = nginx_site(tmp_path / "n", test_ca)  # not started
    nodes = plugin.discover_nodes(local_endpoint(site.config), LocalConnection())
    alpha = next(n for n in nodes if n.name == "alpha.test")
    assert alpha.fingerprint == site.certs["alpha.test"].fingerprint
    assert "not reachable" in alpha.state


def test_listen_forms() -> None:
    forms = {
        "listen 443 ssl;": ("0.0.0.0", 443, True, False, False),
        "listen *:8443 ssl http2 default_server;": ("0.0.0.0", 8443, True, False, True),
        "listen [::]:443 ssl;": ("::", 443, True, False, False),
        "listen [::1];": ("::1", 80, False, False, False),
        "listen 127.0.0.1;": ("127.0.0.1", 80, False, False, False),
        "listen example.org:81;": ("example.org", 81, False, False, False),
        "listen 443 quic reuseport;": ("0.0.0.0", 443, False, True, False),
    }
    for text, want in forms.items():
        x = parse_listen(parse(text.encode(), "t")[0])
        assert (x.ip, x.port, x.ssl, x.quic, x.default_server) == want, text
    for text, want in {"listen unix:/run/x.sock;": ("unix:/run/x.sock", None, False, False, False),
                       "listen unix:/run/y.sock ssl default_server;": ("unix:/run/y.sock", None, True, False, True)}.items():
        x = parse_listen(parse(text.encode(), "t")[0])
        assert (x.ip, x.port, x.ssl, x.quic, x.default_server) == want, text


def test_variables_inheritance_quic_ssl_on_and_shared_addresses() -> None:
    conf = b"""
events {}
http {
    ssl_certificate /c/http.pem;
    ssl_certificate_key /c/http.key;
    server { listen 443 ssl; listen 443 quic; server_name a.test; ssl_certificate $ssl_server_name.pem;
             ssl_certificate_key $ssl_server_name.key; }
    server { listen 443; server_name b.test c.test; }          # ssl because a.test made *:443 TLS
    server { listen 8443; ssl on; server_name ""; }           # legacy ssl on, no name
    server { listen unix:/run/x.sock; server_name u.test; }    # plain http on a socket: not shown
    server { listen unix:/run/y.sock ssl; server_name v.test; ssl_certificate /c/v.pem; }
    server { server_name d.test; }                            # default listen *:80
}
stream { server { listen 12345 ssl; ssl_certificate /c/s.pem; } }
"""
    conn = FakeConnection({"/etc/nginx/nginx.conf": conf, "/c/http.pem": b"not pem"})
    from tlsgate_nginx.discovery import build_nodes

    config = load(conn, "/etc/nginx/nginx.conf")
    nodes = [n for n, _ in build_nodes(config, conn)]
    got = [(n.name, n.alias, n.protocol, n.ip, n.port, n.state) for n in nodes]
    assert got == [
        ("a.test", (), "https", "0.0.0.0", 443,
         "active; certificate path '$ssl_server_name.pem' uses variables, resolved per handshake"),
        ("b.test", ("c.test",), "https", "0.0.0.0", 443,
         "active; /c/http.pem: no PEM certificate; certificate inherited from http"),
        ("_", (), "https", "0.0.0.0", 8443,
         "active; /c/http.pem: no PEM certificate; certificate inherited from http"),
        ("v.test", (), "https", "unix:/run/y.sock", None, "active; cannot read /c/v.pem: localhost: /c/v.pem: no such file"),
        ("d.test", (), "http", "0.0.0.0", 80, "active"),
    ]


def test_relative_and_glob_includes_over_a_connection() -> None:
    files = {
        "/opt/ng/conf/main.conf": b"http { include site?.conf; include /opt/ng/extra/*; include none/*.conf; }",
        "/opt/ng/conf/site1.conf": b"server { listen 1; server_name one; }",
        "/opt/ng/conf/site2.conf": b"server { listen 2; server_name two; include snip.inc; }",
        "/opt/ng/conf/snip.inc": b"server_name two-alias;",
        "/opt/ng/extra/z": b"server { listen 3; server_name three; }",
        "/opt/ng/extra/.hidden": b"server { listen 4; server_name hidden; }",
    }
    config = load(FakeConnection(files), "/opt/ng/conf/main.conf")
    assert [(s.names, s.listens[0].port) for s in config.servers] == [
        (["one"], 1), (["two", "two-alias"], 2), (["three"], 3)
    ]


def test_wildcard_names_are_probed_and_unnamed_blocks_are_not(nginx_server, test_ca) -> None:
    site, server = nginx_server
    wild = test_ca.issue("*.wild.test")
    (site.prefix / "certs" / "wild.crt").write_bytes(wild.cert_pem)
    (site.prefix / "certs" / "wild.key").write_bytes(wild.key_pem)
    (site.prefix / "conf.d" / "40-more.conf").write_text(
        f"""server {{ listen 127.0.0.1:{site.tls_port} ssl; server_name *.wild.test;
    ssl_certificate certs/wild.crt; ssl_certificate_key certs/wild.key; }}
server {{ listen 127.0.0.1:{site.tls_port} ssl; server_name _; }}   # not the default: no handshake reaches it
"""
    )
    server.reload()
    from tlsgate.plugin import Target, expect_served

    expect_served([Target("127.0.0.1", site.tls_port, "x.wild.test")], wild.fingerprint, deadline=10)
    nodes = {n.name: n for n in plugin.discover_nodes(local_endpoint(site.config), LocalConnection())}
    assert nodes["*.wild.test"].fingerprint == wild.fingerprint and nodes["*.wild.test"].state == "active"
    assert nodes["_"].fingerprint == site.certs["fallback"].fingerprint  # from its (inherited) file
    assert "not probed" in nodes["_"].state
