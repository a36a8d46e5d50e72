"""Discovery against a real httpd, httpd's dump parser, and the include walk."""

from __future__ import annotations

from pathlib import Path

import pytest
from tlsgate import OperationError
from tlsgate_apache import plugin
from tlsgate_apache.config import load
from tlsgate_apache.control import RunConfig, VHostEntry, parse_dump
from tlsgate_testing.connections import LocalConnection

from .conftest import local_endpoint


def test_discovered_nodes_exactly(apache_server) -> None:
    site, _server = apache_server
    nodes = plugin.discover_nodes(local_endpoint(site), LocalConnection())
    fp = {name: issued.fingerprint for name, issued in site.certs.items()}
    conf, sites = site.root / "conf.d", site.root / "sites enabled"
    inherited = "active; certificate inherited from the server level"
    expected = {
        ("plain.test", (), "http", "127.0.0.1", site.http_port, None, "active", f"{conf}/00-plain.conf:2"),
        ("alpha.test", ("www.alpha.test",), "https", "127.0.0.1", site.tls_port, fp["alpha.test"], "active",
         f"{conf}/10-alpha.conf:1"),
        ("beta.test", (), "https", "127.0.0.1", site.tls_port, fp["beta.test"], "active", f"{conf}/20-beta.conf:1"),
        ("gamma.test", (), "https", "127.0.0.1", site.tls_port, fp["fallback"], inherited, f"{sites}/gamma.conf:1"),
        ("gamma.test", (), "https", "127.0.0.1", site.tls_port2, fp["fallback"], inherited, f"{sites}/gamma.conf:1"),
    }
    if site.ipv6_port:
        expected.add(("six.test", (), "https", "::1", site.ipv6_port, fp["fallback"], inherited, f"{sites}/ipv6.conf:1"))
    got = {(n.name, n.alias, n.protocol, n.ip, n.port, n.fingerprint, n.state, n.locator) for n in nodes}
    assert got == expected
    assert len(nodes) == len(expected)
    alpha = next(n for n in nodes if n.name == "alpha.test")
    assert alpha.subject == "CN=alpha.test" and alpha.vendor == "Apache" and alpha.certificate is not None


def test_debian_apache2ctl_sees_the_same_nodes(apache_server) -> None:
    """Debian's apache2ctl (sources envvars, adds -d) and the plain wrapper agree."""
    site, _server = apache_server
    plain = plugin.discover_nodes(local_endpoint(site), LocalConnection())
    debian = plugin.discover_nodes(local_endpoint(site, ctl="apache2ctl"), LocalConnection())
    assert [n.to_json() for n in debian] == [n.to_json() for n in plain]


def test_stopped_server_is_discovered_from_files(apache_server) -> None:
    site, server = apache_server
    server.stop()
    nodes = plugin.discover_nodes(local_endpoint(site), LocalConnection())
    beta = next(n for n in nodes if n.name == "beta.test")
    assert beta.fingerprint == site.certs["beta.test"].fingerprint
    assert beta.state == "active; not reachable, certificate read from its file"


def test_wrong_apachectl_is_a_clear_error(apache_server, tmp_path: Path) -> None:
    site, _server = apache_server
    endpoint = local_endpoint(site)
    bad = type(endpoint)(name="web", type="apache", connection=endpoint.connection,
                         options=plugin.ApacheOptions(apachectl_path=str(tmp_path / "nope")))
    # the command that ran is named (not "-S", which tlsgate does not run)
    with pytest.raises(OperationError, match="nope -t -D DUMP_VHOSTS -D DUMP_RUN_CFG -D DUMP_INCLUDES -D DUMP_MODULES failed"):
        plugin.discover_nodes(bad, LocalConnection())


DUMP = """\
Included configuration files:
  (*) /etc/httpd/conf/httpd.conf
    (12) /etc/httpd/conf.d/ssl.conf
      (3) /etc/httpd/conf.d/snippets/a b.conf
VirtualHost configuration:
*:443                  is a NameVirtualHost
         default server www.example.com (/etc/httpd/conf.d/ssl.conf:5)
         port 443 namevhost www.example.com (/etc/httpd/conf.d/ssl.conf:5)
                 alias example.com
                 wild alias *.example.com
         port 443 namevhost other.example (/etc/httpd/conf.d/ssl.conf:20)
[::1]:8443             six.example (/etc/httpd/conf.d/six.conf:1)
_default_:8080         fallback.example (/etc/httpd/conf.d/default.conf:2)
ServerRoot: "/etc/httpd"
Main DocumentRoot: "/var/www/html"
Main ErrorLog: "/etc/httpd/logs/error_log"
Mutex default: dir="/run/httpd/" mechanism=default
PidFile: "run/httpd.pid"
Define: DUMP_VHOSTS
Define: DUMP_RUN_CFG
Define: SSL
Define: CERTDIR=/etc/pki/tls
User: name="apache" id=48
Loaded Modules:
 core_module (static)
 ssl_module (shared)
"""


def test_parse_dump() -> None:
    run = parse_dump(DUMP)
    assert run.server_root == "/etc/httpd" and run.pid_file == "run/httpd.pid"
    assert run.main_file == "/etc/httpd/conf/httpd.conf"
    assert run.includes == {"/etc/httpd/conf/httpd.conf", "/etc/httpd/conf.d/ssl.conf",
                            "/etc/httpd/conf.d/snippets/a b.conf"}
    assert run.defines == {"SSL": "", "CERTDIR": "/etc/pki/tls"}
    assert run.modules == {"core_module", "ssl_module"}
    assert run.error_log == "/etc/httpd/logs/error_log"
    assert run.vhosts == [
        VHostEntry("*", 443, "www.example.com", "/etc/httpd/conf.d/ssl.conf", 5,
                   ("example.com", "*.example.com"), default=True),
        VHostEntry("*", 443, "other.example", "/etc/httpd/conf.d/ssl.conf", 20),
        VHostEntry("::1", 8443, "six.example", "/etc/httpd/conf.d/six.conf", 1, default=True),
        VHostEntry("_default_", 8080, "fallback.example", "/etc/httpd/conf.d/default.conf", 2, default=True),
    ]


def test_include_walk_follows_httpd_rules(tmp_path: Path) -> None:
    """Globs, directories and relative paths against ServerRoot; IfModule (by id and by file
    name, negated) and IfDefine; only files httpd itself listed are read."""
    root = tmp_path / "srv root"
    (root / "conf.d").mkdir(parents=True)
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "httpd.conf").write_text(
        f"ServerRoot \"{root}\"\n"
        "# Include nothing.conf  (a comment)\n"
        "<IfModule mod_ssl.c>\n  SSLEngine on\n  SSLCertificateFile \\\n    \"certs/main cert.pem\"\n</IfModule>\n"
        "<IfModule !ssl_module>\n  SSLCertificateFile never.pem\n</IfModule>\n"
        "<IfDefine !SSL>\n  Include never/*.conf\n</IfDefine>\n"
        "<IfDefine SSL>\n  IncludeOptional conf.d/*.conf\n</IfDefine>\n"
        "Include dir\n"
        "Include ${CONF}/late.conf\n"
    )
    (root / "conf.d" / "a.conf").write_text(
        "<VirtualHost *:443>\n  ServerName a\n  Include snippets/ssl.conf\n</VirtualHost>\n"
    )
    (root / "conf.d" / "b.conf").write_text("<VirtualHost *:443>\n  ServerName b\n  SSLEngine off\n</VirtualHost>\n")
    (root / "conf.d" / "skip.conf").write_text("<VirtualHost *:80>\n</VirtualHost>\n")  # httpd did not list it
    (root / "snippets").mkdir()
    (root / "snippets" / "ssl.conf").write_text("SSLCertificateFile 'x y.pem'\nSSLCertificateKeyFile x.key\n")
    (root / "dir" / "one.conf").write_text("SSLCertificateKeyFile main.key\n")
    (root / "dir" / "sub" / "two").write_text("<VirtualHost 127.0.0.2:443>\nSSLEngine optional\n</VirtualHost>\n")
    (root / "late.conf").write_text("SSLCertificateChainFile chain.pem\n")
    r = str(root)
    listed = {f"{r}/httpd.conf", f"{r}/conf.d/a.conf", f"{r}/conf.d/b.conf", f"{r}/snippets/ssl.conf",
              f"{r}/dir/one.conf", f"{r}/dir/sub/two", f"{r}/late.conf"}
    run = RunConfig(server_root=r, main_file=f"{r}/httpd.conf", defines={"SSL": "", "CONF": r},
                    modules={"ssl_module", "core_module"}, includes=listed)
    config = load(LocalConnection(), run)
    assert set(config.files) == listed
    assert [(d.name, d.args) for d in config.server_level] == [
        ("SSLEngine", ["on"]), ("SSLCertificateFile", ["certs/main cert.pem"]),
        ("SSLCertificateKeyFile", ["main.key"]), ("SSLCertificateChainFile", ["chain.pem"]),
    ]
    assert config.server_ssl_engine
    vhosts = {(Path(f).name, line): s for (f, line), s in config.vhosts.items()}
    assert set(vhosts) == {("a.conf", 1), ("b.conf", 1), ("two", 1)}
    assert [(d.name, d.args, Path(d.file).name) for d in vhosts[("a.conf", 1)].directives] == [
        ("SSLCertificateFile", ["x y.pem"], "ssl.conf"), ("SSLCertificateKeyFile", ["x.key"], "ssl.conf"),
    ]
    assert vhosts[("a.conf", 1)].ssl_engine is None
    assert vhosts[("b.conf", 1)].ssl_engine is False
    assert vhosts[("two", 1)].ssl_engine is True
    assert config.resolve(LocalConnection(), "certs/main cert.pem") == f"{r}/certs/main cert.pem"
    assert config.resolve(LocalConnection(), "${NOPE}/x") is None


def test_a_vhost_whose_names_an_earlier_one_claims_is_not_probed(apache_server) -> None:
    """www.alpha.test is alpha's alias: httpd answers that SNI name with alpha, so the later
    vhost named www.alpha.test keeps the certificate its files name, marked as unreachable."""
    site, server = apache_server
    (site.root / "conf.d" / "25-shadowed.conf").write_text(
        f"<VirtualHost 127.0.0.1:{site.tls_port}>\n    ServerName WWW.alpha.test\n    SSLEngine on\n"
        "    SSLCertificateFile certs/beta.test.crt\n    SSLCertificateKeyFile certs/beta.test.key\n</VirtualHost>\n"
    )
    assert server.ctl("-k", "graceful").returncode == 0
    nodes = plugin.discover_nodes(local_endpoint(site), LocalConnection())
    shadowed = next(n for n in nodes if n.name.lower() == "www.alpha.test")
    assert shadowed.fingerprint == site.certs["beta.test"].fingerprint
    assert shadowed.state == "active; its names are answered by an earlier vhost on this address"
    alpha = next(n for n in nodes if n.name == "alpha.test")
    assert alpha.state == "active"
