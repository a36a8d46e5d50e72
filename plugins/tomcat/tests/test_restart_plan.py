"""How the driver chooses to restart Tomcat (systemd only when a running unit serves this
CATALINA_BASE; else the scripts), on a scripted host: systemd cannot run in this container."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from tlsgate import FileStat, OperationError
from tlsgate_testing.fake import FakeConnection
from tlsgate_tomcat import restart

DEBIAN_UNIT = {
    "LoadState": "loaded",
    "Environment": "CATALINA_HOME=/usr/share/tomcat10 CATALINA_BASE=/var/lib/tomcat10 CATALINA_TMPDIR=/tmp",
    "ExecStart": "{ path=/bin/sh ; argv[]=/bin/sh /usr/libexec/tomcat10/tomcat-start.sh ; ignore_errors=no }",
}


class ScriptedHost(FakeConnection):
    """Answers the commands the restart planner runs (systemctl show, readlink, ps, id); records
    them. ``logs/`` of any base is owned by uid 995 (tomcat), as Debian's package makes it."""

    def __init__(self, *, systemd: bool, units: Mapping[str, Mapping[str, str]] | None = None,
                 files: Sequence[str] = (), ps: str = "", root: bool = True,
                 links: Mapping[str, str] | None = None) -> None:
        super().__init__(dict.fromkeys(files, b"#!/bin/sh\n"), commands=self._answer, systemd=systemd, admin=root)
        self.units = units or {}
        self.ps = ps
        self.links = dict(links or {})

    def _answer(self, argv: tuple[str, ...]) -> tuple[int, str] | tuple[int, str, str]:
        if argv[:2] == ("systemctl", "show"):
            unit = self.units.get(argv[-1])
            if unit is None:
                return 0, "LoadState=not-found\nEnvironment=\nExecStart=\n"
            return 0, "".join(f"{k}={v}\n" for k, v in unit.items())
        if argv[:2] == ("readlink", "-f"):
            return 0, self.links.get(argv[-1], argv[-1]) + "\n"
        if argv[0] == "ps":
            return 0, self.ps
        if argv[:2] == ("id", "-u"):
            return 0, "0\n" if self.admin else "1000\n"
        if argv[:2] == ("id", "-nu"):
            return 0, {"995": "tomcat"}.get(argv[2], "u" + argv[2]) + "\n"
        return 1, "", "unexpected"

    def stat(self, path: str) -> FileStat | None:
        if path.endswith("/logs"):
            return FileStat(size=0, mode=0o755, mtime=0, uid=995, gid=995, is_dir=True)
        return super().stat(path)


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
    assert not any(c[0] == "systemctl" for c in host.ran)


def test_named_unit_is_checked_too() -> None:
    other = {**DEBIAN_UNIT, "Environment": "CATALINA_BASE=/srv/a"}
    host = ScriptedHost(systemd=True, units={"tomcat-a": other, "tomcat10": DEBIAN_UNIT}, files=HOME_FILES)
    assert restart.plan_restart(host, "/srv/a", service="tomcat-a").unit == "tomcat-a"
    # the named unit runs another Tomcat: an error, not a restart by the scripts behind systemd's
    # back (a mistyped unit of a systemd-run Tomcat would leave the unit failed, or restarting it
    # beside a second JVM)
    with pytest.raises(OperationError, match="--tomcat_service tomcat-a: no loaded systemd unit of that name runs "
                                             "/var/lib/tomcat10"):
        restart.plan_restart(host, "/var/lib/tomcat10", service="tomcat-a")
    no_systemd = ScriptedHost(systemd=False, files=HOME_FILES)
    with pytest.raises(OperationError, match="--tomcat_service tomcat10: systemd is not running there"):
        restart.plan_restart(no_systemd, "/var/lib/tomcat10", service="tomcat10")


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
    host.files["/etc/default/tc-a"] = b"# site A\nCATALINA_HOME=/opt/tc\nCATALINA_BASE=\"/srv/tc-a\"\n"
    assert restart.plan_restart(host, "/srv/tc-a").unit == "tomcat"
    assert restart.plan_restart(host, "/srv/tc-b").method == "scripts"
