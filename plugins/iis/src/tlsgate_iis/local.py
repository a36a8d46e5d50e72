"""Which connections the IIS driver can run its PowerShell templates over.

Every Windows transport (``ssh_windows``, ``winrm_*``) runs them itself, and so does ``local`` on
a Windows gateway: the core's local connection hands templates to its one local PowerShell
runner (``powershell.exe`` started directly, the native one under WOW64; see
:func:`tlsgate.transports.windows.local_powershell_program`). The driver adds no runner of its own.
"""

from __future__ import annotations

from tlsgate.plugin import Connection, OperationError


def powershell_connection(connection: Connection) -> Connection:
    """``connection`` when it runs PowerShell templates (a Windows host), else a clear refusal."""
    if connection.platform == "windows":
        return connection
    raise OperationError(
        f"{connection.host}: IIS endpoints are managed with PowerShell over local (on a Windows gateway), "
        "ssh_windows, winrm_http, winrm_https or winrm_https_insecure"
    )
