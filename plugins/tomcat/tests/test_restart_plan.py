"""How the driver chooses to restart Tomcat (systemd only when a running unit serves this
CATALINA_BASE; else the scripts), on a scripted host: systemd cannot run in this container."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from tlsgate import CommandResult, FileStat
from tlsgate.plugin import Connection
from tlsgate_tomcat import restart

DEBIAN_UNIT = {
    "LoadState": "loaded",
    "Environment": "CATALINA_HOME=/usr/share/tomcat10 CATALINA_BASE=/var/lib/tomcat10 CATALINA_TMPDIR=/tmp",
    "ExecStart": "{ path=/bin/sh ; argv[]=/bin/sh /usr/libexec/tomcat10/tomcat-start.sh ; ignore_errors=no }",
}


class ScriptedHost(Connection):
    """Answers the commands the restart planner runs; records them."""

    def __init__(self, *, systemd: bool, units: Mapping[str, Mapping[str, str]] | None = None,
                 files: Sequence[str] = (), ps: str = "", root: bool = True,
                 links: Mapping[str, str] | None = None) -> None:
        self.systemd = systemd
        self.units = units or {}
        self.files = set(files)
        self.ps = ps
        self.root = root
        self.links = dict(links or {})
        self.commands: list[tuple[str, ...]] = []
        self.contents: dict[str, bytes] = {}

    def run(self, argv, *, stdin=None, timeout=120, env=None, check=False, privileged=False):  # type: ignore[no-untyped-def, override]
        argv = tuple(argv)
        self.commands.append(argv)
        if argv[:2] == ("systemctl", "show"):
            unit = self.units.get(argv[-1])
            if unit is None:
                return CommandResult(argv, 0, "LoadState=not-found\nEnvironment=\nExecStart=\n")
            return CommandResult(argv, 0, "".join(f"{k}={v}\n" for k, v in unit.items()))
        if argv[:2] == ("readlink", "-f"):
            return CommandResult(argv, 0, self.links.get(argv[-1], argv[-1]) + "\n")
        if argv[0] == "ps":
            return CommandResult(argv, 0, self.ps)
        if argv[:2] == ("id", "-u"):
            return CommandResult(argv, 0, "0\n" if self.root else "1000\n")
        if argv[:2] == ("id", "-nu"):
            return CommandResult(argv, 0, {"995": "tomcat"}.get(argv[2], "u" + argv[2]) + "\n")
        return CommandResult(argv, 1, "", "unexpected")

    def systemd_running(self) -> bool:
        return self.systemd

    def read_file(self, path: str) -> bytes:
        return self.contents[path]

    def stat(self, path: str) -> FileStat | None:
        if path.endswith("/logs"):
            return FileStat(size=0, mode=0o755, mtime=0, uid=995, gid=995, is_dir=True)
        return FileStat(size=1, mode=0o644, mtime=0) if path in self.files or path in self.contents else None

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None: raise NotImplementedError
    def remove(self, path: str) -> None: raise NotImplementedError
    def rename(self, src: str, dst: str) -> None: raise NotImplementedError
    def listdir(self, path: str) -> list[str]: raise NotImplementedError
    def makedirs(self, path: str, *, mode: int = 0o755) -> None: raise NotImplementedError


HOME_FILES = ["/usr/share/tomcat10/bin/catalina.sh"]


def test_systemd_unit_that_serves_this_base_is_used() -> None:
    host = ScriptedHost(systemd=True, units={"tomcat10": DEBIAN_UNIT}, files=HOME_FILES)
    plan = restart.plan_restart(host, "/var/lib/tomcat10")
    assert (plan.method, plan.unit) == ("systemd", "tomcat10")
    assert plan.describe() == "systemctl restart tomcat10"


def test_symlinked_base_still_matches_the_unit() -> None:
    host = ScriptedHost(systemd=True, units={"tomcat10": DEBIAN_UNIT}, files=HOME_FILES,
                        links={"/srv/tc": "/var/lib/tomcat10"})
    assert restart.plan_restart(host, "/srv/tc").unit == "tomcat10"


def test_unit_for_another_base_is_not_proof() -> None:
    host = ScriptedHost(systemd=True, units={"tomcat10": DEBIAN_UNIT}, files=HOME_FILES)
    plan = restart.plan_restart(host, "/opt/other-tomcat")
    assert plan.method == "scripts"
    assert plan.startup == "/usr/share/tomcat10/bin/startup.sh"
    assert plan.run_as == "tomcat"  # as root: the owner of logs/, not root


def test_unit_files_do_not_count_when_systemd_is_not_running() -> None:
    host = ScriptedHost(systemd=False, units={"tomcat10": DEBIAN_UNIT}, files=HOME_FILES)
    assert restart.plan_restart(host, "/var/lib/tomcat10").method == "scripts"
    assert not any(c[0] == "systemctl" for c in host.commands)


def test_named_unit_is_checked_too() -> None:
    other = {**DEBIAN_UNIT, "Environment": "CATALINA_BASE=/srv/a"}
    host = ScriptedHost(systemd=True, units={"tomcat-a": other, "tomcat10": DEBIAN_UNIT}, files=HOME_FILES)
    assert restart.plan_restart(host, "/srv/a", service="tomcat-a").unit == "tomcat-a"
    plan = restart.plan_restart(host, "/var/lib/tomcat10", service="tomcat-a")
    assert plan.method == "scripts"  # the named unit runs another Tomcat


def test_unit_without_base_runs_its_home() -> None:
    unit = {"LoadState": "loaded", "Environment": "CATALINA_HOME=/opt/tomcat JAVA_HOME=/usr/lib/jvm/x",
            "ExecStart": "{ path=/opt/tomcat/bin/catalina.sh ; argv[]=/opt/tomcat/bin/catalina.sh run }"}
    host = ScriptedHost(systemd=True, units={"tomcat": unit}, files=["/opt/tomcat/bin/catalina.sh"])
    assert restart.plan_restart(host, "/opt/tomcat").unit == "tomcat"


def test_own_scripts_and_running_process_decide_home_and_user() -> None:
    ps = ("  4242   995 /usr/lib/jvm/java-17/bin/java -Dcatalina.base=/opt/tc -Dcatalina.home=/opt/tc "
          "org.apache.catalina.startup.Bootstrap start\n"
          "  4343     0 /usr/bin/java -Dcatalina.base=/opt/other org.apache.catalina.startup.Bootstrap start\n")
    host = ScriptedHost(systemd=False, files=["/opt/tc/bin/catalina.sh", "/opt/tc/bin/startup.sh",
                                              "/opt/tc/bin/shutdown.sh"], ps=ps)
    plan = restart.plan_restart(host, "/opt/tc")
    assert (plan.home, plan.startup, plan.shutdown, plan.run_as) == (
        "/opt/tc", "/opt/tc/bin/startup.sh", "/opt/tc/bin/shutdown.sh", "tomcat")
    assert [p.pid for p in restart.tomcat_processes(host, "/opt/tc")] == [4242]


def test_not_root_runs_as_itself() -> None:
    host = ScriptedHost(systemd=False, files=HOME_FILES, root=False)
    assert restart.plan_restart(host, "/srv/tc").run_as is None


def test_no_catalina_anywhere_is_a_clear_error() -> None:
    from tlsgate import OperationError

    with pytest.raises(OperationError, match="--tomcat_home"):
        restart.plan_restart(ScriptedHost(systemd=False), "/srv/tc")


def test_base_set_only_in_an_environment_file() -> None:
    unit = {"LoadState": "loaded", "Environment": "", "EnvironmentFiles": "/etc/default/tc-a (ignore_errors=yes)",
            "ExecStart": "{ path=/opt/tc/bin/catalina.sh ; argv[]=/opt/tc/bin/catalina.sh run }"}
    host = ScriptedHost(systemd=True, units={"tomcat": unit}, files=HOME_FILES)
    host.contents["/etc/default/tc-a"] = b"# site A\nCATALINA_HOME=/opt/tc\nCATALINA_BASE=\"/srv/tc-a\"\n"
    assert restart.plan_restart(host, "/srv/tc-a").unit == "tomcat"
    assert restart.plan_restart(host, "/srv/tc-b").method == "scripts"
