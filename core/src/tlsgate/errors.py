"""Typed errors. The CLI maps them to exit codes: ValidationError -> 2, OperationError -> 1.

Every error says what was wrong with which input (the option, the file, the host, the rule) in
one line an operator can act on. None of them ever carries a secret.
"""

from __future__ import annotations


class TlsgateError(Exception):
    """Base class of every error tlsgate raises on purpose."""

    exit_code = 1


class ValidationError(TlsgateError):
    """Invalid input from the user: an option, a file, a name. Exit status 2.

    ``option`` names the command-line flag (``--port``) or input the problem is about.
    """

    exit_code = 2

    def __init__(self, message: str, *, option: str | None = None) -> None:
        self.option = option
        super().__init__(f"{option}: {message}" if option else message)


class NotFoundError(ValidationError):
    """A named thing (endpoint, organization, certificate, store) does not exist."""


class OperationError(TlsgateError):
    """An operation failed: connection, authentication, install rolled back, ... Exit status 1.

    ``rolled_back`` is True when a transaction restored what it had changed.
    """

    exit_code = 1

    def __init__(self, message: str, *, rolled_back: bool = False, host: str | None = None) -> None:
        self.rolled_back = rolled_back
        self.host = host
        super().__init__(message)


class FileChanged(OperationError):
    """A file changed between the moment a job read (backed up) it and the moment it would have
    replaced it: another job or a person edited it. Nothing was written over it."""

    def __init__(self, host: str, path: str) -> None:
        self.path = path
        super().__init__(f"{host}: {path} changed since this job read it (another job or a person "
                         "edited it); not overwritten", host=host)


class ConnectionFailed(OperationError):
    """The transport could not reach or authenticate to the host."""


class HostKeyError(ConnectionFailed):
    """The host's SSH key is unknown or changed; ``fingerprint`` is what the host presented."""

    def __init__(self, message: str, *, fingerprint: str, host: str | None = None) -> None:
        self.fingerprint = fingerprint
        super().__init__(message, host=host)


class CommandFailed(OperationError):
    """A command run through a Connection exited non-zero (raised by ``run(..., check=True)``)."""

    def __init__(self, message: str, *, exit_code: int, stdout: str = "", stderr: str = "") -> None:
        self.command_exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(message)


class PluginError(TlsgateError):
    """A plugin failed to load or declared something invalid; names the plugin and distribution."""
