"""Asking httpd itself: one ``apachectl -t -D DUMP_VHOSTS -D DUMP_RUN_CFG -D DUMP_INCLUDES -D
DUMP_MODULES`` call (what ``-S`` prints, plus the include list and the loaded modules), the
config test, graceful restart and start, and whether the parent process is alive.

Every command goes through the endpoint's ``--apachectl_path`` with httpd's own flags
(``-t``, ``-k graceful``, ``-k start``), which Debian's ``apache2ctl`` (it sources
``/etc/apache2/envvars`` first and passes unknown arguments through), upstream's ``apachectl``
and a bare ``httpd`` binary all accept alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
from tlsgate.plugin import CommandResult, Connection, OperationError

if TYPE_CHECKING:
    from tlsgate.plugin import EarlyCommand

#: Tried in order on the host when ``--apachectl_path`` is not given.
CANDIDATES = ("apachectl", "apache2ctl", "httpd")
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/usr/local/apache2/bin", "/opt/apache2/bin")

#: PidFiles of the distributions' packaged httpd (Debian/Ubuntu, RHEL/Fedora/SUSE).
PACKAGED_PID_FILES = frozenset({
    "/run/apache2/apache2.pid", "/var/run/apache2/apache2.pid", "/run/httpd/httpd.pid", "/var/run/httpd/httpd.pid",
    "/run/httpd.pid", "/var/run/httpd.pid",
})

DUMP_ARGS = ("-t", "-D", "DUMP_VHOSTS", "-D", "DUMP_RUN_CFG", "-D", "DUMP_INCLUDES", "-D", "DUMP_MODULES")


@attrs.frozen
class VHostEntry:
    """One line of httpd's vhost dump: a vhost on one address."""

    ip: str  # "127.0.0.1", "::1", "*", "_default_"
    port: int | None  # None for "*"
    name: str
    file: str
    line: int
    aliases: tuple[str, ...] = ()
    default: bool = False  # the default server of its address (no or unknown SNI)


@attrs.define
class RunConfig:
    """httpd's own view of its configuration."""

    server_root: str = ""
    main_file: str = ""
    pid_file: str = ""
    error_log: str = ""
    defines: dict[str, str] = attrs.field(factory=dict)
    modules: set[str] = attrs.field(factory=set)
    includes: set[str] = attrs.field(factory=set)
    vhosts: list[VHostEntry] = attrs.field(factory=list)
    #: what httpd printed (all of the above come from it), less its ``Mutex`` lines (see
    #: :func:`comparable`)
    text: str = attrs.field(default="", eq=False, repr=False)


_ADDR = re.compile(r"^(\[[^\]]+\]|[^\s:]+|\*):(\d+|\*)$")
_SINGLE = re.compile(r"^(\S+)\s+(\S+) \((.*):(\d+)\)$")
_NAMEVHOST = re.compile(r"^\s+port (\S+) namevhost (\S+) \((.*):(\d+)\)$")
_DEFAULT = re.compile(r"^\s+default server (\S+) \((.*):(\d+)\)$")
_ALIAS = re.compile(r"^\s+(?:wild )?alias (\S+)$")
_QUOTED = re.compile(r'^(ServerRoot|PidFile|Main ErrorLog): "(.*)"$')
_INCLUDE = re.compile(r"^\s*\((\*|\d+)\) (.*)$")
#: an alias, namevhost or default server line: _ALIAS, _NAMEVHOST, _DEFAULT in one expression
#: (groups: alias; port, name, file, line; file, line of the default server)
_VHOST_LINE = re.compile(r"\s+(?:(?:wild )?alias (\S+)|port (\S+) namevhost (\S+) \((.*):(\d+)\)"
                         r"|default server \S+ \((.*):(\d+)\))$")


def _address(text: str) -> tuple[str, int | None]:
    m = _ADDR.match(text)
    if not m:
        return text, None
    ip, port = m.group(1), m.group(2)
    return ip.strip("[]"), None if port == "*" else int(port)


def _add_include(run: RunConfig, line: str) -> None:
    """One line of httpd's "Included configuration files" list: the file, and the main one
    (the first at depth ``*``)."""
    m = _INCLUDE.match(line)
    if m:
        if m.group(1) == "*" and not run.main_file:
            run.main_file = m.group(2)
        run.includes.add(m.group(2))


def parse_dump(text: str) -> RunConfig:
    """Parse the combined dump (each part is recognised by its heading, in any order).

    One pass; the indented lines of the vhost list (most of a large dump) are told apart by
    their first word, and a vhost's aliases are collected before its entry is made (one
    :class:`VHostEntry` per vhost, not one per alias)."""
    run = RunConfig()
    section = None
    addr: tuple[str, int | None] | None = None
    defaults: set[tuple[str, int | None, str, int]] = set()
    #: (ip, port, name, file, line, aliases, default) of each vhost line, in order
    rows: list[tuple[str, int | None, str, str, int, list[str], bool]] = []
    for line in text.splitlines():
        # an indented line (most of a large dump) is one of its section's, by one expression:
        # none of the headings and run lines below starts with a space
        if line[:1] == " " and section is not None:
            if section == "vhosts":
                m = _VHOST_LINE.match(line)
                if m is not None:  # (what the lines below do with it, else nothing)
                    alias, port, name, file, line_no, default_file, default_line = m.groups()
                    if alias is not None:
                        if rows:
                            rows[-1][5].append(alias)
                    elif port is not None:
                        if addr is not None:
                            rows.append((addr[0], addr[1], name, file, int(line_no), [], False))
                    elif addr is not None:
                        defaults.add((addr[0], addr[1], default_file, int(default_line)))
                    continue
            elif section == "includes":
                _add_include(run, line)
                continue
            elif section == "modules":
                if line.strip():
                    run.modules.add(line.split()[0])
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
        # (an indented module line was taken above: only the include list has unindented entries)
        if section == "includes":
            _add_include(run, line)
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
        VHostEntry(ip, port, name, file, line_no, tuple(aliases),
                   default or (ip, port, file, line_no) in defaults)
        for ip, port, name, file, line_no, aliases, default in rows
    ]
    return run


def comparable(text: str) -> str:
    """A dump without its ``Mutex ...`` lines, which httpd prints in the order of a hash table
    that changes from run to run, and :func:`parse_dump` does not read: two dumps whose
    comparable texts are equal parse alike. (httpd prints them in one block; found with
    ``str.find``, not a regular expression over the megabytes of a large dump.)"""
    start = text.find("\nMutex ") + 1
    if not start:
        return text
    end = start
    while text.startswith("Mutex ", end):
        end = text.find("\n", end) + 1 or len(text)
    return text[:start] + text[end:]


def _tail(result: CommandResult) -> str:
    """httpd's reason: its stderr (where errors go), else stdout (dumps, apachectl's notes)."""
    for text in (result.stderr, result.stdout):
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        useful = [ln for ln in lines if "AH00558" not in ln and not ln.startswith("Action ")]
        if useful:
            return " | ".join(useful[-5:])
    return f"exit status {result.exit_code}"


def describe_failure(result: CommandResult) -> str:
    return f"exit {result.exit_code}: {_tail(result)}"


class ApacheControl:
    """httpd as its control program sees it, over any :class:`Connection`."""

    def __init__(self, connection: Connection, apachectl: str) -> None:
        self.connection = connection
        self.apachectl = apachectl

    @classmethod
    def find(cls, connection: Connection, apachectl_path: str | None) -> ApacheControl:
        if apachectl_path:
            return cls(connection, apachectl_path)
        for name in CANDIDATES:
            found = connection.which(name)
            if found:
                return cls(connection, found)
            for d in _SBIN:
                path = connection.path.join(d, name)
                if connection.exists(path):
                    return cls(connection, path)
        raise OperationError(
            f"{connection.host}: none of {', '.join(CANDIDATES)} was found; give --apachectl_path"
        )

    def argv(self, *args: str) -> list[str]:
        return [self.apachectl, *args]

    def dump(self, *, spool: bool = False) -> RunConfig:
        """httpd's view of its configuration. ``spool`` (local endpoints only): its output goes
        to a private temporary file of this machine rather than a pipe."""
        argv = self.argv(*DUMP_ARGS)
        return self.parsed(self._spooled(argv) if spool else self.connection.run(argv, privileged=True))

    def parsed(self, result: CommandResult, guess: RunConfig | None = None) -> RunConfig:
        """The :class:`RunConfig` of a finished dump command (raises when it failed); ``guess``
        when it is the parse of exactly what the command printed (parsed while it ran)."""
        if not result.ok:
            ran = " ".join(self.argv(*DUMP_ARGS))
            raise OperationError(f"{self.connection.host}: {ran} failed: {describe_failure(result)}")
        if guess is not None and guess.text == comparable(result.stdout):
            return guess
        return self.run_config(result.stdout)

    def run_config(self, text: str) -> RunConfig:
        """The :class:`RunConfig` of a dump's output."""
        run = parse_dump(text)
        if not run.main_file or not run.server_root:
            raise OperationError(
                f"{self.connection.host}: {self.apachectl} printed no ServerRoot or include list; is it "
                "Apache httpd 2.4?"
            )
        if run.pid_file and not self.connection.path.isabs(run.pid_file):
            run.pid_file = self.connection.path.join(run.server_root, run.pid_file)
        run.text = comparable(text)
        return run

    def _spooled(self, argv: list[str]) -> CommandResult:
        """``argv`` run with its stdout in a temporary file, read when it has finished. httpd
        writes its dump a few bytes at a time (70,000 writes for 10,000 vhosts): through a pipe
        each write woke the reading thread, 70-85 ms of this process's CPU time, against 2-3 ms
        for reading the file (and httpd's own run is shorter). The file is created 0600 and
        removed; it holds what ``-S`` prints (names, addresses, paths), no secret."""
        import os
        import tempfile

        try:
            fd, path = tempfile.mkstemp(prefix="tlsgate-apache-dump-")
        except OSError:  # no writable temporary directory: through the pipe after all
            return self.connection.run(argv, privileged=True)
        os.close(fd)
        try:
            result = self.connection.run(["sh", "-c", 'exec "$@" >"$0"', path, *argv], privileged=True)
            out = self.connection.read_file(path).decode("utf-8", "surrogateescape")
        finally:
            os.unlink(path)
        return attrs.evolve(result, argv=tuple(argv), stdout=out)

    def dump_started(self, *, spool: bool = False, early: EarlyCommand | None = None) -> PendingDump | EarlyDump:
        """:meth:`dump` started in a thread; returns the call that waits for it (and raises what
        it raised). The caller imports and reads ahead meanwhile (httpd parses its files without
        us: its own process, waited on without the GIL); it must not run commands on the
        connection until the dump is back. ``early``: the same command, started before tlsgate
        loaded (see :func:`tlsgate.plugin.take_early_command`), waited for instead."""
        if early is not None:
            return EarlyDump(lambda guess: self.parsed(early.wait(), guess), early.finished)
        return PendingDump(lambda: self.dump(spool=spool))

    def pid(self, run: RunConfig) -> int | None:
        if not run.pid_file:
            return None
        try:
            text = self.connection.read_file(run.pid_file).decode().strip()
        except (OperationError, OSError, UnicodeDecodeError):
            return None
        return int(text) if text.isdigit() else None

    def alive(self, pid: int | None) -> bool:
        """Whether ``pid`` is a live (not zombie) process; works for any user via /proc."""
        if pid is None:
            return False
        script = (
            'if [ -r "/proc/$1/stat" ]; then s=$(sed "s/.*) //" "/proc/$1/stat" | cut -d" " -f1); '
            '[ -n "$s" ] && [ "$s" != Z ]; else kill -0 "$1" 2>/dev/null; fi'
        )
        return self.connection.run(["sh", "-c", script, "sh", str(pid)]).ok

    def running_pid(self, run: RunConfig) -> int | None:
        pid = self.pid(run)
        return pid if self.alive(pid) else None

    def systemd_unit(self, run: RunConfig) -> str | None:
        """The systemd unit that runs this httpd, when systemd runs the distribution's instance
        (its PidFile is the packaged one). Starting that instance with ``-k start`` would leave
        it outside its unit, which then reports it failed and cannot restart it."""
        if run.pid_file not in PACKAGED_PID_FILES or not self.connection.systemd_running():
            return None
        for unit in ("apache2.service", "httpd.service"):
            res = self.connection.run(["systemctl", "show", "-p", "LoadState", "--value", unit])
            if res.ok and res.stdout.strip() == "loaded":
                return unit
        return None

    def start(self, run: RunConfig) -> CommandResult:
        """Start httpd: through its systemd unit where it has one, else ``-k start`` after
        removing a PidFile whose process is gone (httpd trusts ``kill(pid, 0)``, which succeeds
        for a zombie, as a container whose PID 1 reaps nothing keeps after a failed graceful
        restart, and would exit 0 saying "already running")."""
        unit = self.systemd_unit(run)
        if unit is not None:
            return self.connection.run(["systemctl", "start", unit], privileged=True)
        stale = self.pid(run)
        if stale is not None and not self.alive(stale):
            try:
                self.connection.remove(run.pid_file)
            except (OperationError, OSError):
                pass  # httpd will say why it cannot start
        return self.connection.run(self.argv("-k", "start"), privileged=True)

    def realpath(self, path: str) -> str:
        """The file a path finally names: edits go there, so that a symlinked site
        (``sites-enabled/x.conf -> ../sites-available/x.conf``) stays a symlink."""
        res = self.connection.run(["readlink", "-f", "--", path])
        out = res.stdout.strip() if res.ok else ""
        return out if out.startswith("/") and "\n" not in out else path

    def test(self) -> CommandResult:
        return self.connection.run(self.argv("-t"), privileged=True)

    def error_log_tail(self, run: RunConfig, lines: int = 3) -> str:
        if not run.error_log or not self.connection.path.isabs(run.error_log):
            return ""
        res = self.connection.run(["tail", "-n", str(lines), run.error_log])
        return " | ".join(ln.strip() for ln in res.stdout.splitlines() if ln.strip()) if res.ok else ""


class PendingDump:
    """A :meth:`ApacheControl.dump` running in a thread: ``done()`` says whether it has
    finished, calling it waits for its result (and raises what it raised)."""

    def __init__(self, dump: Callable[[], RunConfig]) -> None:
        import threading

        self._box: list[Any] = []

        def work() -> None:
            try:
                self._box.append(dump())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which raises it
                self._box.append(exc)

        self._thread = threading.Thread(target=work, name="apachectl-dump", daemon=True)
        self._thread.start()

    def done(self) -> bool:
        return not self._thread.is_alive()

    def __call__(self, guess: RunConfig | None = None) -> RunConfig:
        """The dump's result (``guess`` is not used: the thread has parsed it already)."""
        self._thread.join()
        if isinstance(self._box[0], BaseException):
            raise self._box[0]
        return self._box[0]  # type: ignore[no-any-return]


class EarlyDump:
    """The dump started early, as a :class:`PendingDump`: waited for, read and parsed by the
    thread that calls it, not by a thread of its own (whose every step, reading the output
    and parsing it, waited for the reading-ahead thread to give up the GIL: 40 ms at 10,000
    vhosts); ``guess``: the last dump's parse, taken when httpd printed the same (see
    :meth:`ApacheControl.parsed`). ``done()`` asks the process at most every 2 ms (it is
    called per file read ahead)."""

    def __init__(self, result: Callable[[RunConfig | None], RunConfig], finished: Callable[[], bool]) -> None:
        import time

        self._result, self._finished, self._clock = result, finished, time.monotonic
        self._next = 0.0
        self._done = False

    def done(self) -> bool:
        if not self._done and self._clock() >= self._next:
            self._done = self._finished()
            self._next = self._clock() + 0.002
        return self._done

    def __call__(self, guess: RunConfig | None = None) -> RunConfig:
        return self._result(guess)
