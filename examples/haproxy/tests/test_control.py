"""How the driver reloads HAProxy, on scripted hosts (the kit's FakeConnection): systemd only
when haproxy.service's main process runs this configuration; SIGUSR2 to a private master;
-sf for a private daemon; a foreground process without a master is refused."""

from __future__ import annotations

import pytest
from tlsgate.plugin import OperationError
from tlsgate_haproxy.control import find_control
from tlsgate_testing.fake import FakeConnection

CFG = "/etc/haproxy/haproxy.cfg"


def host(procs: dict[int, tuple[int, list[str]]], *, systemd: bool = False, main_pid: int = 0) -> FakeConnection:
    def answer(argv: tuple[str, ...]):  # type: ignore[no-untyped-def]
        if argv[:2] == ("ps", "-eo"):
            return 0, "".join(f"{pid:>6} {ppid:>6} haproxy\n" for pid, (ppid, _) in procs.items()) + "    1     0 init\n"
        if argv[0] == "cat" and argv[1].startswith("/proc/"):
            return 0, "\0".join(procs[int(argv[1].split("/")[2])][1]) + "\0"
        if argv[:2] == ("readlink", "-f"):
            return 0, argv[-1] + "\n"
        if argv[:2] == ("systemctl", "show"):
            return 0, f"ActiveState={'active' if main_pid else 'inactive'}\nMainPID={main_pid}\n"
        if argv[:3] == ("sh", "-c", 'command -v -- "$1"'):
            return 0, "/usr/sbin/haproxy\n"
        return None

    return FakeConnection(commands=answer, systemd=systemd)


DEBIAN = {100: (1, ["/usr/sbin/haproxy", "-Ws", "-f", CFG, "-p", "/run/haproxy.pid", "-S", "/run/haproxy-master.sock"]),
          101: (100, ["/usr/sbin/haproxy", "-Ws", "-f", CFG, "-p", "/run/haproxy.pid"])}


def test_systemd_unit_whose_main_process_runs_this_config() -> None:
    control = find_control(host(DEBIAN, systemd=True, main_pid=100), CFG)
    assert control.method == "systemd" and control.reload_argv() == ["systemctl", "reload", "haproxy.service"]
    assert control.test_argv() == ["/usr/sbin/haproxy", "-c", "-q", "-f", CFG]


def test_systemd_running_another_config_is_not_proof() -> None:
    procs = {**DEBIAN, 200: (1, ["/usr/sbin/haproxy", "-W", "-f", "/srv/lb/h.cfg"])}
    control = find_control(host(procs, systemd=True, main_pid=100), "/srv/lb/h.cfg")
    assert control.method == "master" and control.reload_argv() == ["kill", "-USR2", "200"]


def test_private_master_gets_sigusr2() -> None:
    control = find_control(host(DEBIAN), CFG)  # systemd not running: the master itself
    assert control.reload_argv() == ["kill", "-USR2", "100"]


def test_private_daemon_is_started_again_with_sf() -> None:
    procs = {300: (1, ["/usr/sbin/haproxy", "-D", "-f", CFG, "-p", "/run/h.pid", "-sf", "250"]),
             301: (1, ["/usr/sbin/haproxy", "-D", "-f", CFG, "-p", "/run/h.pid", "-sf", "250"])}
    control = find_control(host(procs), CFG)
    assert control.reload_argv() == ["/usr/sbin/haproxy", "-D", "-f", CFG, "-p", "/run/h.pid", "-sf", "300", "301"]


def test_foreground_without_master_is_refused() -> None:
    with pytest.raises(OperationError, match="foreground without master-worker"):
        find_control(host({400: (1, ["/usr/sbin/haproxy", "-f", CFG])}), CFG)
    assert find_control(host({400: (1, ["/usr/sbin/haproxy", "-f", CFG])}), CFG, daemon_config=True).method == "sf"


def test_not_running() -> None:
    control = find_control(host({}), CFG)
    assert not control.running
    with pytest.raises(OperationError, match="not running"):
        control.reload_argv()
