"""Talking to the nginx that runs this configuration: config test and reload.

The running master is found from the configuration's ``pid`` directive (relative paths are
against the prefix; without one, the compiled ``--pid-path``), then its command line
(``/proc/<pid>/cmdline``, which the master rewrites to ``nginx: master process <argv>``) tells
which binary, prefix (``-p``), error log (``-e``) and ``-g`` directives it was started with, so
``nginx -t`` and ``nginx -s reload`` test and signal exactly that instance. When systemd runs it
(``nginx.service``'s MainPID is that master) the reload goes through ``systemctl reload
nginx.service`` as the reference document asks (or ``systemctl reload UNIT`` for the unit the
endpoint names with ``--nginx_service``).
"""

from __future__ import annotations

import time

import attrs
from tlsgate.plugin import CommandResult, Connection, TlsgateError

from .config import NginxConfig

_DEFAULT_BINARY = "/usr/sbin/nginx"
_MASTER_TITLE = "nginx: master process "


@attrs.frozen
class NginxControl:
    """How to test and reload one nginx instance."""

    binary: str
    config: str
    prefix: str | None = None
    error_log: str | None = None
    globals_: str | None = None
    pid_file: str | None = None
    master_pid: int | None = None
    systemd_unit: str | None = None

    def base(self) -> list[str]:
        argv = [self.binary]
        if self.prefix:
            argv += ["-p", self.prefix]
        if self.error_log:
            argv += ["-e", self.error_log]
        argv += ["-c", self.config]
        if self.globals_:
            argv += ["-g", self.globals_]
        return argv

    def test_argv(self) -> list[str]:
        return [*self.base(), "-t"]

    def reload_argv(self) -> list[str]:
        if self.systemd_unit:
            return ["systemctl", "reload", self.systemd_unit]
        return [*self.base(), "-s", "reload"]

    @property
    def running(self) -> bool:
        return self.master_pid is not None


def find_control(connection: Connection, config: NginxConfig, *, service: str | None = None) -> NginxControl:
    """Locate the running master of ``config`` (if any) and how to talk to it. ``service``: the
    systemd unit the endpoint names (``--nginx_service``), used as it is; without one,
    ``nginx.service`` when systemd's MainPID of it is this master."""
    path = connection.path
    pid_file = _pid_file(connection, config)
    master = _read_master(connection, pid_file) if pid_file else None
    if master is None:
        binary = connection.which("nginx") or _DEFAULT_BINARY
        return NginxControl(binary=binary, config=config.main, pid_file=pid_file)
    pid, argv = master
    binary, options = _DEFAULT_BINARY, _flags(argv[1:])
    if argv:
        binary = argv[0] if path.isabs(argv[0]) else (connection.which(argv[0]) or _DEFAULT_BINARY)
    elif connection.platform == "windows":
        # No /proc: nginx for Windows runs from its own directory, which is its prefix.
        binary = connection.which("nginx") or "nginx.exe"
        options.setdefault("-p", path.dirname(binary) or ".")
    prefix, error_log, globals_ = options.get("-p"), options.get("-e"), options.get("-g")
    unit = service or ("nginx.service" if _systemd_owns(connection, pid) else None)
    return NginxControl(
        binary=binary,
        config=config.main,
        prefix=prefix,
        error_log=error_log,
        globals_=globals_,
        pid_file=pid_file,
        master_pid=pid,
        systemd_unit=unit,
    )


_FLAGS = {"-p", "-c", "-e", "-g", "-s", "-t", "-T", "-q", "-v", "-V", "-h", "-?"}


def _flags(words: list[str]) -> dict[str, str]:
    """``-p``/``-c``/``-e``/``-g`` values from the master's title. The title is argv joined by
    spaces, unquoted, so a value runs up to the next nginx flag (``-g 'daemon on; pid x;'``
    arrives as several words)."""
    out: dict[str, str] = {}
    i = 0
    while i < len(words):
        flag = words[i]
        i += 1
        if flag not in ("-p", "-c", "-e", "-g"):
            continue
        value = []
        while i < len(words) and words[i] not in _FLAGS:
            value.append(words[i])
            i += 1
        if value:
            out[flag] = " ".join(value)
    return out


def _pid_file(connection: Connection, config: NginxConfig) -> str | None:
    d = config.main_directive("pid")
    compiled: dict[str, str] = {}
    if d is None or not connection.path.isabs(d.args[0] if d.args else ""):
        compiled = _compiled_paths(connection)
    prefix = compiled.get("prefix")
    if d is not None and d.args:
        value = d.args[0]
        if value == "off":
            return None
        if not connection.path.isabs(value):
            value = connection.path.join(prefix or "/", value)
        return value
    return compiled.get("pid-path")


def _compiled_paths(connection: Connection) -> dict[str, str]:
    binary = connection.which("nginx") or _DEFAULT_BINARY
    res = connection.run([binary, "-V"])
    out: dict[str, str] = {}
    for word in (res.stdout + res.stderr).split():
        if word.startswith("--") and "=" in word:
            key, _, value = word[2:].partition("=")
            out[key] = value
    return out


def master_running(connection: Connection, pid_file: str) -> bool:
    """Whether the pid file names a live nginx master (what :func:`find_control` checks, without
    locating the pid file or reading the master's flags again)."""
    return _read_master(connection, pid_file) is not None


def _read_master(connection: Connection, pid_file: str) -> tuple[int, list[str]] | None:
    try:
        pid = int(connection.read_file(pid_file).strip())
    except (TlsgateError, OSError, ValueError):
        return None
    if connection.platform == "windows":
        return pid, []  # trust the pid file; "nginx -s reload" reports a stale one
    try:
        cmdline = connection.read_file(f"/proc/{pid}/cmdline")
    except (TlsgateError, OSError):
        return None  # no such process: nginx is not running (a stale pid file)
    text = cmdline.replace(b"\x00", b" ").decode("utf-8", "replace").strip()
    if text.startswith(_MASTER_TITLE):
        return pid, text[len(_MASTER_TITLE) :].split()
    # without master_process the title is not rewritten: argv as is
    words = text.split()
    if not words or "nginx" not in words[0]:
        return None  # the pid was reused by another program
    return pid, words


def _systemd_owns(connection: Connection, pid: int) -> bool:
    if connection.platform == "windows" or not connection.systemd_running():
        return False
    res = connection.run(["systemctl", "show", "--property=MainPID", "--value", "nginx.service"])
    return res.ok and res.stdout.strip() == str(pid)


def describe_failure(result: CommandResult) -> str:
    """The last meaningful line of an nginx command's output."""
    lines = [ln for ln in (result.stderr + result.stdout).splitlines() if ln.strip()]
    emerg = [ln for ln in lines if "[emerg]" in ln or "[alert]" in ln or "[crit]" in ln]
    failed = [ln for ln in lines if "failed" in ln]
    return (emerg[:1] or failed[-1:] or lines[-1:] or [f"exit status {result.exit_code}"])[0].strip()


def worker_pids(connection: Connection, master_pid: int) -> list[int] | None:
    """The master's children now (None when the host does not say)."""
    try:
        data = connection.read_file(f"/proc/{master_pid}/task/{master_pid}/children").decode()
    except (TlsgateError, OSError):
        res = connection.run(["pgrep", "-P", str(master_pid)])
        if res.exit_code not in (0, 1):
            return None
        data = res.stdout
    return [int(x) for x in data.split() if x.isdigit()]


def wait_workers_retired(connection: Connection, pids: list[int] | None, deadline: float) -> bool:
    """Wait until each of ``pids`` (the workers before a reload) has exited or shows
    "is shutting down" (it closed its listening sockets), so a handshake after this reaches
    a new worker. Without it a probe may catch an old worker in the instant after a reload."""
    if pids is None:
        time.sleep(1.0)
        return True
    end = time.monotonic() + deadline
    pending = list(pids)
    while pending:
        still = []
        for pid in pending:
            try:
                title = connection.read_file(f"/proc/{pid}/cmdline")
            except (TlsgateError, OSError):
                continue
            if b"shutting down" not in title and title:
                still.append(pid)
        pending = still
        if not pending:
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True
