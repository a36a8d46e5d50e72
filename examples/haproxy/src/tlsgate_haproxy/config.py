"""Reading ``haproxy.cfg`` as HAProxy does, as far as certificates go: sections, ``crt-base``,
``bind`` lines with ``ssl``, ``crt <file|dir>`` and ``crt-list <file>``, and crt-list files.

Words are split as HAProxy 2.x splits them (configuration manual, "Quoting and escaping"):
blanks separate words, ``#`` starts a comment, a backslash escapes the next character, double
quotes group words and honour backslash escapes, single quotes group words literally. No library
parses haproxy.cfg (HAProxy has no Python binding, and pyhaproxy-style parsers drop quoting), so
this is hand-written and tested against ``haproxy -c`` itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import attrs

SECTIONS = frozenset({
    "global", "defaults", "frontend", "backend", "listen", "peers", "resolvers", "userlist", "mailers",
    "program", "http-errors", "ring", "cache", "crt-store", "traces", "log-forward",
})
#: Files in a ``crt`` directory that HAProxy loads as extras of a certificate, not as certificates.
EXTRA_SUFFIXES = (".key", ".ocsp", ".issuer", ".sctl")
#: A multi-certificate bundle (``ssl-load-extra-files`` ``bundle``, on by default): ``crt site.pem``
#: naming no file loads ``site.pem.rsa``, ``site.pem.ecdsa`` and ``site.pem.dsa``, one certificate
#: of each key type (the key type of each, as :func:`tlsgate.plugin.key_kind` names it).
BUNDLE_SUFFIXES = {".rsa": "rsa", ".ecdsa": "ec", ".dsa": "dsa"}


class ConfigError(ValueError):
    """The configuration cannot be read the way HAProxy reads it (file and line in the message)."""


def split_words(line: str) -> list[str]:
    """One configuration line as HAProxy splits it into words (comments dropped)."""
    words: list[str] = []
    cur: list[str] = []
    in_word = False
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        if ch in " \t\r\n":
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
            i += 1
            continue
        if ch == "#":
            break
        in_word = True
        if ch == "\\":
            if i + 1 < n:
                cur.append(line[i + 1])
                i += 2
                continue
            i += 1
            continue
        if ch == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise ConfigError("unmatched single quote")
            cur.append(line[i + 1 : end])
            i = end + 1
            continue
        if ch == '"':
            i += 1
            while i < n and line[i] != '"':
                if line[i] == "\\" and i + 1 < n:
                    i += 1
                cur.append(line[i])
                i += 1
            if i >= n:
                raise ConfigError("unmatched double quote")
            i += 1
            continue
        cur.append(ch)
        i += 1
    if in_word:
        words.append("".join(cur))
    return words


_SAFE = re.compile(r"^[A-Za-z0-9_./:@%+=,-]+$")


def quote(word: str) -> str:
    """``word`` written so that :func:`split_words` (and HAProxy) read it back unchanged."""
    if word and _SAFE.match(word):
        return word
    if "'" not in word:
        return f"'{word}'"
    return '"' + "".join("\\" + ch if ch in '"\\$' else ch for ch in word) + '"'


@attrs.frozen
class Address:
    host: str  # "" for every address (``:443``, ``*:443``)
    port: int


@attrs.frozen
class CertEntry:
    """A certificate a bind loads: its file, the SNI names a crt-list gives it (empty: the
    names in the certificate), and where it was named."""

    path: str
    filters: tuple[str, ...] = ()
    origin: str = ""  # "crt", "crt dir", "crt-list <file>:<line>"
    bundle_kind: str | None = None  # key type of a bundle member (site.pem.rsa: "rsa"), else None


def bundle_kind(path: str) -> str | None:
    """The key type a bundle member's suffix stands for (``.rsa``: ``"rsa"``), else None."""
    return next((kind for suffix, kind in BUNDLE_SUFFIXES.items() if path.endswith(suffix)), None)


@attrs.frozen
class Bind:
    section: str  # "frontend web" / "listen stats"
    index: int  # position among the section's binds
    file: str
    line: int
    addresses: tuple[Address, ...]
    ssl: bool
    crt: tuple[str, ...]  # crt arguments, as written
    crt_lists: tuple[str, ...]  # crt-list arguments, as written
    accept_proxy: bool = False  # ``accept-proxy``: a PROXY protocol header comes before the handshake

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@attrs.frozen
class Config:
    path: str
    text: str
    crt_base: str | None
    pidfile: str | None
    master_worker: bool
    daemon: bool
    binds: tuple[Bind, ...]


def _lines(path: str, text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, words) of every line that has words; errors name the file and line."""
    for number, raw in enumerate(text.splitlines(), 1):
        try:
            words = split_words(raw)
        except ConfigError as exc:
            raise ConfigError(f"{path}:{number}: {exc}") from None
        if words:
            yield number, words


def parse_address(word: str) -> list[Address] | None:
    """``bind``'s first word: comma-separated ``[host]:port[-port]``; None for unix sockets,
    ``fd@`` and other non-TCP addresses."""
    out = []
    for part in word.split(","):
        proto = ""
        if "@" in part:
            proto, part = part.split("@", 1)
            if proto not in ("ipv4", "ipv6", "tcp", "tcp4", "tcp6", "quic4", "quic6"):
                return None
        if part.startswith("/") or ":" not in part:
            return None
        host, _, ports = part.rpartition(":")
        host = host.strip("[]")
        if host == "*":
            host = ""
        first = ports.split("-")[0]
        if not first.isdigit():
            raise ConfigError(f"bind address {word!r}: port {ports!r} is not a number")
        out.append(Address(host, int(first)))
    return out


def parse(path: str, text: str) -> Config:
    """The parts of a configuration file that decide which certificates are served where."""
    section = ""
    crt_base = pidfile = None
    master_worker = daemon = False
    binds: list[Bind] = []
    per_section: dict[str, int] = {}
    for number, words in _lines(path, text):
        key = words[0]
        if key in SECTIONS:
            section = " ".join(words[:2])
            continue
        if section == "global":
            if key == "crt-base" and len(words) > 1:
                crt_base = words[1]
            elif key == "pidfile" and len(words) > 1:
                pidfile = words[1]
            elif key == "master-worker":
                master_worker = True
            elif key == "daemon":
                daemon = True
            continue
        if key != "bind" or len(words) < 2 or not section.startswith(("frontend", "listen")):
            continue
        addresses = parse_address(words[1])
        if addresses is None:
            continue
        params = words[2:]
        crt = tuple(params[i + 1] for i, w in enumerate(params[:-1]) if w == "crt")
        lists = tuple(params[i + 1] for i, w in enumerate(params[:-1]) if w == "crt-list")
        index = per_section.get(section, 0)
        per_section[section] = index + 1
        binds.append(Bind(section, index, path, number, tuple(addresses), "ssl" in params, crt, lists,
                          "accept-proxy" in params))
    return Config(path, text, crt_base, pidfile, master_worker, daemon, tuple(binds))


def parse_crt_list(path: str, text: str) -> list[tuple[int, str, tuple[str, ...]]]:
    """A crt-list file: (line, certificate file, SNI filters) per entry. ``[...]`` bind options
    are skipped; negative filters (``!name``) are kept with their ``!``."""
    out = []
    for number, words in _lines(path, text):
        cert, rest = words[0], words[1:]
        filters: list[str] = []
        depth = 0
        for w in rest:
            if w.startswith("[") and depth == 0:
                depth = 1
            if depth:
                if w.endswith("]"):
                    depth = 0
                continue
            filters.append(w)
        out.append((number, cert, tuple(filters)))
    return out


def resolve(path: str, base: str | None, config_dir: str, join: object) -> str:
    """A certificate path as HAProxy opens it: absolute, else under ``crt-base`` when set, else
    (HAProxy's working directory, which tlsgate cannot know) under the configuration's folder."""
    if path.startswith("/"):
        return path
    return join(base or config_dir, path)  # type: ignore[operator]


def sni_names(filters: Sequence[str]) -> list[str]:
    return [f for f in filters if not f.startswith("!")]
