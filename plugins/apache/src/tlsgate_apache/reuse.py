"""Reusing the last discovery's node model when nothing it was made from has changed.

Discovery's node model (before the handshakes) is a function of what httpd printed, the bytes of
every file the walk read, the answers of the file-system questions it asked (``glob``, ``stat``,
``listdir``, ``exists``: which files an Include names, an ``<IfFile>``) and the bytes of every
certificate file it read. A local discovery records all of these (digests of the bytes, the
answers themselves) beside its nodes, in tlsgate's cache directory. The next one reads every
one of those files and certificates again and asks every question again while httpd dumps (on
the other core), and when every digest and answer is the same and httpd prints the same dump,
takes the recorded nodes instead of lexing the files, walking them and parsing certificates
once more: a few digests instead of a fifth of a millisecond per vhost. Anything different (a
byte of a file, a certificate, a new file a glob matches, another dump, another tlsgate or
plugin version) and the discovery is made as before. The handshakes (``confirm_by_handshake``)
and the early run's inode-time check are never skipped.

The record decides what is reported, so it is used only when it and its directory belong to
this user and nobody else may write them (as :mod:`tlsgate.early`'s records), and only for the
endpoint, connection type, control program and code version it was made by.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from tlsgate.plugin import Connection, Endpoint

    from .config import ApacheConfig
    from .control import RunConfig
    from .discovery import VHostNode

FORMAT = 1
MAX_RECORD_BYTES = 64 << 20  # as speculate.MAX_HINT_BYTES


def _ident(endpoint: Endpoint) -> str | None:
    """What a record must have been made by; None when the code's own files cannot be told apart
    (no record is then written or taken)."""
    import tlsgate

    code = _plugin_version()
    if code is None:
        return None
    return json.dumps([FORMAT, tlsgate.__version__, code, endpoint.instance_id,
                       endpoint.connection.type, getattr(endpoint.options, "apachectl_path", None)])


def _plugin_version() -> str | None:
    """The code that makes the nodes, as its modules' sizes and modification times (a changed
    driver, even at the same version number, makes nodes its own way)."""
    import tlsgate

    here = os.path.dirname(os.path.abspath(__file__))
    core = os.path.dirname(os.path.abspath(tlsgate.__file__))
    out = []
    for path in (*(os.path.join(here, n) for n in ("config.py", "control.py", "discovery.py", "lexer.py", "reuse.py")),
                 *(os.path.join(core, n) for n in ("certs.py", "probe.py"))):
        try:
            st = os.stat(path)
        except OSError:  # not files (a zip import): no way to tell one version from another
            return None
        out.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    return ",".join(out)


def record_file(endpoint: Endpoint) -> Path:
    from .speculate import hint_file

    return hint_file(endpoint).with_suffix(".nodes")


class Recorder:
    """A connection that remembers what discovery asked of it: the bytes of each file it read
    (the first read; a second read giving other bytes makes the discovery unrecordable) and the
    answer of each ``glob``, ``stat``, ``listdir`` and ``exists``. Everything else is the
    connection's own."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.read: dict[str, bytes | None] = {}  # None: the read failed
        self.answers: dict[tuple[str, str], Any] = {}
        self.consistent = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def read_file(self, path: str) -> bytes:
        try:
            data = self._connection.read_file(path)
        except BaseException:
            self._note(self.read, path, None)
            raise
        self._note(self.read, path, data)
        return data

    def glob(self, pattern: str) -> list[str]:
        return self._ask("glob", pattern)  # type: ignore[no-any-return]

    def stat(self, path: str) -> Any:
        st = self._connection.stat(path)
        self._note(self.answers, ("stat", path), _stat_answer(st))
        return st

    def listdir(self, path: str) -> list[str]:
        return self._ask("listdir", path)  # type: ignore[no-any-return]

    def exists(self, path: str) -> bool:
        return self._ask("exists", path)  # type: ignore[no-any-return]

    def _ask(self, kind: str, arg: str) -> Any:
        answer = _ASK[kind](self._connection, arg)
        self._note(self.answers, (kind, arg), answer)
        return answer

    def _note(self, seen: dict[Any, Any], key: Any, value: Any) -> None:
        if key in seen:
            if seen[key] != value:
                self.consistent = False
        else:
            seen[key] = value


def _stat_answer(st: Any) -> list[bool] | None:
    """What the walk reads of a ``stat``: whether the path exists and is a directory."""
    return None if st is None else [True, bool(st.is_dir)]


_ASK: dict[str, Callable[[Connection, str], Any]] = {
    "glob": lambda c, a: list(c.glob(a)),
    "listdir": lambda c, a: list(c.listdir(a)),
    "exists": lambda c, a: bool(c.exists(a)),
    "stat": lambda c, a: _stat_answer(c.stat(a)),
}


def _digest(paths: Sequence[str], data_of: Callable[[str], bytes]) -> str:
    """One digest of the paths, in order, and of each one's bytes (a path holds no NUL; each
    file's length goes before its bytes)."""
    h = hashlib.sha256("\0".join(paths).encode("utf-8", "surrogateescape"))
    update = h.update
    for path in paths:
        data = data_of(path)
        update(len(data).to_bytes(8, "little"))
        update(data)
    return h.hexdigest()


class Reused:
    """A recorded discovery: what to check, and (:meth:`vnodes`) its nodes."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.dump: str = data["dump"]
        self.files: list[str] = data["files"]
        self.files_digest: str = data["files_digest"]
        self.certificate_paths: list[str] = data["certificates"]
        self.certificates_digest: str = data["certificates_digest"]
        self.answers: list[list[Any]] = data["answers"]
        self.listed: list[str] = data["listed"]
        self.listed_dirs: list[str] = data["listed_dirs"]
        self._facts: list[list[Any]] = data["facts"]
        self._nodes: list[list[Any]] = data["nodes"]
        #: set by :func:`discovery_config` (what httpd printed this time, the same dump)
        self.run: RunConfig | None = None

    def unchanged(self, connection: Connection, note: Callable[[str], object] | None = None) -> bool:
        """Whether every recorded file and certificate has the same bytes and every question the
        same answer (``note(path)`` after each file is read, as :func:`~tlsgate_apache.speculate
        .read_ahead` calls it)."""
        from tlsgate.plugin import OperationError

        def config_file(path: str) -> bytes:
            data = connection.read_file(path)
            if note is not None:
                note(path)
            return data

        try:
            if _digest(self.files, config_file) != self.files_digest:
                return False
            for kind, arg, answer in self.answers:
                if _ASK[kind](connection, arg) != answer:
                    return False
            return _digest(self.certificate_paths, connection.read_file) == self.certificates_digest
        except (OperationError, OSError, KeyError, ValueError, TypeError):
            return False

    def inputs(self) -> set[str]:
        """As :meth:`ApacheConfig.inputs`."""
        return {*self.files, *(p.rsplit("/", 1)[0] or "/" for p in self.files), *self.listed_dirs}

    def vnodes(self) -> list[VHostNode]:
        from .discovery import VHostNode

        facts = [(base64.b64decode(der) if der is not None else None, fp, subject,
                  dt.datetime.fromisoformat(na) if na is not None else None)
                 for der, fp, subject, na in self._facts]
        none = (None, None, None, None)
        out = []
        for name, protocol, aliases, ip, port, fact, vendor, state, locator, sni, pairs, default in self._nodes:
            der, fp, subject, na = facts[fact] if fact is not None else none
            fields = (name, protocol, tuple(aliases), ip, port, fp, subject, na, vendor, state, locator, der)
            out.append(VHostNode(fields, _Entry(default), None, protocol == "https", sni, pairs))
        return out


class _Entry:
    """What the handshakes read of a vhost's dump entry (the rest is in its node's fields)."""

    __slots__ = ("default",)

    def __init__(self, default: bool) -> None:
        self.default = default


def dump_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def load(endpoint: Endpoint) -> Reused | None:
    """The record of the last discovery of this endpoint, or None (none, unreadable, not
    private, another endpoint's, format's or code version's)."""
    try:
        path = record_file(endpoint)
        if not (_private(str(path.parent)) and _private(str(path))):
            return None
        with open(path, "rb") as fh:
            data = fh.read(MAX_RECORD_BYTES + 1)
        if len(data) > MAX_RECORD_BYTES:
            return None
        stored = json.loads(data)
        ident = _ident(endpoint)
        if ident is None or not isinstance(stored, dict) or stored.get("ident") != ident:
            return None
        return Reused(stored)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(endpoint: Endpoint, config: ApacheConfig, vnodes: list[VHostNode], recorder: Recorder,
         listed: Iterable[str]) -> None:
    """Record this discovery for the next one (a cache: failures are ignored; nothing is
    recorded when a file or certificate was read twice with different bytes, a question had two
    answers or a certificate could not be read)."""
    path = record_file(endpoint)
    read = recorder.read
    certificates = config.certificate_paths
    ident = _ident(endpoint)
    if ident is None or not recorder.consistent or any(read.get(p) is None for p in certificates):
        _remove(path)
        return
    facts: dict[tuple[Any, ...], int] = {}
    nodes = []
    for vn in vnodes:
        (name, protocol, aliases, ip, port, fp, subject, na, vendor, state, locator, der) = vn.fields
        fact = None
        if (der, fp, subject, na) != (None, None, None, None):
            fact = facts.setdefault((der, fp, subject, na), len(facts))
        nodes.append([name, protocol, list(aliases), ip, port, fact, vendor, state, locator, vn.sni, vn.pairs,
                      bool(vn.entry.default)])
    files = config.files
    body = json.dumps({
        "ident": ident,
        "dump": dump_digest(config.run.text),
        "files": list(files),
        "files_digest": _digest(list(files), files.__getitem__),
        "certificates": certificates,
        "certificates_digest": _digest(certificates, read.__getitem__),  # type: ignore[arg-type]
        "answers": [[kind, arg, answer] for (kind, arg), answer in recorder.answers.items()],
        "listed": sorted(listed),
        "listed_dirs": sorted(config.listed_dirs),
        "facts": [[base64.b64encode(der).decode() if der is not None else None, fp, subject,
                   na.isoformat() if na is not None else None] for der, fp, subject, na in facts],
        "nodes": nodes,
    }, separators=(",", ":")).encode("utf-8", "surrogateescape")
    from .speculate import _write_private

    if len(body) <= MAX_RECORD_BYTES:
        _write_private(path, body)


def forget(endpoint: Endpoint) -> None:
    _remove(record_file(endpoint))


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _private(path: str) -> bool:
    """Owned by this user, and no one else may write it."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022
