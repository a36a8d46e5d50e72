"""Discovery of a generated configuration (hundreds of vhosts in the layouts of the benchmark:
one per include file and many per file) against what the generator wrote, through real httpd's
dump: the node model must not depend on how the files are split, and every variant of the
syntax the lexer reads in a different path (quotes, continuation lines, comments with quotes
or backslashes, CRLF line ends, variables, IfModule, an included snippet, inherited pairs,
names an earlier vhost answers, a vhost on two addresses) gives the node it should. httpd is
not started: every probe is refused on loopback, as for a stopped server."""

from __future__ import annotations

from pathlib import Path

import pytest
from apache_peer import MODULES_DIR, _free_ports, apache_binary
from tlsgate import ConnectionSpec, Endpoint
from tlsgate_apache import plugin
from tlsgate_apache.plugin import ApacheOptions
from tlsgate_testing.certs import TestCA
from tlsgate_testing.connections import LocalConnection

DISTINCT = 7  # certificate files are shared: vhost i reads c{i % DISTINCT}
UNREACHABLE = "not reachable, certificate read from its file"
INHERITED = "certificate inherited from the server level"
SHADOWED = "its names are answered by an earlier vhost on this address"


def _vhost(i: int, root: Path, addrs: list[str], http_addr: str) -> tuple[list[str], dict]:
    """The lines of vhost ``i`` and what discovery should say about it."""
    j = i % DISTINCT
    variant = i % 6
    name = f"site{i}.gen.test"
    if i % 40 == 39:  # the earlier vhost on this address (i - 1) already answers this name
        name = f"SITE{i - 1}.GEN.TEST"
    aliases: tuple[str, ...] = ()
    lines = []
    on = addrs if i % 7 == 0 else [addrs[(i // 2) % 2]]
    if variant == 3:
        on = [http_addr]
    lines.append(f"<VirtualHost {' '.join(on)}>")
    if i % 11 == 4:
        lines.append("    # no ServerName: the default of its address, shown as _default_")
        name = ""
    else:
        lines.append(f"    ServerName {name}")
    if i % 5 == 0:
        aliases = (f"www.site{i}.gen.test",)
        wild = f" *.w{i}.gen.test" if i % 50 == 0 else ""
        lines.append(f"    ServerAlias www.site{i}.gen.test{wild}")
        if wild:
            aliases += (f"*.w{i}.gen.test",)
    lines.append("    DocumentRoot /var/www/html")
    cert = f"c{j}"
    if variant == 0:
        lines += ["    SSLEngine on", f"    SSLCertificateFile certs/{cert}.crt",
                  f"    SSLCertificateKeyFile certs/{cert}.key"]
    elif variant == 1:
        lines += ["\tSSLEngine On", f'\tSSLCertificateFile \\\n\t    "{root}/certs/{cert}.crt"',
                  f"\tSSLCertificateKeyFile '{root}/certs/{cert}.key'",
                  "\t# a comment with a quote ' and a backslash \\ inside",
                  "\t# a comment continued on the next line \\\n\tSSLCertificateFile /no/such/file.pem"]
    elif variant == 2:
        lines += ["    SSLEngine on", "    # no pair of its own"]
        cert = "fallback"
    elif variant == 3:
        cert = ""
    elif variant == 4:
        lines += ["    <IfModule ssl_module>", "        SSLEngine on",
                  f"        SSLCertificateFile ${{CERTS}}/{cert}.crt",
                  f"        SSLCertificateKeyFile ${{CERTS}}/{cert}.key", "    </IfModule>"]
    else:
        lines += ["    SSLEngine optional", f"    Include snippets/{cert}.conf"]
    lines.append("</VirtualHost>")
    return lines, {"name": name, "aliases": aliases, "on": on, "cert": cert, "https": variant != 3}


def _generate(root: Path, ca: TestCA, vhosts: int, per_file: int) -> tuple[Path, dict[str, str], list[dict]]:
    for d in ("run", "logs", "sites", "certs", "snippets", "bin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    fingerprints = {}
    for name in [f"c{j}" for j in range(DISTINCT)] + ["fallback"]:
        issued = ca.issue(f"{name}.gen.test")
        (root / "certs" / f"{name}.crt").write_bytes(issued.cert_pem)
        (root / "certs" / f"{name}.key").write_bytes(issued.key_pem)
        fingerprints[name] = issued.fingerprint
        (root / "snippets" / f"{name}.conf").write_text(
            f"SSLCertificateFile certs/{name}.crt\nSSLCertificateKeyFile certs/{name}.key\n")
    p1, p2, p3 = _free_ports(3)
    addrs, http_addr = [f"127.0.0.1:{p1}", f"127.0.0.2:{p2}"], f"127.0.0.1:{p3}"
    loads = "\n".join(f"LoadModule {m}_module {MODULES_DIR}/mod_{m}.so"
                      for m in ("mpm_event", "authz_core", "socache_shmcb", "ssl"))
    (root / "httpd.conf").write_text(f"""ServerRoot "{root}"
{loads}
PidFile run/httpd.pid
Mutex "file:{root / 'run'}" default
ErrorLog logs/error.log
ServerName localhost
User nobody
Group nogroup
Define CERTS certs
Listen {addrs[0]} https
Listen {addrs[1]} https
Listen {http_addr}
<IfModule ssl_module>
    SSLCertificateFile certs/fallback.crt
    SSLCertificateKeyFile certs/fallback.key
</IfModule>
IncludeOptional "sites/*.conf"
""")
    expected = []
    for f in range(0, vhosts, per_file):
        lines: list[str] = [f"# sites {f}.. (generated)"]
        for i in range(f, min(f + per_file, vhosts)):
            block, facts = _vhost(i, root, addrs, http_addr)
            lines.append("")
            facts["line"] = sum(ln.count("\n") + 1 for ln in lines) + 1  # its <VirtualHost> line
            lines += block
            expected.append({**facts, "file": f"{root}/sites/{f // per_file:05d}.conf", "i": i})
        newline = "\r\n" if (f // per_file) % 4 == 3 else "\n"  # httpd reads CRLF files alike
        text = newline.join(lines) + newline
        Path(expected[-1]["file"]).write_bytes(text.encode())
    ctl = root / "bin" / "apachectl"
    ctl.write_text(f'#!/bin/sh\nexec "{apache_binary()}" -d "{root}" -f "{root}/httpd.conf" "$@"\n')
    ctl.chmod(0o755)
    return ctl, fingerprints, expected


def _expected_nodes(expected: list[dict], fingerprints: dict[str, str]) -> set[tuple]:
    out = set()
    first_on: dict[str, int] = {}  # the first vhost of each address is its default
    claimed: dict[str, set[str]] = {}
    for v in expected:
        for addr in v["on"]:
            first_on.setdefault(addr, v["i"])
    for v in expected:
        names = [v["name"] or "localhost", *v["aliases"]]  # httpd shows the fallback name
        for addr in v["on"]:
            ip, port = addr.rsplit(":", 1)
            taken = claimed.setdefault(addr, set())
            default = first_on[addr] == v["i"]
            reachable = [n for n in names if "*" not in n and n.lower() not in taken]
            notes = ["active"]
            if v["https"]:
                if v["cert"] == "fallback":
                    notes.append(INHERITED)
                if not reachable and not default:
                    notes.append(SHADOWED)
                if reachable or default:
                    notes.append(UNREACHABLE)
            taken.update(n.lower() for n in names if "*" not in n)
            out.add((v["name"] or "_default_", v["aliases"], "https" if v["https"] else "http", ip, int(port),
                     fingerprints[v["cert"]] if v["https"] else None, "; ".join(notes), f"{v['file']}:{v['line']}"))
    return out


@pytest.mark.parametrize("per_file", [1, 100])
def test_generated_vhosts_are_discovered_exactly(tmp_path: Path, test_ca: TestCA, per_file: int) -> None:
    if apache_binary() is None:
        pytest.skip("apache2/httpd is not installed")
    ctl, fingerprints, expected = _generate(tmp_path / "gen root", test_ca, 250, per_file)
    endpoint = Endpoint(name="gen", type="apache", connection=ConnectionSpec(type="local"),
                        options=ApacheOptions(apachectl_path=str(ctl)))
    nodes = plugin.discover_nodes(endpoint, LocalConnection())
    got = [(n.name, n.alias, n.protocol, n.ip, n.port, n.fingerprint, n.state, n.locator) for n in nodes]
    want = _expected_nodes(expected, fingerprints)
    assert len(got) == len(set(got)) == len(want) == sum(len(v["on"]) for v in expected)
    assert set(got) == want
    # the variants are all there (a generator change must not drop one silently)
    states = {n.state for n in nodes}
    assert {f"active; {INHERITED}; {UNREACHABLE}", f"active; {SHADOWED}", f"active; {UNREACHABLE}", "active"} <= states
    assert any(n.name == "_default_" for n in nodes) and any(len(n.alias) == 2 for n in nodes)
