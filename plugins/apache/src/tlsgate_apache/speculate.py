"""Reading ahead while httpd dumps its configuration.

httpd's dump (``apachectl -t -D DUMP_...``) takes as long as httpd's own parse of every file, and
what we do next depends on it: which files httpd read, its ServerRoot, modules and defines. Most
of our own work is reading and lexing those files and reading the certificates they name; which
ones they are rarely changes between two discoveries of an endpoint. So a discovery records the
files it read and the certificate paths it resolved (a *hint*, in tlsgate's cache directory), and
the next one reads and lexes those while httpd runs, on the other core. What httpd printed is
kept too: when the reading ahead is done before httpd, the whole discovery is made on it, and
taken when httpd prints the same again (:meth:`~tlsgate_apache.control.ApacheControl.parsed`
compares the whole text but its Mutex lines).

The hint only decides what is read early, never what is reported: the walk still starts from the
main file httpd names, follows only the includes httpd lists, evaluates every condition with what
httpd said, and resolves every certificate path against httpd's ServerRoot and defines; a file or
certificate read ahead is used only when the walk asks for exactly that path, and is then the
same bytes a read at that point would have given, read a fraction of a second earlier (as a read
after the dump is a fraction of a second later than httpd's own). A stale or wrong hint costs
reads that are thrown away, bounded by the dump's duration: reading ahead stops when the dump is
back. Only for local endpoints: over ssh the dump's channel and file reads would share one
connection, which must not be used while the dump runs.
"""

from __future__ import annotations

import binascii
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from pathlib import Path

    from tlsgate.plugin import CertFacts, Connection, Endpoint

    from .lexer import Directive

FORMAT = 1
#: bounds of a hint: a larger configuration is read ahead in part, a larger file not read
MAX_PATHS = 200_000
MAX_HINT_BYTES = 64 << 20


@attrs.define
class Hint:
    """What the last discovery of an endpoint read, in the order it read it."""

    files: list[str] = attrs.field(factory=list)
    certificates: list[str] = attrs.field(factory=list)


@attrs.define
class ReadAhead:
    """Files (their bytes and directive tree) and certificates read while httpd ran."""

    files: dict[str, tuple[bytes, list[Directive]]] = attrs.field(factory=dict)
    certificates: dict[str, CertFacts] = attrs.field(factory=dict)


def _ident(endpoint: Endpoint) -> str:
    return json.dumps([FORMAT, endpoint.instance_id, endpoint.connection.type,
                       getattr(endpoint.options, "apachectl_path", None)])


def hint_file(endpoint: Endpoint) -> Path:
    from tlsgate.plugin import cache_dir

    # a CRC names the file; the file holds the whole ident and one for another is not used
    return cache_dir() / "apache" / f"read-ahead-{binascii.crc32(_ident(endpoint).encode()):08x}.json"


def _paths(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [p for p in value[:MAX_PATHS] if isinstance(p, str) and p.startswith("/")]


def load_hint(endpoint: Endpoint) -> Hint | None:
    """The hint the last discovery of this endpoint left, or None (none, unreadable, another
    endpoint's or format's)."""
    try:
        path = hint_file(endpoint)
        with open(path, "rb") as fh:
            data = fh.read(MAX_HINT_BYTES + 1)
        if len(data) > MAX_HINT_BYTES:
            return None
        stored = json.loads(data)
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("ident") != _ident(endpoint):
        return None
    return Hint(_paths(stored.get("files")), _paths(stored.get("certificates")))


def save_hint(endpoint: Endpoint, hint: Hint) -> None:
    """Record what this discovery read, for the next one (a cache: failures are ignored)."""
    body = json.dumps({"ident": _ident(endpoint), "files": hint.files[:MAX_PATHS],
                       "certificates": hint.certificates[:MAX_PATHS]}).encode()
    _write_private(hint_file(endpoint), body)


def dump_file(endpoint: Endpoint) -> Path:
    return hint_file(endpoint).with_suffix(".dump")


def load_dump_text(endpoint: Endpoint) -> str | None:
    """What httpd printed at the last discovery of this endpoint (its first line: the ident)."""
    try:
        with open(dump_file(endpoint), "rb") as fh:
            data = fh.read(MAX_HINT_BYTES + 1)
    except OSError:
        return None
    ident, _, text = data.partition(b"\n")
    if len(data) > MAX_HINT_BYTES or ident != _ident(endpoint).encode():
        return None
    return text.decode("utf-8", "surrogateescape")


def save_dump_text(endpoint: Endpoint, text: str) -> None:
    """Keep what httpd printed, for the next discovery's guess (a cache: failures are ignored).
    It holds what ``apachectl -S`` prints (names, addresses, paths), no secret; 0600 all the same."""
    body = _ident(endpoint).encode() + b"\n" + text.encode("utf-8", "surrogateescape")
    if len(body) <= MAX_HINT_BYTES:
        _write_private(dump_file(endpoint), body)


def _write_private(path: Path, body: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            os.write(fd, body)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        return


def read_ahead(connection: Connection, hint: Hint | None, done: Callable[[], bool],
               note: Callable[[str], object] | None = None) -> ReadAhead:
    """Read and lex the hint's files, then read its certificates, until ``done()`` (the dump is
    back) or the hint is exhausted. A file that cannot be read or lexed is left for the walk,
    which reads it again and reports what it finds. ``note(path)`` is called after each file
    was read (an early dump's :meth:`~tlsgate.plugin.EarlyCommand.note`)."""
    from tlsgate.plugin import OperationError, read_certificate

    from .config import _WALKED
    from .lexer import ConfigSyntaxError, parse

    out = ReadAhead()
    if hint is None:
        return out
    files = out.files
    for path in hint.files:
        if done():
            return out
        try:
            data = connection.read_file(path)
            if note is not None:
                note(path)
            files[path] = (data, parse(data, path, keep=_WALKED))
        except (OperationError, OSError, ConfigSyntaxError):
            continue
    certificates = out.certificates
    for path in hint.certificates:
        if done():
            return out
        certificates[path] = read_certificate(connection, path)  # never raises: a problem is its result
    return out
