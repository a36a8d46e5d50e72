"""Finding the HAProxy that runs a configuration, testing a configuration, and reloading it.

* systemd manages it (the ``haproxy.service`` main process was started with this ``-f``):
  ``systemctl reload haproxy.service``.
* A private master-worker instance (``-W``/``-Ws`` or ``master-worker``): ``kill -USR2`` to the
  master, which is what the master CLI's ``reload`` command and Debian's unit do; it needs no
  ``socat`` on the host.
* A private daemon without a master: the running command line again with ``-sf <pids>``, so the
  new process takes the sockets over and the old ones finish their connections.
* Not running: the files are installed and checked, nothing is reloaded.
"""

from __future__ import annotations

import attrs
from tlsgate.plugin import CommandResult, Connection, OperationError

UNIT = "haproxy.service"


@attrs.frozen
class Process:
    pid: int
    ppid: int
    argv: tuple[str, ...]

    @property
    def configs(self) -> tuple[str, ...]:
        return tuple(self.argv[i + 1] for i, a in enumerate(self.argv[:-1]) if a == "-f")

    @property
    def master_worker(self) -> bool:
        return any(a in ("-W", "-Ws") for a in self.argv)


@attrs.frozen
class Control:
    method: str  # "systemd", "master", "sf" or "none"
    binary: str
    config: str
    processes: tuple[Process, ...] = ()
    unit: str | None = None

    @property
    def running(self) -> bool:
        return self.method != "none"

    def test_argv(self) -> list[str]:
        return [self.binary, "-c", "-q", "-f", self.config]

    def reload_argv(self) -> list[str]:
        if self.method == "systemd":
            return ["systemctl", "reload", self.unit or UNIT]
        if self.method == "master":
            return ["kill", "-USR2", str(self.processes[0].pid)]
        if self.method == "sf":
            argv = list(self.processes[0].argv)
            keep: list[str] = []
            skipping = False
            for a in argv:
                if a in ("-sf", "-st"):
                    skipping = True
                    continue
                if skipping and a.isdigit():
                    continue
                skipping = False
                keep.append(a)
            return [*keep, "-sf", *(str(p.pid) for p in self.processes)]
        raise OperationError(f"haproxy is not running with {self.config}; nothing to reload")

    def describe(self) -> str:
        return {"systemd": f"systemctl reload {self.unit}", "master": "SIGUSR2 to the master process",
                "sf": "a new process with -sf", "none": "not running"}[self.method]


def _realpath(connection: Connection, path: str) -> str:
    res = connection.run(["readlink", "-f", "--", path])
    return res.stdout.strip() if res.ok and res.stdout.strip() else path


def _cmdline(connection: Connection, pid: int) -> tuple[str, ...]:
    res = connection.run(["cat", f"/proc/{pid}/cmdline"])
    return tuple(a for a in res.stdout.split("\0") if a) if res.ok else ()


def haproxy_processes(connection: Connection, config: str) -> list[Process]:
    """HAProxy processes whose ``-f`` names ``config`` (symlinks resolved), masters first."""
    res = connection.run(["ps", "-eo", "pid=,ppid=,comm="])
    if not res.ok:
        raise OperationError(f"{connection.host}: cannot list processes: {res.stderr.strip()}")
    want = _realpath(connection, config)
    found: list[Process] = []
    for line in res.stdout.splitlines():
        fields = line.split(None, 2)
        if len(fields) != 3 or fields[2].strip() != "haproxy" or not fields[0].isdigit():
            continue
        proc = Process(int(fields[0]), int(fields[1]), _cmdline(connection, int(fields[0])))
        cwd = None
        for c in proc.configs:
            if not c.startswith("/"):
                cwd = cwd or _realpath(connection, f"/proc/{proc.pid}/cwd")
                c = connection.path.join(cwd, c)
            if c == config or _realpath(connection, c) == want:
                found.append(proc)
                break
    pids = {p.pid for p in found}
    return sorted(found, key=lambda p: (p.ppid in pids, p.pid))


def find_control(connection: Connection, config: str, *, master_worker_config: bool = False,
                 daemon_config: bool = False) -> Control:
    binary = connection.which("haproxy") or "/usr/sbin/haproxy"
    procs = haproxy_processes(connection, config)
    if procs:
        binary = procs[0].argv[0] if procs[0].argv and procs[0].argv[0].startswith("/") else binary
    if connection.systemd_running():
        res = connection.run(["systemctl", "show", UNIT, "--property=ActiveState", "--property=MainPID"])
        props = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line) if res.ok else {}
        main_pid = props.get("MainPID", "0")
        if props.get("ActiveState") == "active" and any(str(p.pid) == main_pid for p in procs):
            return Control("systemd", binary, config, tuple(procs), UNIT)
    if not procs:
        return Control("none", binary, config)
    top = [p for p in procs if p.ppid not in {q.pid for q in procs}]
    if top[0].master_worker or master_worker_config:
        return Control("master", binary, config, (top[0],))
    if not (daemon_config or "-D" in top[0].argv):
        raise OperationError(
            f"haproxy (pid {top[0].pid}) runs {config} in the foreground without master-worker; tlsgate cannot "
            "reload it (run it with -W, -D or under systemd)")
    return Control("sf", binary, config, tuple(top))


def describe_failure(result: CommandResult) -> str:
    lines = [ln.strip() for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
    alerts = [ln for ln in lines if "[ALERT]" in ln] or lines
    return "; ".join(alerts[:3]) or f"exit status {result.exit_code}"
