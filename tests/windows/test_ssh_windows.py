"""The ssh_windows transport against a real OpenSSH sshd whose "Windows" is the simulated host:
``powershell`` on the session PATH is the host's shim, and the SFTP subsystem maps Win32-OpenSSH's
``/C:/...`` drive paths into the host's directory."""

from __future__ import annotations

import base64
import os
import re

import pytest
from tlsgate.errors import ConnectionFailed, HostKeyError, OperationError
from tlsgate.registry import get_registry
from tlsgate.secret import Secret
from tlsgate.transports.ssh_windows import SSHWindowsConnection, windows_sftp_path
from tlsgate_testing.winrm_fixtures import SSHWindowsHost

COMMAND = re.compile(r"\Apowershell -NoProfile -NonInteractive -EncodedCommand [A-Za-z0-9+/]+={0,2}\Z")


def test_sftp_path_form() -> None:
    assert windows_sftp_path(r"C:\ProgramData\x y\k.pfx") == "/C:/ProgramData/x y/k.pfx"
    assert windows_sftp_path("d:/certs/a.pem") == "/D:/certs/a.pem"
    assert windows_sftp_path(r"\\server\share\a.pem") is None
    assert windows_sftp_path("relative\\a.pem") is None


def test_declared_type(tlsgate_home) -> None:  # type: ignore[no-untyped-def]
    t = get_registry().connection_types["ssh_windows"]
    assert (t.default_port, t.platform, t.insecure) == (22, "windows", False)


def test_files_and_commands_over_ssh_windows(winssh: SSHWindowsHost) -> None:
    winssh.seed(r"C:\ProgramData\App\conf.xml", b"<conf/>")
    data = os.urandom(50_000)  # many WinRM chunks' worth: goes over SFTP in one piece
    before = len(winssh.calls())
    with get_registry().connect(winssh.endpoint(), winssh.credentials()) as conn:
        assert isinstance(conn, SSHWindowsConnection) and conn.platform == "windows"
        assert conn.read_file(r"C:\ProgramData\App\conf.xml") == b"<conf/>"
        conn.makedirs(r"C:\ProgramData\tlsgate")
        path = r"C:\ProgramData\tlsgate\store one.p12"
        conn.write_file(path, data, mode=0o600)
        assert conn.read_file(path) == data
        st = conn.stat(path)
        assert st is not None and st.size == len(data) and st.mode == 0o600
        conn.write_file(path, b"second", mode=0o600)  # replaces atomically
        assert conn.read_file(path) == b"second"
        conn.rename(path, r"C:\ProgramData\tlsgate\renamed.p12")
        assert conn.listdir(r"C:\ProgramData\tlsgate") == ["renamed.p12"]
        conn.remove(r"C:\ProgramData\tlsgate\renamed.p12")
        assert conn.stat(r"C:\ProgramData\tlsgate\renamed.p12") is None
        with pytest.raises(OperationError, match="no such file"):
            conn.read_file(r"C:\nope.pem")
        assert conn.is_admin() is True
        res = conn.run(["no-such-program", "a b"], stdin=b"STDIN-S3CRET", env={"PFX_PASSWORD": "ENV-S3CRET"})
        assert res.exit_code == 127 and "command not found" in res.stderr
    assert winssh.read(r"C:\ProgramData\App\conf.xml") == b"<conf/>"
    calls = winssh.calls()[before:]
    templates = [c["template"] for c in calls]
    assert "file-write-begin" in templates and "file-write-commit" in templates
    assert "file-write-chunk" not in templates  # the bytes went over SFTP
    run = next(c for c in calls if c["template"] == "run-program")
    assert run["params"] == {"argv": ["no-such-program", "a b"]}
    assert run["secret_params"]["env"] == {"PFX_PASSWORD": "ENV-S3CRET"}  # arrived, over stdin
    for call in calls:
        script = base64.b64decode(call["command_line"].rsplit(" ", 1)[1]).decode("utf-16-le")
        assert "S3CRET" not in script and base64.b64encode(b"STDIN-S3CRET").decode() not in script
    commit = next(c for c in calls if c["template"] == "file-write-commit")
    assert commit["params"]["private"] is True and len(commit["params"]["sha256"]) == 64


def test_drive_paths_use_win32_openssh_absolute_form(winssh: SSHWindowsHost) -> None:
    with get_registry().connect(winssh.endpoint(), winssh.credentials()) as conn:
        assert isinstance(conn, SSHWindowsConnection)
        sftp = conn._ssh.sftp
        assert sftp.normalize(".") == f"/C:/Users/{winssh.user}"  # REALPATH answers as Windows does
        with sftp.open("/C:/Windows/Temp/abs.txt", "wb") as fh:
            fh.write(b"absolute")
        with pytest.raises(FileNotFoundError):  # bare "C:/...": relative to the home directory
            sftp.open("C:/Windows/Temp/rel.txt", "wb")
    assert winssh.read(r"C:\Windows\Temp\abs.txt") == b"absolute"
    assert not winssh.exists(r"C:\Windows\Temp\rel.txt")


def test_programs_registered_by_a_plugin_run_with_stdin(winssh: SSHWindowsHost) -> None:
    with get_registry().connect(winssh.endpoint(), winssh.credentials()) as conn:
        assert conn.run(["hostname"], check=True).stdout.strip() == "WIN-TLSGATE"
        res = conn.run(["findstr", "^"], stdin="päss 'w0rd'; $(x)\n".encode())
        assert (res.exit_code, res.stdout) == (0, "päss 'w0rd'; $(x)\n")
        assert conn.which("whoami") and conn.which("nothere") is None


def test_command_line_is_encoded_powershell(winssh: SSHWindowsHost) -> None:
    with get_registry().connect(winssh.endpoint(), winssh.credentials()) as conn:
        assert isinstance(conn, SSHWindowsConnection)
        seen = []
        real = conn._ssh.exec

        def spy(command, *args, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(command)
            return real(command, *args, **kwargs)

        conn._ssh.exec = spy
        conn.run(["x", "$(rm -rf /)", "a'b\"c"])
        assert seen and all(COMMAND.match(c) for c in seen)


def test_unknown_host_key_and_wrong_password(ssh_windows_host: SSHWindowsHost, tlsgate_home, tmp_path,  # type: ignore[no-untyped-def]
                                             monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(HostKeyError):
        get_registry().connect(ssh_windows_host.endpoint(), ssh_windows_host.credentials())
    from tlsgate.models import Credentials
    from tlsgate.transports import ssh

    ssh.trust_host_key(ssh_windows_host.host, ssh_windows_host.port, ssh_windows_host.host_key_public)
    wrong = "wrong pw;$(x)"
    with pytest.raises(ConnectionFailed) as err:
        get_registry().connect(ssh_windows_host.endpoint(),
                               Credentials(user=ssh_windows_host.user, password=Secret(wrong)))
    assert "authentication failed" in str(err.value) and wrong not in str(err.value)


def test_without_sftp_files_go_through_powershell(winssh: SSHWindowsHost) -> None:
    data = os.urandom(70_000)
    with get_registry().connect(winssh.endpoint(), winssh.credentials()) as conn:
        assert isinstance(conn, SSHWindowsConnection)
        conn._sftp_ok = False  # as on a host whose sshd_config has no sftp subsystem
        before = len(winssh.calls())
        conn.makedirs(r"C:\nosftp")
        conn.write_file(r"C:\nosftp\k.bin", data, mode=0o600)
        assert conn.read_file(r"C:\nosftp\k.bin") == data
    templates = [c["template"] for c in winssh.calls()[before:]]
    assert "file-write-chunk" in templates and "file-read" in templates
    assert winssh.read(r"C:\nosftp\k.bin") == data
