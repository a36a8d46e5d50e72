"""nginx as Debian ships it: a throw-away copy of /etc/nginx (nginx.conf including
sites-enabled/*, the default site with its snakeoil snippet enabled, a second site in
sites-available symlinked from sites-enabled), on 127.0.0.1 high ports, started with the
Debian binary. Through the ``tlsgate`` command line, locally and over the real sshd (issue 14:
names coverage, pending changes)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from nginx_peer import NginxServer, nginx_binary
from tlsgate_testing.cli import ok, pem_files, settle, tg
from tlsgate_testing.fixtures_core import free_port
from tlsgate_testing.sshd import SshdServer

pytestmark = pytest.mark.slow

ETC = Path("/etc/nginx")




class Stock:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "etc" / "nginx"
        self.http, self.https = free_port(), free_port()


def build(root: Path, test_ca) -> Stock:  # type: ignore[no-untyped-def]
    s = Stock(root)
    shutil.copytree(ETC, s.conf, symlinks=True)
    for link in (s.conf / "sites-enabled").iterdir():  # the package's links are absolute: into the copy
        target = os.readlink(link)
        if target.startswith(f"{ETC}/"):
            link.unlink()
            link.symlink_to(s.conf / target[len(f"{ETC}/"):])
    for d in ("run", "log", "ssl"):
        (root / d).mkdir()
    (s.conf / "logs").mkdir()  # the test server's -e error log
    main = (s.conf / "nginx.conf").read_text().replace("/etc/nginx/", f"{s.conf}/")
    main = re.sub(r"(?m)^pid .*;$", f"pid {root}/run/nginx.pid;", main)
    main = main.replace("/var/log/nginx/", f"{root}/log/")
    (s.conf / "nginx.conf").write_text(main)
    # a snakeoil-like pair where the snippet expects Debian's
    snake = test_ca.issue("snakeoil.invalid")
    (root / "ssl" / "ssl-cert-snakeoil.pem").write_bytes(snake.cert_pem)
    key = root / "ssl" / "ssl-cert-snakeoil.key"
    key.write_bytes(snake.key_pem)
    key.chmod(0o600)
    snippet = (s.conf / "snippets" / "snakeoil.conf").read_text()
    snippet = snippet.replace("/etc/ssl/certs/", f"{root}/ssl/").replace("/etc/ssl/private/", f"{root}/ssl/")
    (s.conf / "snippets" / "snakeoil.conf").write_text(snippet)
    default = (s.conf / "sites-available" / "default").read_text()
    default = re.sub(r"(?m)^\s*listen \[::\]:80 default_server;\n", "", default)
    default = default.replace("listen 80 default_server;", f"listen 127.0.0.1:{s.http} default_server;")
    (s.conf / "sites-available" / "default").write_text(default)
    # the operator's TLS site: in sites-available, enabled by a symlink, its own pair
    alpha = test_ca.issue("alpha.test", "www.alpha.test")
    (root / "ssl" / "alpha.crt").write_bytes(alpha.cert_pem + alpha.chain_pem)
    (root / "ssl" / "alpha.key").write_bytes(alpha.key_pem)
    (s.conf / "sites-available" / "alpha").write_text(f"""server {{
\tlisten 127.0.0.1:{s.https} ssl default_server;
\tlisten [::1]:{s.https} ssl default_server;
\tserver_name alpha.test www.alpha.test;
\tssl_certificate {root}/ssl/alpha.crt;
\tssl_certificate_key {root}/ssl/alpha.key;
\troot /var/www/html;
}}
""")
    (s.conf / "sites-enabled" / "alpha").symlink_to(s.conf / "sites-available" / "alpha")
    return s


@pytest.fixture(scope="module")
def stock(tmp_path_factory: pytest.TempPathFactory, test_ca) -> Iterator[tuple[Stock, NginxServer]]:  # type: ignore[no-untyped-def]
    if nginx_binary() is None or not ETC.exists():
        pytest.fail("Debian's nginx package is required (scripts/bootstrap.sh installs it)")
    s = build(tmp_path_factory.mktemp("stock-nginx"), test_ca)
    server = NginxServer(s.conf, s.conf / "nginx.conf", s.root / "run" / "nginx.pid", [s.http, s.https])
    server.start()
    try:
        yield s, server
    finally:
        server.stop()


def served(port: int, sni: str) -> str | None:
    from tlsgate.probe import try_served_fingerprint

    return try_served_fingerprint("127.0.0.1", port, sni, timeout=5)



def flow(name: str, s: Stock, server: NginxServer, test_ca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ok("org", "add", "Acme")
    ok("tls", "delegate", name, "--org", "Acme")
    nodes = json.loads(ok("tls", "discover", name, "--json").stdout)
    assert ("alpha.test", "https", s.https) in {(n["name"], n["protocol"], n["port"]) for n in nodes}
    before = served(s.https, "alpha.test")
    settle()

    # 4: an alpha.test-only leaf on the block that also serves www.alpha.test: exit 2, named
    narrow = test_ca.issue("alpha.test")
    files = pem_files(tmp_path / f"{name}-narrow", narrow)
    refused = tg("tls", "install", name, *files, "--node", "alpha.test")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "www.alpha.test" in refused.stderr and "--allow_name_mismatch" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert served(s.https, "alpha.test") == before
    # on purpose: installed and served, but not called verified
    forced = ok("tls", "install", name, *files, "--node", "alpha.test", "--allow-name-mismatch")
    assert "verified by TLS handshake" not in forced.stdout and "www.alpha.test" in forced.stdout
    assert served(s.https, "www.alpha.test") == narrow.fingerprint
    # the fleet path (cert deploy) holds the same rule, with the same flag
    narrow2 = test_ca.issue("alpha.test")
    files = pem_files(tmp_path / f"{name}-narrow2", narrow2)
    job = tg("cert", "deploy", *files, "--endpoint", name)
    assert job.returncode == 1 and "www.alpha.test" in job.stdout + job.stderr, job.stdout + job.stderr
    assert served(s.https, "www.alpha.test") == narrow.fingerprint
    ok("cert", "deploy", *files, "--endpoint", name, "--allow_name_mismatch")
    assert served(s.https, "www.alpha.test") == narrow2.fingerprint

    # 1: someone's edit nginx has not loaded (a file in sites-available, read through the
    # sites-enabled symlink) is refused, naming the file; nothing changes
    settle()
    default = s.conf / "sites-available" / "default"
    original = default.read_bytes()
    default.write_bytes(original + b"\n# an edit not reloaded yet\n")
    good = test_ca.issue("alpha.test", "www.alpha.test")
    files = pem_files(tmp_path / f"{name}-good", good)
    workers = server.workers()
    pending = tg("tls", "install", name, *files, "--node", "alpha.test")
    assert pending.returncode == 1, pending.stdout + pending.stderr
    assert "sites-enabled/default" in pending.stderr and "--apply-pending" in pending.stderr
    assert server.workers() == workers and served(s.https, "alpha.test") == narrow2.fingerprint
    # so is cert deploy's; --apply-pending there goes ahead on purpose too
    job = tg("cert", "deploy", *files, "--endpoint", name)
    assert job.returncode == 1 and "--apply-pending" in job.stdout + job.stderr, job.stdout + job.stderr
    assert server.workers() == workers and served(s.https, "alpha.test") == narrow2.fingerprint
    ok("cert", "deploy", *files, "--endpoint", name, "--apply-pending")
    assert served(s.https, "www.alpha.test") == good.fingerprint
    # reloaded now: tlsgate's own writes and the applied edit are not pending any more
    again = test_ca.issue("alpha.test", "www.alpha.test")
    out = ok("tls", "install", name, *pem_files(tmp_path / f"{name}-again", again), "--node", "alpha.test").stdout
    assert served(s.https, "alpha.test") == again.fingerprint
    # 8: a block on IPv4 and IPv6 is one line per name, with its listen addresses
    lines = [line for line in out.splitlines() if line.strip().startswith("alpha.test")]
    assert len(lines) == 1 and f"127.0.0.1:{s.https}" in lines[0] and f"[::1]:{s.https}" in lines[0], out
    # 6: new pairs live in tlsgate/ beside nginx.conf; the superseded ones are gone
    own = sorted(p.name for p in (s.conf / "tlsgate").iterdir())
    assert len(own) == 2 and all(again.fingerprint[:12] in n for n in own), own
    assert not any(p.name.startswith("tlsgate-") for p in s.conf.iterdir())
    default.write_bytes(original)
    server.reload()


def test_stock_local(stock, test_ca, tlsgate_home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s, server = stock
    ok("tls", "add", "nginx", "--name", "web", "--connection_type", "local",
       "--nginx_config_path", str(s.conf / "nginx.conf"))
    flow("web", s, server, test_ca, tmp_path)


def test_stock_over_ssh(stock, sshd: SshdServer, test_ca, tlsgate_home: Path, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    s, server = stock
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    ok("tls", "add", "nginx", "--name", "web-ssh", "--connection_type", "ssh", "--host", sshd.host,
       "--port", str(sshd.port), "--user", "root", "--ssh_key_path", str(sshd.root_key.path),
       "--nginx_config_path", str(s.conf / "nginx.conf"))
    ok("tls", "trust", "web-ssh", "--yes")
    flow("web-ssh", s, server, test_ca, tmp_path)


@pytest.mark.parametrize("over", ["local", "ssh"])
def test_package_owned_snippet_is_not_edited(over: str, request: pytest.FixtureRequest, test_ca, tlsgate_home: Path,
                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """7: a block whose pair comes from Debian's snippets/snakeoil.conf (a conffile of
    nginx-common, included, not reached through a link tlsgate may repoint): refused with the
    reason; the packaged file is not touched. Locally and over the real sshd."""
    snippet = ETC / "snippets" / "snakeoil.conf"
    owner = subprocess.run(["dpkg", "-S", str(snippet)], capture_output=True, text=True)
    assert owner.returncode == 0, "Debian's nginx-common ships snippets/snakeoil.conf"
    before = (snippet.read_bytes(), snippet.stat().st_mtime)
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"events {{}}\nhttp {{\n  server {{\n    listen 127.0.0.1:{free_port()} ssl;\n"
                    f"    server_name snake.test;\n    include {snippet};\n  }}\n}}\n")
    conn = ["--connection_type", "local"]
    if over == "ssh":
        sshd: SshdServer = request.getfixturevalue("sshd")
        monkeypatch.setenv("HOME", str(tmp_path))
        conn = ["--connection_type", "ssh", "--host", sshd.host, "--port", str(sshd.port), "--user", "root",
                "--ssh_key_path", str(sshd.root_key.path)]
    ok("tls", "add", "nginx", "--name", "snake", *conn, "--nginx_config_path", str(conf))
    if over == "ssh":
        ok("tls", "trust", "snake", "--yes")
    ok("org", "add", "Acme")
    ok("tls", "delegate", "snake", "--org", "Acme")
    ok("tls", "discover", "snake")
    refused = tg("tls", "install", "snake", *pem_files(tmp_path / "in", test_ca.issue("snake.test")),
                 "--node", "snake.test")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"{snippet} belongs to the package nginx-common" in refused.stderr
    assert "its own" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert (snippet.read_bytes(), snippet.stat().st_mtime) == before
    assert not (tmp_path / "tlsgate").exists()  # refused before anything was written


def test_packaged_site_gets_own_copy(tmp_path_factory: pytest.TempPathFactory, test_ca, tlsgate_home: Path,
                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """7: the operator gave Debian's default site (sites-available/default, a conffile of
    nginx-common, enabled through sites-enabled/default) a TLS server with its own pair: the
    install leaves the packaged file as shipped, writes an edited copy of its own and points the
    link at it. dpkg sees the copy's files as nginx-common's (its records relocated:
    ``DPKG_ADMINDIR``)."""
    from tlsgate_testing.dpkg import relocated_admindir

    if nginx_binary() is None or not ETC.exists():
        pytest.fail("Debian's nginx package is required (scripts/bootstrap.sh installs it)")
    s = build(tmp_path_factory.mktemp("stock-nginx-pkg"), test_ca)
    monkeypatch.setenv("DPKG_ADMINDIR", str(relocated_admindir(s.root / "dpkg", {"nginx-common": (str(ETC), s.conf)})))
    port = free_port()
    default = s.conf / "sites-available" / "default"
    old = test_ca.issue("pkg.test")
    (s.root / "ssl" / "pkg.crt").write_bytes(old.cert_pem + old.chain_pem)
    (s.root / "ssl" / "pkg.key").write_bytes(old.key_pem)
    default.write_text(default.read_text() + f"""
server {{
\tlisten 127.0.0.1:{port} ssl;
\tserver_name pkg.test;
\tssl_certificate {s.root}/ssl/pkg.crt;
\tssl_certificate_key {s.root}/ssl/pkg.key;
}}
""")
    shipped = default.read_bytes()
    server = NginxServer(s.conf, s.conf / "nginx.conf", s.root / "run" / "nginx.pid", [s.http, s.https, port])
    server.start()
    try:
        ok("tls", "add", "nginx", "--name", "pkg", "--connection_type", "local",
           "--nginx_config_path", str(s.conf / "nginx.conf"))
        ok("org", "add", "Acme")
        ok("tls", "delegate", "pkg", "--org", "Acme")
        ok("tls", "discover", "pkg")
        new = test_ca.issue("pkg.test")
        done = ok("tls", "install", "pkg", *pem_files(tmp_path / "new", new), "--node", "pkg.test")
        copy = s.conf / "tlsgate" / "default"
        assert "verified by TLS handshake" in done.stdout and served(port, "pkg.test") == new.fingerprint
        assert f"{default} belongs to the package nginx-common" in done.stdout and str(copy) in done.stdout
        assert default.read_bytes() == shipped
        assert os.readlink(s.conf / "sites-enabled" / "default") == str(copy)
        assert new.fingerprint[:12] in copy.read_text()
    finally:
        server.stop()
