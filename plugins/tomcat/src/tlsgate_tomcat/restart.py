"""Restarting Tomcat so that new keystores take effect.

Which way, in order:

* Windows host: the Tomcat service, through the fixed PowerShell template
  ``# tlsgate:tomcat-restart`` (the service the endpoint names, else the ``Tomcat*`` service whose
  procrun ``-Dcatalina.base`` is this directory).
* systemd, only when systemd is running *and* a unit (the one the endpoint names, else
  ``tomcat11``, ``tomcat10``, ``tomcat9``, ``tomcat``) is loaded and serves *this*
  CATALINA_BASE according to its ``Environment`` / ``ExecStart``. A unit file a package left on
  disk proves nothing.
* A Debian-packaged Tomcat (``/usr/libexec/tomcatN/tomcat-start.sh`` and ``/etc/default/tomcatN``
  exist for the CATALINA_HOME ``/usr/share/tomcatN``) without systemd: as the unit would, with
  the unit file's ``Environment=`` (CATALINA_HOME, CATALINA_TMPDIR, JAVA_OPTS), a clean
  environment with the unit's PATH, ``tomcat-start.sh`` (which reads ``/etc/default/tomcatN``
  and runs ``catalina.sh run``) detached, its output appended to ``logs/catalina.out``.
* Otherwise ``bin/shutdown.sh`` and ``bin/startup.sh`` of the Tomcat directory, or of
  CATALINA_HOME with ``CATALINA_BASE`` set (Debian's CATALINA_BASE has no ``bin/``), with the
  old JVM's own environment read from ``/proc/<pid>/environ`` (JAVA_HOME, JAVA_OPTS,
  CATALINA_OPTS, CATALINA_TMPDIR, PATH, ...) so startup.sh rebuilds its arguments.

Either way the server is started again as the user it ran as (when we are root and that user is
not), so files it writes do not become root's. A server whose shutdown port is disabled
(``port="-1"``, as Debian ships) or that ignores the shutdown command gets SIGTERM, then SIGKILL,
by its own pid. Before stopping anything the install runs ``catalina.sh configtest``.

Tomcat starts asynchronously: the caller waits for the TLS ports (see :func:`wait_for_ports`)
while watching the JVM: when it exits, the wait ends at once with the JVM's own reason from
``catalina.out`` (:func:`exit_reason`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence

import attrs
from tlsgate.plugin import CommandFailed, Connection, OperationError, Target, try_served_fingerprint

DEFAULT_UNITS = ("tomcat11", "tomcat10", "tomcat9", "tomcat")
HOME_GUESSES = ("/usr/share/tomcat11", "/usr/share/tomcat10", "/usr/share/tomcat9", "/opt/tomcat")
BOOTSTRAP_CLASS = "org.apache.catalina.startup.Bootstrap"

WINDOWS_RESTART_TEMPLATE = r"""# tlsgate:tomcat-restart
$svc = $null
if ($P.service) {
    $svc = Get-Service -Name $P.service -ErrorAction Stop
} else {
    $base = [IO.Path]::GetFullPath($P.base).TrimEnd('\')
    $pattern = '^-Dcatalina\.base=' + [regex]::Escape($base) + '\\?$'
    foreach ($s in @(Get-Service -Name 'Tomcat*' -ErrorAction SilentlyContinue)) {
        foreach ($root in @('HKLM:\SOFTWARE\Apache Software Foundation', 'HKLM:\SOFTWARE\WOW6432Node\Apache Software Foundation')) {
            $key = Join-Path $root ('Procrun 2.0\' + $s.Name + '\Parameters\Java')
            $opts = (Get-ItemProperty -Path $key -Name Options -ErrorAction SilentlyContinue).Options
            if ($opts -and (@($opts) -match $pattern)) { $svc = $s }
        }
    }
    if (-not $svc) { Write-Error ('no Tomcat service runs with catalina.base ' + $base); exit 3 }
}
Restart-Service -InputObject $svc -Force
$svc.Name
"""


@attrs.frozen
class TomcatProcess:
    pid: int
    uid: int
    home: str | None


@attrs.frozen
class RestartPlan:
    """How this endpoint gets restarted; ``describe()`` is what dry runs show."""

    method: str  # "windows-service", "systemd" or "scripts"
    unit: str | None = None
    home: str | None = None
    startup: str | None = None
    shutdown: str | None = None
    run_as: str | None = None
    #: start in a session of its own (``setsid -w``), so the JVM outlives the gateway's terminal
    #: or ssh session and never shares its signals
    detach: bool = False
    #: the environment the service runs with (unit ``Environment=`` or the old JVM's own)
    environment: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        if self.method == "windows-service":
            return f"Restart-Service {self.unit or '(the Tomcat service of this directory)'}"
        if self.method == "systemd":
            return f"systemctl restart {self.unit}"
        who = f" as {self.run_as}" if self.run_as else ""
        if self.method == "debian":
            return f"stop, then {self.startup} (as the tomcat service starts it){who}"
        return f"{self.shutdown} then {self.startup}{who}"


def _realpath(connection: Connection, path: str) -> str:
    res = connection.run(["readlink", "-f", "--", path])
    out = res.stdout.strip()
    return out if res.ok and out else connection.path.normpath(path)


def systemd_unit_for(connection: Connection, base: str, named: str | None) -> str | None:
    """The loaded systemd unit that runs this CATALINA_BASE, or None."""
    if connection.platform == "windows" or not connection.systemd_running():
        return None
    want = _realpath(connection, base)
    for unit in (named,) if named else DEFAULT_UNITS:
        res = connection.run(
            ["systemctl", "show", "--property=LoadState", "--property=Environment",
             "--property=EnvironmentFiles", "--property=ExecStart", "--", unit]
        )
        if not res.ok:
            continue
        props = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
        if props.get("LoadState") != "loaded":
            continue
        text = " ".join([props.get("Environment", ""), props.get("ExecStart", ""),
                         *_environment_files(connection, props.get("EnvironmentFiles", ""))])
        bases = re.findall(r"(?:CATALINA_BASE=|-Dcatalina\.base=)[\"']?([^\s;\"']+)", text)
        if not bases:  # a unit without CATALINA_BASE runs CATALINA_HOME as its base
            bases = re.findall(r"CATALINA_HOME=[\"']?([^\s;\"']+)", text)
        if any(_realpath(connection, b) == want for b in bases):
            return unit
    return None


def _environment_files(connection: Connection, value: str) -> list[str]:
    """The text of a unit's EnvironmentFile= files (``/etc/default/x (ignore_errors=yes)`` each
    line), so a CATALINA_BASE set only there still counts."""
    texts = []
    for line in value.splitlines():
        path = line.split(" (", 1)[0].strip()
        if path.startswith("/") and connection.exists(path):
            try:
                texts.append(connection.read_text(path))
            except OperationError:
                continue
    return texts


def tomcat_processes(connection: Connection, base: str) -> list[TomcatProcess]:
    """The running Tomcat JVMs whose ``-Dcatalina.base`` is this directory."""
    res = connection.run(["ps", "-ww", "-eo", "pid=,uid=,args="])
    if not res.ok:
        return []
    want = _realpath(connection, base)
    found = []
    for line in res.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3 or BOOTSTRAP_CLASS not in parts[2]:
            continue
        m = re.search(r"-Dcatalina\.base=(\S+)", parts[2])
        if not m:
            continue
        if m.group(1) != base and _realpath(connection, m.group(1)) != want:
            continue
        home = re.search(r"-Dcatalina\.home=(\S+)", parts[2])
        found.append(TomcatProcess(int(parts[0]), int(parts[1]), home.group(1) if home else None))
    return found


def _user_name(connection: Connection, uid: int) -> str | None:
    res = connection.run(["id", "-nu", str(uid)])
    return res.stdout.strip() if res.ok and res.stdout.strip() else None


def plan_restart(
    connection: Connection, base: str, *, service: str | None = None, home: str | None = None
) -> RestartPlan:
    """Decide how to restart the Tomcat of ``base`` (reads the host; changes nothing)."""
    if connection.platform == "windows":
        return RestartPlan("windows-service", unit=service)
    unit = systemd_unit_for(connection, base, service)
    if unit is not None:
        return RestartPlan("systemd", unit=unit)
    if service:  # named, so restarting Tomcat some other way would not be what the operator asked
        why = ("systemd is not running there" if not connection.systemd_running()
               else f"no loaded systemd unit of that name runs {base}")
        raise OperationError(
            f"{connection.host}: --tomcat_service {service}: {why}; name the unit that runs this Tomcat "
            "(tlsgate tls set ENDPOINT --tomcat_service UNIT) or remove the setting (--tomcat_service '': "
            "Tomcat's own scripts then restart it)"
        )
    p = connection.path
    procs = tomcat_processes(connection, base)
    candidates = [home] if home else []
    if connection.exists(p.join(base, "bin", "catalina.sh")):
        candidates.append(base)
    candidates += [proc.home for proc in procs if proc.home]
    candidates += list(HOME_GUESSES)
    found_home = next((h for h in candidates if h and connection.exists(p.join(h, "bin", "catalina.sh"))), None)
    if found_home is None:
        raise OperationError(
            f"{connection.host}: cannot find Tomcat's bin/catalina.sh under {base} or a CATALINA_HOME "
            "(give --tomcat_home)"
        )

    def script(name: str) -> str:
        own = p.join(base, "bin", name)
        return str(own if connection.exists(own) else p.join(found_home, "bin", name))

    run_as = None
    if connection.is_admin() or connection.escalation:  # root, or root through sudo
        uid = procs[0].uid if procs else None
        if uid is None:
            st = connection.stat(p.join(base, "logs"))
            uid = st.uid if st is not None else None
        if uid:
            run_as = _user_name(connection, uid)
    detach = "--wait" in connection.run(["setsid", "--help"]).stdout
    debian = _debian_service(connection, found_home)
    if debian is not None:
        start_sh, env = debian
        env = {**env, "CATALINA_HOME": found_home, "CATALINA_BASE": base}
        return RestartPlan("debian", home=found_home, startup=start_sh, shutdown=script("shutdown.sh"),
                           run_as=run_as, detach=detach, environment=tuple(env.items()))
    env = _process_environment(connection, procs[0].pid) if procs else {}
    return RestartPlan(
        "scripts", home=found_home, startup=script("startup.sh"), shutdown=script("shutdown.sh"), run_as=run_as,
        detach=detach, environment=tuple(env.items()),
    )


#: PATH of a systemd service (what the unit's processes get), not root's
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: what startup.sh reads from its environment to build the JVM's arguments
JVM_ENVIRONMENT = ("JAVA_HOME", "JRE_HOME", "JAVA_OPTS", "CATALINA_OPTS", "CATALINA_TMPDIR", "CATALINA_OUT",
                   "CATALINA_PID", "JSSE_OPTS", "LOGGING_CONFIG", "LOGGING_MANAGER", "UMASK", "PATH", "LANG",
                   "LC_ALL", "TZ", "USE_NOHUP")


def _debian_service(connection: Connection, home: str) -> tuple[str, dict[str, str]] | None:
    """Debian's service start (``tomcat-start.sh`` + its unit's Environment=) for this home."""
    m = re.fullmatch(r"/usr/share/(tomcat\d+)/?", home)
    if not m:
        return None
    name = m.group(1)
    start_sh = f"/usr/libexec/{name}/tomcat-start.sh"
    if not (connection.exists(start_sh) and connection.exists(f"/etc/default/{name}")):
        return None
    env = {"PATH": SERVICE_PATH, "CATALINA_HOME": home, "CATALINA_TMPDIR": "/tmp"}  # noqa: S108 - the unit's value
    for unit_dir in ("/lib/systemd/system", "/usr/lib/systemd/system", "/etc/systemd/system"):
        unit = f"{unit_dir}/{name}.service"
        if connection.exists(unit):
            env.update(unit_environment(connection.read_text(unit)))
    return start_sh, env


def unit_environment(text: str) -> dict[str, str]:
    """The ``Environment=`` assignments of a unit file, as systemd reads them (quoted words)."""
    import shlex

    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("Environment="):
            continue
        try:
            words = shlex.split(line[len("Environment="):])
        except ValueError:
            continue
        for word in words:
            key, sep, value = word.partition("=")
            if sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                env[key] = value
    return env


def _process_environment(connection: Connection, pid: int) -> dict[str, str]:
    """The running JVM's own environment (the variables startup.sh reads), from /proc."""
    # the JVM's user's own file: a non-root account reads it through sudo cat (--sudo)
    try:
        res = connection.run(["cat", f"/proc/{pid}/environ"], privileged=True)
    except OperationError:  # sudo refused cat: the environment is unknown, as without --sudo
        return {}
    if not res.ok:
        return {}
    env = dict(item.partition("=")[::2] for item in res.stdout.split("\0") if "=" in item)
    return {k: env[k] for k in JVM_ENVIRONMENT if k in env}


def configtest_argv(base: str, plan: RestartPlan) -> list[str]:
    """``catalina.sh configtest`` as the service's user with the service's environment."""
    home = plan.home or base
    return _as_user(plan, [*_env(base, plan), "sh", connection_join(home, "bin", "catalina.sh"), "configtest"])


def connection_join(*parts: str) -> str:
    return "/".join(p.rstrip("/") for p in parts)


def describe_configtest(result: object) -> str:
    """The lines of configtest's output that say what is wrong (SEVERE / exceptions)."""
    text = (getattr(result, "stdout", "") or "") + (getattr(result, "stderr", "") or "")
    return _reason(text.splitlines()) or text.strip()[-300:]


def _reason(lines: Sequence[str]) -> str:
    keep = [ln.strip() for ln in lines if re.search(r"SEVERE|Exception|Error|error:", ln)]
    return " | ".join(keep[-3:])[-500:]


def exit_reason(connection: Connection, base: str, plan: RestartPlan, since: int) -> str:
    """Why the JVM exited: the telling lines catalina.out got since byte ``since``."""
    log = dict(plan.environment).get("CATALINA_OUT") or connection_join(base, "logs", "catalina.out")
    try:
        data = connection.read_file(log)[since:]
    except OperationError:
        return f"(no {log})"
    lines = data.decode(errors="replace").splitlines()
    return _reason(lines) or " | ".join(ln.strip() for ln in lines[-3:] if ln.strip()) or f"(nothing in {log})"


def log_reason(connection: Connection, base: str, plan: RestartPlan, since: int) -> str:
    """The telling lines (SEVERE / exceptions) catalina.out got since byte ``since``, or ''."""
    log = dict(plan.environment).get("CATALINA_OUT") or connection_join(base, "logs", "catalina.out")
    try:
        data = connection.read_file(log)[since:]
    except OperationError:
        return ""
    return _reason(data.decode(errors="replace").splitlines())


def log_size(connection: Connection, base: str, plan: RestartPlan) -> int:
    log = dict(plan.environment).get("CATALINA_OUT") or connection_join(base, "logs", "catalina.out")
    st = connection.stat(log)
    return st.size if st is not None else 0


def restart(
    connection: Connection,
    base: str,
    plan: RestartPlan,
    *,
    shutdown_port: int | None,
    stop_timeout: float = 30.0,
) -> str:
    """Restart Tomcat as ``plan`` says; return what was done. Raises OperationError."""
    if plan.method == "windows-service":
        res = connection.run_powershell(WINDOWS_RESTART_TEMPLATE, {"service": plan.unit or "", "base": base})
        connection.check(res, "Restart-Service")
        return f"restarted Windows service {res.stdout.strip() or plan.unit}"
    if plan.method == "systemd":
        connection.check(connection.run(["systemctl", "restart", "--", plan.unit or ""], timeout=180, privileged=True),
                         f"systemctl restart {plan.unit}")
        return f"restarted systemd unit {plan.unit}"
    stop(connection, base, plan, shutdown_port=shutdown_port, timeout=stop_timeout)
    if plan.method == "debian":
        log = connection_join(base, "logs", "catalina.out")
        # catalina.sh run stays in the foreground: detach it (new session, output to
        # catalina.out, stdin closed) so this command returns and the JVM outlives the session
        script = 'cd "$1" && : >>"$3" || exit 1; setsid sh "$2" >>"$3" 2>&1 </dev/null & echo $!'
        argv = _as_user(plan, [*_env(base, plan), "sh", "-c", script, "sh", base, plan.startup or "", log])
        res = connection.run(argv, timeout=60, privileged=bool(plan.run_as))  # runuser needs root
        if not res.ok:
            raise CommandFailed(f"{connection.host}: {plan.startup} failed: {(res.stderr or res.stdout).strip()[-300:]}",
                                exit_code=res.exit_code, stdout=res.stdout, stderr=res.stderr)
        return f"restarted as the tomcat service does ({plan.startup})" + (f" as {plan.run_as}" if plan.run_as else "")
    argv = _as_user(plan, [*_env(base, plan), "sh", plan.startup or ""])
    res = connection.run(["setsid", "-w", *argv] if plan.detach else argv, timeout=120, privileged=True)
    if not res.ok:
        raise CommandFailed(
            f"{connection.host}: {plan.startup} failed: {(res.stderr or res.stdout).strip()[-300:]}",
            exit_code=res.exit_code, stdout=res.stdout, stderr=res.stderr,
        )
    return f"restarted with {plan.shutdown} and {plan.startup}" + (f" as {plan.run_as}" if plan.run_as else "")


def _env(base: str, plan: RestartPlan) -> list[str]:
    """``env`` with the service's environment: a clean one (``-i``) when the plan knows it."""
    known = {k: v for k, v in plan.environment if k not in ("CATALINA_BASE", "CATALINA_HOME")}
    clean = ["-i"] if "PATH" in known else []
    return ["env", *clean, *(f"{k}={v}" for k, v in known.items()), f"CATALINA_BASE={base}",
            f"CATALINA_HOME={plan.home}"]


def _as_user(plan: RestartPlan, argv: list[str]) -> list[str]:
    return ["runuser", "-u", plan.run_as, "--", *argv] if plan.run_as else argv


def stop(
    connection: Connection, base: str, plan: RestartPlan, *, shutdown_port: int | None, timeout: float = 30.0
) -> None:
    """Stop the Tomcat of ``base``: the shutdown command when it has a port, then SIGTERM and
    SIGKILL of its own pid (never any other process)."""
    procs = tomcat_processes(connection, base)
    if not procs:
        return
    if shutdown_port is not None and shutdown_port > 0:
        connection.run(_as_user(plan, [*_env(base, plan), "sh", plan.shutdown or ""]), timeout=60, privileged=True)
        if _wait_dead(connection, procs, timeout):
            return
    for sig, wait in (("-TERM", timeout), ("-KILL", 10.0)):
        alive = [p for p in procs if _state(connection, p.pid) == "running"]
        if not alive:
            break
        connection.run(["kill", sig, *[str(p.pid) for p in alive]], privileged=True)
        if _wait_dead(connection, alive, wait):
            break
    else:
        raise OperationError(f"{connection.host}: Tomcat (pid {procs[0].pid}) did not stop")
    _wait_dead(connection, procs, 0)


def _state(connection: Connection, pid: int) -> str:
    """"running", "zombie" (exited, not yet reaped by its parent) or "gone"."""
    res = connection.run(["ps", "-o", "stat=", "-p", str(pid)])
    stat = res.stdout.strip()
    if not res.ok or not stat:
        return "gone"
    return "zombie" if stat.startswith("Z") else "running"


def _wait_dead(connection: Connection, procs: Sequence[TomcatProcess], timeout: float, reap: float = 10.0) -> bool:
    """Wait until every process has exited; then give the parent up to ``reap`` seconds to reap
    it, because catalina.sh refuses to start while the pid in its pid file still exists."""
    end = time.monotonic() + timeout
    while any(_state(connection, p.pid) == "running" for p in procs):
        if time.monotonic() > end:
            return False
        time.sleep(0.25)
    end = time.monotonic() + reap
    while any(_state(connection, p.pid) == "zombie" for p in procs) and time.monotonic() < end:
        time.sleep(0.25)
    return True


def _answers(target: Target) -> bool:
    """A TLS handshake completes. A bare TCP connect is not enough: Tomcat binds its ports
    during init, seconds before its acceptors start and handshakes succeed."""
    return try_served_fingerprint(target.host, target.port, target.sni, timeout=2.0) is not None


def wait_for_ports(targets: Sequence[Target], *, deadline: float = 120.0, settle: float = 6.0,
                   exited: Callable[[], bool] | None = None) -> list[Target]:
    """Wait until every target completes a TLS handshake. Tomcat starts its connectors within
    moments of each other, so once one answers the rest get ``settle`` seconds; a connector that
    failed to load its keystore never answers. ``exited``: says the JVM is gone (the wait ends at
    once). Returns the targets that still do not answer."""
    pending = list(dict.fromkeys(targets))
    if not pending:
        return []
    total = len(pending)
    end = time.monotonic() + deadline
    first_up: float | None = None
    while pending:
        if exited is not None and exited():
            break
        pending = [t for t in pending if not _answers(t)]
        now = time.monotonic()
        if pending and len(pending) < total and first_up is None:
            first_up = now
        if not pending or now > end or (first_up is not None and now - first_up > settle):
            break
        time.sleep(0.2)
    return pending
