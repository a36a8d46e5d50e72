"""The operator's install and restart scripts.

Scripts run with their arguments as argv (``connection.run([script, alias])``), never through a
shell string, so an alias with spaces, quotes or ``$()`` is data. A PowerShell script on a
Windows host is started as ``powershell.exe -File script args...`` (argv again). For ``local``
endpoints the reference document requires root / Administrator: the script is refused, before
anything is changed, when tlsgate does not run as one.
"""

from __future__ import annotations

from collections.abc import Sequence

from tlsgate.plugin import Connection, Endpoint, OperationError, ScriptResult

#: Seconds a script may run before the job gives up on it.
SCRIPT_TIMEOUT = 600


def argv_for(connection: Connection, script: str, args: Sequence[str]) -> list[str]:
    if connection.platform == "windows" and script.lower().endswith(".ps1"):
        return ["powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File", script, *args]
    return [script, *args]


def preflight(endpoint: Endpoint, connection: Connection, script: str, option: str) -> None:
    """Refuse a script that cannot run: missing, not executable, or local without root/admin."""
    where = f"{connection.host}: {option} {script}"
    st = connection.stat(script)
    if st is None:
        raise OperationError(f"{where}: no such file", host=connection.host)
    if st.is_dir:
        raise OperationError(f"{where}: is a directory", host=connection.host)
    if connection.platform != "windows" and not st.mode & 0o111:
        raise OperationError(f"{where}: is not executable (chmod +x)", host=connection.host)
    if endpoint.connection.type == "local" and not connection.is_admin():
        raise OperationError(
            f"{where}: local scripts must run as root or Administrator (reference document); "
            "run tlsgate as root/Administrator or remove the script from the endpoint",
            host=connection.host,
        )


def run(
    endpoint: Endpoint, connection: Connection, script: str, args: Sequence[str], option: str = "script"
) -> ScriptResult:
    """Run ``script`` with ``args`` as argv; a non-zero exit is a result, not an exception."""
    preflight(endpoint, connection, script, option)
    privileged = bool(getattr(endpoint.options, "script_sudo", False))
    result = connection.run(argv_for(connection, script, args), timeout=SCRIPT_TIMEOUT, privileged=privileged)
    return ScriptResult(script, tuple(args), result.exit_code, result.stdout, result.stderr)


def tail(result: ScriptResult, lines: int = 5) -> str:
    """The last lines of what a failed script said, for the error message."""
    text = (result.stderr or result.stdout).strip().splitlines()
    return " | ".join(text[-lines:]) if text else "no output"
