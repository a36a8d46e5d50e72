"""Tomcat ``local`` on a Windows gateway restarts its service through the core's one local
PowerShell runner (``LocalConnection.run_powershell``; the base class has none and raised
before). A stand-in ``powershell`` (the simulated Windows host's shim on a real directory) plays
the gateway's PowerShell; its ``tomcat-restart`` handler records the restart. Also: the driver's
PowerShell template parses with a real PowerShell grammar."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from tlsgate_testing.connections import LocalConnection
from tlsgate_testing.powershell_grammar import full_scripts, syntax_errors, templates_of
from tlsgate_testing.winhost import PSError, SimulatedWindowsHost
from tlsgate_tomcat import restart
from tlsgate_tomcat.restart import WINDOWS_RESTART_TEMPLATE

BASE = r"C:\Tomcat\base"
RESTARTS = r"C:\restarts.json"


def register(host: SimulatedWindowsHost) -> None:
    """The shim's handler (``TLSGATE_WINHOST_PLUGINS=test_windows_local:register``): Restart-Service
    of the service whose catalina.base is BASE, as the template's registry lookup would find."""

    def handle(h: SimulatedWindowsHost, params: Any) -> str:
        if params["service"] and params["service"] != "Tomcat10":
            raise PSError(f"Cannot find any service with service name '{params['service']}'.",
                          error_id="NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.GetServiceCommand")
        if not params["service"] and params["base"] != BASE:
            raise PSError("no Tomcat service runs with catalina.base " + params["base"], 3)
        done = json.loads(h.read(RESTARTS)) if h.exists(RESTARTS) else []
        h.seed(RESTARTS, json.dumps([*done, "Tomcat10"]))
        return "Tomcat10\r\n"

    host.register("tomcat-restart", handle, template=WINDOWS_RESTART_TEMPLATE)


@pytest.fixture
def windows_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimulatedWindowsHost:
    from tlsgate_testing.winhost import DirectoryFS

    root = tmp_path / "windows"
    host = SimulatedWindowsHost(DirectoryFS(root))
    program = tmp_path / "bin" / "powershell"
    program.parent.mkdir()
    program.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                       "from tlsgate_testing.winhost import shim_main\nsys.exit(shim_main())\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{program.parent}:/usr/bin:/bin")
    monkeypatch.delenv("PROCESSOR_ARCHITEW6432", raising=False)
    monkeypatch.setenv("TLSGATE_WINHOST_ROOT", str(root))
    monkeypatch.setenv("TLSGATE_WINHOST_PLUGINS", "test_windows_local:register")
    return host


def windows_local() -> LocalConnection:
    conn = LocalConnection()
    conn.platform = "windows"  # what LocalConnection says on a Windows gateway
    return conn


def test_local_tomcat_on_windows_restarts_through_the_local_powershell(windows_gateway: SimulatedWindowsHost) -> None:
    conn = windows_local()
    plan = restart.plan_restart(conn, BASE)
    assert plan.method == "windows-service"
    message = restart.restart(conn, BASE, plan, shutdown_port=None)
    assert message == "restarted Windows service Tomcat10"
    assert json.loads(windows_gateway.read(RESTARTS)) == ["Tomcat10"]
    calls = [json.loads(line) for line in (Path(windows_gateway.fs.root) / ".calls.jsonl").open()]  # type: ignore[attr-defined]
    assert [(c["template"], c["params"]) for c in calls] == [("tomcat-restart", {"service": "", "base": BASE})]
    assert BASE not in calls[0]["command_line"]  # the path travelled as base64 JSON


def test_a_failed_restart_names_the_reason(windows_gateway: SimulatedWindowsHost) -> None:
    from tlsgate import OperationError

    conn = windows_local()
    with pytest.raises(OperationError, match="Cannot find any service with service name 'Nope'"):
        restart.restart(conn, BASE, restart.RestartPlan("windows-service", unit="Nope"), shutdown_port=None)


def test_the_restart_template_parses_with_a_powershell_grammar() -> None:
    templates = templates_of(restart)
    assert list(templates) == ["tomcat-restart"]
    for kind, script in full_scripts(templates["tomcat-restart"]).items():
        assert syntax_errors(script) == [], kind
