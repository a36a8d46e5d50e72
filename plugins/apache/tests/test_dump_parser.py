"""httpd's dump parser reads an indented line of its vhost, include and module lists by one
expression: it gives what the line-by-line reading it replaced gives (kept here as the
reference), for generated dumps with odd lines (whitespace, headings in any order, lines that
look like another part's) and for real httpd dumps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from apache_peer import apache_binary
from hypothesis import given, settings
from hypothesis import strategies as st
from test_discovery_generated import _generate
from tlsgate_apache.control import DUMP_ARGS, ApacheControl, RunConfig, VHostEntry, parse_dump
from tlsgate_testing.certs import TestCA
from tlsgate_testing.connections import LocalConnection

_ADDR = re.compile(r"^(\[[^\]]+\]|[^\s:]+|\*):(\d+|\*)$")
_SINGLE = re.compile(r"^(\S+)\s+(\S+) \((.*):(\d+)\)$")
_NAMEVHOST = re.compile(r"^\s+port (\S+) namevhost (\S+) \((.*):(\d+)\)$")
_DEFAULT = re.compile(r"^\s+default server (\S+) \((.*):(\d+)\)$")
_ALIAS = re.compile(r"^\s+(?:wild )?alias (\S+)$")
_QUOTED = re.compile(r'^(ServerRoot|PidFile|Main ErrorLog): "(.*)"$')
_INCLUDE = re.compile(r"^\s*\((\*|\d+)\) (.*)$")


def _address(text: str) -> tuple[str, int | None]:
    m = _ADDR.match(text)
    if not m:
        return text, None
    ip, port = m.group(1), m.group(2)
    return ip.strip("[]"), None if port == "*" else int(port)


def reference_parse_dump(text: str) -> RunConfig:
    """The parser as it was, line by line."""
    run = RunConfig()
    section = None
    addr = None
    defaults = set()
    rows: list = []  # type: ignore[type-arg]
    for line in text.splitlines():
        if section == "vhosts" and line[:1] == " ":
            word = line.lstrip()[:5]
            m = None
            if word in ("alias", "wild "):
                m = _ALIAS.match(line)
                if m and rows:
                    rows[-1][5].append(m.group(1))
                    continue
            elif word == "port ":
                m = _NAMEVHOST.match(line)
                if m and addr is not None:
                    rows.append((addr[0], addr[1], m.group(2), m.group(3), int(m.group(4)), [], False))
                    continue
            elif word == "defau":
                m = _DEFAULT.match(line)
                if m and addr is not None:
                    defaults.add((addr[0], addr[1], m.group(2), int(m.group(3))))
                    continue
        if line.startswith("VirtualHost configuration:"):
            section = "vhosts"
            continue
        if line.startswith("Included configuration files:"):
            section = "includes"
            continue
        if line.startswith("Loaded Modules:"):
            section = "modules"
            continue
        m = _QUOTED.match(line)
        if m:
            section = "run"
            key, value = m.groups()
            if key == "ServerRoot":
                run.server_root = value
            elif key == "PidFile":
                run.pid_file = value
            else:
                run.error_log = value
            continue
        if line.startswith("Define: "):
            section = "run"
            name, _, value = line[len("Define: "):].partition("=")
            if not name.startswith("DUMP_"):
                run.defines[name] = value
            continue
        if section == "includes":
            m = _INCLUDE.match(line)
            if m:
                if m.group(1) == "*" and not run.main_file:
                    run.main_file = m.group(2)
                run.includes.add(m.group(2))
        elif section == "modules":
            if line.startswith(" ") and line.strip():
                run.modules.add(line.split()[0])
        elif section == "vhosts":
            if (m := _DEFAULT.match(line)) and addr is not None:
                defaults.add((addr[0], addr[1], m.group(2), int(m.group(3))))
            elif (m := _NAMEVHOST.match(line)) and addr is not None:
                rows.append((addr[0], addr[1], m.group(2), m.group(3), int(m.group(4)), [], False))
            elif (m := _ALIAS.match(line)) and rows:
                rows[-1][5].append(m.group(1))
            elif line.rstrip().endswith("is a NameVirtualHost"):
                addr = _address(line.split()[0])
            elif m := _SINGLE.match(line):
                ip, port = _address(m.group(1))
                addr = (ip, port)
                rows.append((ip, port, m.group(2), m.group(3), int(m.group(4)), [], True))
    run.vhosts = [
        VHostEntry(ip, port, name, file, line_no, tuple(aliases), default or (ip, port, file, line_no) in defaults)
        for ip, port, name, file, line_no, aliases, default in rows
    ]
    return run


_HEADINGS = st.sampled_from(["VirtualHost configuration:", "Included configuration files:", "Loaded Modules:",
                             'ServerRoot: "/etc/httpd"', "Define: SSL", ""])
_LINES = st.sampled_from([
    "VirtualHost configuration:", "Included configuration files:", "Loaded Modules:",
    "*:443                  is a NameVirtualHost", "127.0.0.1:8443         is a NameVirtualHost",
    "[::1]:8443             six.example (/etc/six.conf:1)", "_default_:80 fb.example (/etc/d.conf:2)",
    "         default server www.example.com (/etc/ssl.conf:5)",
    "         default server x (/etc/a b.conf:7)",
    "         port 443 namevhost www.example.com (/etc/ssl.conf:5)",
    "         port 443 namevhost other (/etc/a (1).conf:20)", "  port 443 namevhost bad (/x.conf)",
    "                 alias example.com", "                 wild alias *.example.com", "  alias two words",
    "  alias is a NameVirtualHost", " wild  alias x", "\u00a0 alias nbsp", " \talias tab.example",
    "  (*) /etc/httpd.conf", "  (*) /etc/second.conf", "    (12) /etc/conf.d/ssl.conf", " (3) /etc/a b.conf",
    "(4) /flush/left.conf", " core_module (static)", " ssl_module (shared)", "   ", " ", "",
    'ServerRoot: "/etc/httpd"', 'PidFile: "run/httpd.pid"', 'Main ErrorLog: "/logs/e"', "Define: SSL",
    "Define: DUMP_VHOSTS", "Define: A=b=c", "Mutex default: dir=x", " Define: indented",
    ' ServerRoot: "/indented"', "x is a NameVirtualHost",
])


#: the lines of each part, drawn more often after its heading
_PART = {
    "VirtualHost configuration:": st.sampled_from([
        "*:443                  is a NameVirtualHost", "         default server www.example.com (/etc/ssl.conf:5)",
        "         port 443 namevhost www.example.com (/etc/ssl.conf:5)", "                 alias example.com",
        "         port 443 namevhost b.example (/etc/b.conf:9)", "                 wild alias *.b.example"]),
    "Included configuration files:": st.sampled_from(["  (*) /etc/httpd.conf", "  (*) /etc/second.conf",
                                                      "    (12) /etc/conf.d/ssl.conf"]),
    "Loaded Modules:": st.sampled_from([" core_module (static)", " ssl_module (shared)"]),
}
_BLOCK = _HEADINGS.flatmap(lambda h: st.tuples(st.just(h), st.lists(_PART.get(h, _LINES) | _LINES, max_size=8)))


@settings(max_examples=300, deadline=None)
@given(st.lists(_BLOCK, max_size=6), st.sampled_from(["\n", "\r\n"]))
def test_the_dump_parser_reads_what_line_by_line_reading_read(parts: list[tuple[str, list[str]]], newline: str) -> None:
    text = newline.join(line for heading, lines in parts for line in (heading, *lines)) + newline
    assert parse_dump(text) == reference_parse_dump(text)


def test_real_dumps_parse_as_line_by_line_reading_read(tmp_path: Path, test_ca: TestCA) -> None:
    if apache_binary() is None:
        pytest.skip("apache2/httpd is not installed")
    ctl, _, _ = _generate(tmp_path / "root", test_ca, 120, 7)
    control = ApacheControl(LocalConnection(), str(ctl))
    text = LocalConnection().run(control.argv(*DUMP_ARGS)).stdout
    run = parse_dump(text)
    assert run == reference_parse_dump(text)
    assert len(run.vhosts) >= 120 and any(v.aliases for v in run.vhosts) and run.includes and run.modules
