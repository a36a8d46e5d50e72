"""Finding the running master (systemd or not), and the install's edit rules, without a server."""

from __future__ import annotations

import pytest
from nginx_helpers import MemoryConnection
from tlsgate import CertificateBundle, OperationError
from tlsgate.plugin import apply_edits
from tlsgate_nginx.config import load
from tlsgate_nginx.control import find_control
from tlsgate_nginx.install import plan_edits
from tlsgate_testing.certs import TestCA

SYSTEMD_CHECK = ("sh", "-c", "test -d /run/systemd/system && command -v systemctl >/dev/null")
MAIN_PID = ("systemctl", "show", "--property=MainPID", "--value", "nginx.service")
WHICH = ("sh", "-c", 'command -v -- "$1"', "sh", "nginx")


def title(text: str) -> bytes:
    return text.encode().replace(b" ", b"\x00") + b"\x00"


def test_debian_systemd_instance_reloads_through_systemctl() -> None:
    conn = MemoryConnection(
        {
            "/etc/nginx/nginx.conf": b"pid /run/nginx.pid;\nevents {}\nhttp {}\n",
            "/run/nginx.pid": b"1234\n",
            "/proc/1234/cmdline": b"nginx: master process /usr/sbin/nginx -g daemon on; master_process on;" + b"\0" * 20,
        },
        {SYSTEMD_CHECK: (0, ""), MAIN_PID: (0, "1234\n")},
    )
    control = find_control(conn, load(conn, "/etc/nginx/nginx.conf"))
    assert control.running and control.systemd_unit == "nginx.service"
    assert control.reload_argv() == ["systemctl", "reload", "nginx.service"]
    assert control.test_argv() == [
        "/usr/sbin/nginx", "-c", "/etc/nginx/nginx.conf", "-g", "daemon on; master_process on;", "-t"
    ]


def test_private_instance_is_signalled_with_its_own_prefix_and_config() -> None:
    conn = MemoryConnection(
        {
            "/srv/ng/nginx.conf": b"pid /srv/ng/logs/nginx.pid;\nhttp {}\n",
            "/srv/ng/logs/nginx.pid": b"77",
            "/proc/77/cmdline": title("nginx: master process /opt/nginx/sbin/nginx -p /srv/ng -e /srv/ng/logs/e.log "
                                      "-c /srv/ng/nginx.conf"),
        },
        {SYSTEMD_CHECK: (0, ""), MAIN_PID: (0, "1\n")},  # systemd runs, but not this nginx
    )
    control = find_control(conn, load(conn, "/srv/ng/nginx.conf"))
    assert control.systemd_unit is None
    assert control.reload_argv() == [
        "/opt/nginx/sbin/nginx", "-p", "/srv/ng", "-e", "/srv/ng/logs/e.log", "-c", "/srv/ng/nginx.conf", "-s", "reload"
    ]


def test_relative_pid_uses_the_compiled_prefix_and_stale_pids_mean_not_running() -> None:
    version = "nginx version: nginx/1.22.1\nconfigure arguments: --prefix=/usr/share/nginx --pid-path=/run/nginx.pid"
    files = {"/etc/nginx/nginx.conf": b"pid logs/ng.pid; http {}", "/usr/share/nginx/logs/ng.pid": b"999999\n"}
    conn = MemoryConnection(files, {WHICH: (0, "/usr/sbin/nginx\n"), ("/usr/sbin/nginx", "-V"): (0, version)})
    control = find_control(conn, load(conn, "/etc/nginx/nginx.conf"))
    assert control.pid_file == "/usr/share/nginx/logs/ng.pid"
    assert not control.running  # no /proc/999999: a stale pid file
    # no pid directive: the compiled --pid-path
    files = {"/etc/nginx/nginx.conf": b"http {}", "/run/nginx.pid": b"5", "/proc/5/cmdline": title("bash")}
    conn = MemoryConnection(files, {WHICH: (0, "/usr/sbin/nginx\n"), ("/usr/sbin/nginx", "-V"): (0, version)})
    control = find_control(conn, load(conn, "/etc/nginx/nginx.conf"))
    assert control.pid_file == "/run/nginx.pid" and not control.running  # pid 5 is not nginx


_CA = TestCA("edits", key_type="ec")


def _bundle(kind: str = "ec") -> CertificateBundle:
    issued = _CA.issue("a.test", key_type=kind)
    return CertificateBundle.from_pem(issued.cert_pem, issued.key_pem)


def test_shared_snippet_is_changed_only_when_every_user_is_chosen() -> None:
    files = {
        "/e/nginx.conf": b"http { include s/*.conf; }",
        "/e/s/a.conf": b"server { listen 1 ssl; server_name a.test; include ssl.inc; }",
        "/e/s/b.conf": b"server { listen 2 ssl; server_name b.test; include ssl.inc; }",
        "/e/ssl.inc": b"ssl_certificate /c/shared.pem;  # both\nssl_certificate_key /c/shared.key;\n",
    }
    conn = MemoryConnection(files)
    config = load(conn, "/e/nginx.conf")
    a, b = config.servers
    with pytest.raises(OperationError, match=r"shared with server blocks not chosen: b\.test"):
        plan_edits(config, conn, [a], _bundle(), "/n/c.pem", "/n/k.pem")
    edits = plan_edits(config, conn, [a, b], _bundle(), "/n/c.pem", "/n/k.pem")
    assert list(edits) == ["/e/ssl.inc"]
    assert apply_edits(files["/e/ssl.inc"], edits["/e/ssl.inc"]) == (
        b"ssl_certificate /n/c.pem;  # both\nssl_certificate_key /n/k.pem;\n"
    )


def test_variable_paths_are_not_replaced() -> None:
    conn = MemoryConnection({"/e/n.conf": b"http { server { listen 1 ssl; ssl_certificate /c/$ssl_server_name.pem;"
                                          b" ssl_certificate_key /c/$ssl_server_name.key; } }"})
    config = load(conn, "/e/n.conf")
    with pytest.raises(OperationError, match="uses variables"):
        plan_edits(config, conn, config.servers, _bundle(), "/n/c.pem", "/n/k.pem")


def test_dual_certificate_block_replaces_the_pair_of_the_same_key_type() -> None:
    rsa_cert, ec_cert = _CA.issue("a.test", key_type="rsa"), _CA.issue("a.test", key_type="ec")
    text = (b"http { server { listen 1 ssl;\n ssl_certificate /c/rsa.pem; ssl_certificate_key /c/rsa.key;\n"
            b" ssl_certificate /c/ec.pem; ssl_certificate_key /c/ec.key; } }")
    conn = MemoryConnection({"/e/n.conf": text, "/c/rsa.pem": rsa_cert.cert_pem, "/c/ec.pem": ec_cert.cert_pem})
    config = load(conn, "/e/n.conf")
    for kind, kept, replaced in (("rsa", b"/c/ec.", b"/c/rsa."), ("ec", b"/c/rsa.", b"/c/ec.")):
        edits = plan_edits(config, conn, config.servers, _bundle(kind), "/n/c.pem", "/n/k.pem")
        out = apply_edits(text, edits["/e/n.conf"])
        assert kept + b"pem" in out and kept + b"key" in out and replaced + b"pem" not in out, kind


def test_unpaired_directives_are_refused() -> None:
    conn = MemoryConnection({"/e/n.conf": b"http { server { listen 1 ssl; ssl_certificate /c/a.pem; "
                                          b"ssl_certificate /c/b.pem; ssl_certificate_key /c/a.key; } }"})
    config = load(conn, "/e/n.conf")
    with pytest.raises(OperationError, match="2 ssl_certificate but 1 ssl_certificate_key"):
        plan_edits(config, conn, config.servers, _bundle(), "/n/c.pem", "/n/k.pem")


def test_include_loop_is_reported() -> None:
    conn = MemoryConnection({"/e/n.conf": b"http { include n.conf; }"})
    with pytest.raises(OperationError, match="include loop"):
        load(conn, "/e/n.conf")
