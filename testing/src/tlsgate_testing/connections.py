"""The core's own transports, for plugin tests that drive hooks directly over a real connection.

A gateway opens connections through ``registry.connect``; a plugin's code gets one as a hook
argument and never imports a transport (its ``src`` imports only :mod:`tlsgate.plugin`). Tests
that build a connection themselves, or check the exact PowerShell command line a Windows
transport sends, import them from here rather than from the core's internals.
"""

from __future__ import annotations

from tlsgate.transports import ssh, windows
from tlsgate.transports.local import LocalConnection
from tlsgate.transports.windows import (
    CMD_EXE_LIMIT,
    STDIN_PRELUDE,
    is_absolute_windows_path,
    local_powershell_program,
    powershell_command_line,
)

__all__ = ["CMD_EXE_LIMIT", "STDIN_PRELUDE", "LocalConnection", "is_absolute_windows_path", "local_powershell_program",
           "powershell_command_line", "ssh", "windows"]
