"""``local`` IIS endpoints on a Windows gateway: the fixed templates run through a local
``powershell.exe``.

The core's local transport runs programs but has no PowerShell template runner, so the driver
wraps it: :class:`LocalPowerShell` is a :class:`~tlsgate.transports.windows.WindowsConnection`
whose command line is started directly with CreateProcess (no cmd.exe, so the limit is 32,767
characters), and whose files go through the same templates as over WinRM.
"""

from __future__ import annotations

import subprocess

from tlsgate.plugin import POWERSHELL_PREFIX, Connection, OperationError, WindowsConnection

#: CreateProcess' command-line limit.
CREATE_PROCESS_LIMIT = 32767


class LocalPowerShell(WindowsConnection):
    """Runs each template with the gateway's own ``powershell``."""

    max_command_line = CREATE_PROCESS_LIMIT

    def __init__(self, local: Connection | None = None, *, program: str = "powershell") -> None:
        self._local = local
        self.program = program
        self.host = getattr(local, "host", "localhost")

    def _execute(self, command_line: str, *, timeout: float | None, what: str,
                 stdin: bytes | None = None) -> tuple[int, str, str]:
        if not command_line.startswith(POWERSHELL_PREFIX):
            raise OperationError(f"{self.host}: unexpected PowerShell command line for {what}")
        argv = [self.program, *POWERSHELL_PREFIX.split()[1:], command_line[len(POWERSHELL_PREFIX):]]
        try:
            proc = subprocess.run(argv, input=stdin or b"", capture_output=True, timeout=timeout, check=False)
        except FileNotFoundError:
            raise OperationError(f"{self.host}: {self.program} not found on the gateway", host=self.host) from None
        except subprocess.TimeoutExpired:
            raise OperationError(f"{self.host}: {what} did not finish within {timeout:g} s", host=self.host) from None
        return (proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))

    def close(self) -> None:
        """Nothing to release: each template is its own process (the core closes ``local``)."""


def powershell_connection(connection: Connection) -> Connection:
    """``connection`` when it runs PowerShell templates itself, else the local wrapper."""
    if isinstance(connection, WindowsConnection):
        return connection
    if connection.platform == "windows":
        return LocalPowerShell(connection)
    raise OperationError(
        f"{connection.host}: IIS endpoints are managed with PowerShell over local (on a Windows gateway), "
        "ssh_windows, winrm_http, winrm_https or winrm_https_insecure"
    )
