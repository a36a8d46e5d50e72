"""The ``ssh_windows`` transport: Win32-OpenSSH on a Windows host (paramiko, imported lazily).

It reuses the ``ssh`` transport's connection setup (host-key checks against known_hosts,
password/key auth, TCP_NODELAY, clear errors) and its SFTP session, and the Windows side shared
with WinRM (:mod:`.windows`): every command is ``powershell -NoProfile -NonInteractive
-EncodedCommand <base64 UTF-16LE>`` running a fixed template with its parameters in ``$P``, and
writes are begin (temporary file, ACL first) / transfer / commit (SHA-256 check, File.Replace).

Commands: sshd hands the command to the account's default shell, which is cmd.exe unless
``HKLM:\\SOFTWARE\\OpenSSH\\DefaultShell`` names PowerShell; both run this command line as is, and
cmd.exe's 8,191-character limit applies, so :class:`WindowsConnection`'s limit check stays on.

Files: the bytes go over SFTP (no chunking through the command line). Win32-OpenSSH's
sftp-server spells a drive path as ``/C:/dir/file``: its REALPATH answers ``/C:/Users/name``, and
a bare ``C:/dir/file`` is taken as *relative* to the user's home directory (PowerShell/Win32-
OpenSSH issues #476 and #48; curl PR #5298 "OpenSSH for Windows requires paths in the format of
/C:/"; leynier/alera PR #682). :func:`windows_sftp_path` makes that form. UNC paths have no SFTP
form; they go through PowerShell (read and chunked write) like WinRM.
"""

from __future__ import annotations

import functools
import ntpath
from typing import Any

from ..errors import ConnectionFailed, OperationError
from ..models import ConnectionType, Credentials, Endpoint
from ..plugin import impl
from .windows import WindowsConnection

DEFAULT_PORT = 22

SSH_WINDOWS = ConnectionType(
    "ssh_windows",
    "Win32-OpenSSH on Windows: PowerShell commands over exec, files over SFTP.",
    default_port=DEFAULT_PORT,
    platform="windows",
    host_keys=True,
)


def windows_sftp_path(path: str) -> str | None:
    """``C:\\dir\\file`` -> ``/C:/dir/file`` (Win32-OpenSSH's absolute form); None for UNC paths."""
    drive, rest = ntpath.splitdrive(path)
    if len(drive) != 2 or drive[1] != ":" or rest[:1] not in ("\\", "/"):
        return None
    return "/" + drive.upper() + rest.replace("\\", "/")


class SSHWindowsConnection(WindowsConnection):
    """PowerShell over SSH exec channels, file content over the ssh transport's SFTP session."""

    def __init__(self, ssh: Any) -> None:
        self._ssh = ssh  # a tlsgate.transports.ssh.SSHConnection whose sftp_path maps drive paths
        self.host = ssh.host
        self.port = ssh.port
        self._sftp_ok: bool | None = None  # None: not tried yet

    def _sftp_available(self) -> bool:
        """Whether the host offers SFTP; without it, files go through PowerShell like WinRM."""
        if self._sftp_ok is None:
            try:
                self._ssh.sftp  # noqa: B018 - opens the session
                self._sftp_ok = True
            except ConnectionFailed:
                if not self._ssh.is_open:
                    raise
                self._sftp_ok = False
        return self._sftp_ok

    def _execute(self, command_line: str, *, timeout: float | None, what: str,
                 stdin: bytes | None = None) -> tuple[int, str, str]:
        res = self._ssh.exec(command_line, stdin or b"", timeout=timeout, argv=("powershell", what))
        return res.exit_code, res.stdout, res.stderr

    def read_file(self, path: str) -> bytes:
        if windows_sftp_path(self._abs(path)) is None or not self._sftp_available():
            return super().read_file(path)
        return bytes(self._ssh.read_file(path))

    def _upload(self, tmp: str, data: bytes) -> None:
        remote = windows_sftp_path(tmp)
        if remote is None or not self._sftp_available():
            super()._upload(tmp, data)
            return
        # The file exists (file-write-begin created it and restricted its ACL); truncating an
        # existing file keeps its security descriptor.
        with self._ssh._sftp_errors(tmp, "write"), self._ssh.sftp.open(remote, "wb") as fh:
            fh.set_pipelined(True)
            view = memoryview(data)
            for offset in range(0, len(view), 1 << 18):
                fh.write(view[offset:offset + (1 << 18)])
            fh.flush()

    @property
    def is_open(self) -> bool:
        return bool(self._ssh.is_open)

    def close(self) -> None:
        self._ssh.close()


@functools.cache
def _windows_sftp_class() -> type:
    """The ssh transport's connection with drive paths spelled for Win32-OpenSSH's SFTP server."""
    from .ssh import SSHConnection

    class WindowsSFTPConnection(SSHConnection):
        platform = "windows"

        def sftp_path(self, path: str) -> str:
            mapped = windows_sftp_path(path)
            if mapped is None:
                raise OperationError(f"{self.host}: {path}: no SFTP form for this path", host=self.host)
            return mapped

        def realpath(self, path: str) -> str:
            return path  # the Windows side resolves nothing here; see WindowsConnection.realpath

    return WindowsSFTPConnection


def connect_ssh_windows(endpoint: Endpoint, credentials: Credentials) -> SSHWindowsConnection:
    """Open the SSH connection (host key verified, authenticated) for an ssh_windows endpoint."""
    from . import ssh

    client = ssh.open_ssh_client(endpoint, credentials)
    inner = _windows_sftp_class()(
        client,
        host=endpoint.connection.host or "",
        port=int(endpoint.connection.port or DEFAULT_PORT),
        user=credentials.user or endpoint.connection.user or "",
    )
    return SSHWindowsConnection(inner)


@impl
def tlsgate_connection_types() -> list[ConnectionType]:
    return [SSH_WINDOWS]


@impl
def connect(endpoint: Endpoint, credentials: Credentials) -> WindowsConnection | None:
    if endpoint.connection.type != "ssh_windows":
        return None
    return connect_ssh_windows(endpoint, credentials)
