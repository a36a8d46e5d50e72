"""The winrm_http, winrm_https and winrm_https_insecure transports (pywinrm, imported lazily).

* ``winrm_http`` (5985): NTLM by default, and NTLM over http seals every message (pywinrm's
  ``message_encryption="auto"``). Basic over http sends the password in clear and only works
  where the host allows unencrypted traffic; kerberos needs pykerberos on the gateway.
* ``winrm_https`` (5986): the server certificate is verified against ``--ca_bundle`` when given,
  else the system's trust store.
* ``winrm_https_insecure`` (5986): no verification; the connection says ``insecure=True`` so
  ``tls show`` and the audit log can say so.

One WinRM shell is opened per connection and every command runs in it (Create once, then
Command/Receive/Signal per command, Delete at close): one NTLM handshake per job instead of one
per command, which matters because files move in chunks (see :mod:`.windows`).
"""

from __future__ import annotations

import os
import ssl
import time
from typing import Any

import attrs

from ..errors import ConnectionFailed, OperationError
from ..models import ConnectionType, Credentials, Endpoint, Problem
from ..options import option
from ..plugin import impl
from ..secret import reveal
from .windows import WindowsConnection

WINRM_TYPES = ("winrm_http", "winrm_https", "winrm_https_insecure")
AUTH_METHODS = ("ntlm", "basic", "kerberos")
SEND_PIECE = 96 * 1024


@attrs.frozen
class WinRMOptions:
    """Transport flags of the winrm_* connection types (stored in ``ConnectionSpec.extra``)."""

    winrm_auth: str = option(
        help="WinRM authentication: ntlm (default), basic or kerberos.", default="ntlm", choices=AUTH_METHODS
    )
    ca_bundle: str | None = option(
        help="PEM file of the CA(s) that issued the WinRM server certificate (winrm_https); "
        "default: the system trust store.",
        max_len=4096,
    )


class WinRMConnection(WindowsConnection):
    """Commands and files over one WinRM shell (pywinrm ``Protocol``)."""

    def __init__(self, protocol: Any, shell_id: str, *, host: str, port: int, insecure: bool,
                 operation_timeout: int) -> None:
        self._protocol = protocol
        self._shell_id: str | None = shell_id
        self.host = host
        self.port = port
        self.insecure = insecure
        self._operation_timeout = operation_timeout

    def _execute(self, command_line: str, *, timeout: float | None, what: str,
                 stdin: bytes | None = None) -> tuple[int, str, str]:
        from winrm.exceptions import WinRMOperationTimeoutError

        if self._shell_id is None:
            raise OperationError(f"{self.host}: the WinRM connection is closed", host=self.host)
        shell = self._shell_id
        try:
            command_id = self._start(shell, command_line, stdin is not None)
            if stdin is not None:
                # One Send per piece keeps each envelope under MaxEnvelopeSize (150 KB by default):
                # pywinrm base64-encodes the piece, so 96 KB become 128 KB.
                pieces = [stdin[i:i + SEND_PIECE] for i in range(0, len(stdin), SEND_PIECE)] or [b""]
                for i, piece in enumerate(pieces):
                    self._protocol.send_command_input(shell, command_id, piece, end=i == len(pieces) - 1)
            out: list[bytes] = []
            err: list[bytes] = []
            start = time.monotonic()
            while True:
                try:
                    o, e, code, done = self._protocol.get_command_output_raw(shell, command_id)
                except WinRMOperationTimeoutError:
                    # The host had no output within OperationTimeout; keep waiting up to our own limit.
                    if timeout is not None and time.monotonic() - start > timeout:
                        self._cleanup(command_id)
                        raise OperationError(
                            f"{self.host}: {what} did not finish within {timeout:g} s "
                            "(WinRM operation timeout)", host=self.host) from None
                    continue
                out.append(o)
                err.append(e)
                if done:
                    break
                if timeout is not None and time.monotonic() - start > timeout:
                    self._cleanup(command_id)
                    raise OperationError(f"{self.host}: {what} did not finish within {timeout:g} s",
                                         host=self.host)
            self._cleanup(command_id)
        except OperationError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to a clear, secret-free message
            raise _connection_error(exc, self.host, self.port, during=what) from None
        return code, b"".join(out).decode("utf-8", "replace"), b"".join(err).decode("utf-8", "replace")

    def _start(self, shell: str, command_line: str, with_stdin: bool) -> str:
        """Start a command in the shell; once, reconnect first if the HTTP connection is gone.

        Windows closes idle keep-alive connections (HTTP.sys, 120 s by default). Over NTLM with
        message encryption pywinrm cannot recover by itself: requests_ntlm re-authenticates the
        new connection but re-sends the body sealed with the old context, which the host
        rejects. A fresh requests session (new handshake, new encryption context) fixes it, and
        the shell lives on the host, so it is reused. Only the Command step is retried: a
        Command the host refused to decrypt or never received has not started anything.
        """
        import requests
        from winrm.exceptions import WinRMTransportError

        # With stdin, the console must not own it (as Ansible's winrm connection does).
        try:
            return str(self._protocol.run_command(shell, command_line, console_mode_stdin=not with_stdin))
        except (requests.exceptions.ConnectionError, WinRMTransportError) as exc:
            if isinstance(exc, requests.exceptions.SSLError):
                raise
            self._protocol.transport.close_session()
            return str(self._protocol.run_command(shell, command_line, console_mode_stdin=not with_stdin))

    def _cleanup(self, command_id: str) -> None:
        try:
            self._protocol.cleanup_command(self._shell_id, command_id)
        except Exception:  # noqa: BLE001, S110 - the command already finished or timed out
            pass

    def close(self) -> None:
        if self._shell_id is None:
            return
        shell, self._shell_id = self._shell_id, None
        try:
            self._protocol.close_shell(shell)
        except Exception:  # noqa: BLE001, S110 - the host drops idle shells by itself
            pass


def _system_ca_file() -> str | bool:
    """The system trust store as a file for requests (True: requests' own default)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return candidate
    return True


def _connection_error(exc: BaseException, host: str, port: int, *, during: str = "connect") -> ConnectionFailed:
    """A ConnectionFailed that says what went wrong, never with a credential in it."""
    import requests
    from winrm.exceptions import InvalidCredentialsError, WinRMError, WinRMOperationTimeoutError, WinRMTransportError

    where = f"{host}:{port}"
    text = str(exc)
    if isinstance(exc, InvalidCredentialsError):
        msg = f"{where}: authentication failed: the WinRM server rejected the credentials (HTTP 401)"
    elif isinstance(exc, requests.exceptions.SSLError):
        reason = "certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in text or "verify failed" in text \
            else "TLS handshake failed"
        msg = (f"{where}: TLS verification of the WinRM server failed ({reason}); give the issuing CA with "
               "--ca_bundle, or use winrm_https_insecure to skip verification")
    elif isinstance(exc, requests.exceptions.ConnectTimeout):
        msg = f"{where}: unreachable (connection timed out)"
    elif isinstance(exc, requests.exceptions.ReadTimeout):
        msg = f"{where}: the WinRM server did not answer in time during {during}"
    elif isinstance(exc, requests.exceptions.ConnectionError):
        if "Connection refused" in text or "Errno 111" in text:
            msg = f"{where}: connection refused (is WinRM listening on this port?)"
        elif "Name or service not known" in text or "getaddrinfo" in text or "nodename nor servname" in text:
            msg = f"{where}: unknown host"
        elif "Connection reset" in text or "RemoteDisconnected" in text or "Connection aborted" in text:
            msg = f"{where}: the WinRM server closed the connection during {during}"
        else:
            msg = f"{where}: unreachable ({type(exc).__name__})"
    elif isinstance(exc, WinRMOperationTimeoutError):
        msg = f"{where}: WinRM operation timeout during {during}"
    elif isinstance(exc, WinRMTransportError):
        msg = f"{where}: WinRM HTTP error {getattr(exc, 'code', '?')} during {during}"
    elif isinstance(exc, WinRMError):
        reason = getattr(exc, "reason", None) or text
        msg = f"{where}: WinRM error during {during}: {reason}"
    else:
        msg = f"{where}: WinRM failed during {during}: {type(exc).__name__}"
    return ConnectionFailed(msg, host=host)


def connect_winrm(endpoint: Endpoint, credentials: Credentials, *, read_timeout: int = 30,
                  operation_timeout: int = 20) -> WinRMConnection:
    """Open a WinRM shell on the endpoint's host (the ``connect`` hook for winrm_*)."""
    from winrm.protocol import Protocol

    spec = endpoint.connection
    kind = spec.type
    if kind not in WINRM_TYPES:
        raise ValueError(f"not a WinRM connection type: {kind}")
    https = kind != "winrm_http"
    insecure = kind == "winrm_https_insecure"
    host = spec.host or ""
    port = spec.port or (5986 if https else 5985)
    auth = str(spec.extra.get("winrm_auth") or "ntlm").lower()
    if auth not in AUTH_METHODS:
        raise ConnectionFailed(f"--winrm_auth: must be one of {', '.join(AUTH_METHODS)}", host=host)
    user = credentials.user or spec.user
    password = reveal(credentials.password)
    if not user or password is None:
        raise ConnectionFailed(f"{host}:{port}: WinRM needs --user and a password", host=host)
    ca_bundle = spec.extra.get("ca_bundle")
    if https and not insecure and ca_bundle and not os.path.isfile(ca_bundle):
        raise ConnectionFailed(f"--ca_bundle: {ca_bundle}: no such file", host=host)
    url_host = f"[{host}]" if ":" in host else host
    url = f"{'https' if https else 'http'}://{url_host}:{port}/wsman"
    # pywinrm's "ssl" transport is Basic over https; "plaintext" is Basic over http.
    transport = auth if auth != "basic" else ("ssl" if https else "plaintext")
    kwargs: dict[str, Any] = {
        "endpoint": url,
        "transport": transport,
        "username": user,
        "password": password,
        "message_encryption": "auto",  # NTLM over http: sealed; over https: TLS already protects
        "read_timeout_sec": read_timeout,
        "operation_timeout_sec": operation_timeout,
    }
    # Always explicit: pywinrm's default ("legacy_requests") reads REQUESTS_CA_BUNDLE with a warning.
    kwargs["server_cert_validation"] = "ignore" if insecure else "validate"
    if not insecure:
        kwargs["ca_trust_path"] = (ca_bundle if https else None) or _system_ca_file()
    try:
        protocol = Protocol(**kwargs)
        shell_id = protocol.open_shell(codepage=65001)
    except Exception as exc:  # noqa: BLE001 - mapped to a clear, secret-free message
        raise _connection_error(exc, host, port) from None
    finally:
        del password, kwargs
    return WinRMConnection(protocol, shell_id, host=host, port=port, insecure=insecure,
                           operation_timeout=operation_timeout)


@impl
def tlsgate_connection_types() -> list[ConnectionType]:
    return [
        ConnectionType("winrm_http", "WinRM over http (NTLM with message encryption by default).",
                       default_port=5985, platform="windows", options=WinRMOptions),
        ConnectionType("winrm_https", "WinRM over https; the server certificate is verified.",
                       default_port=5986, platform="windows", options=WinRMOptions),
        ConnectionType("winrm_https_insecure", "WinRM over https WITHOUT certificate verification.",
                       default_port=5986, platform="windows", insecure=True, options=WinRMOptions),
    ]


@impl
def validate(endpoint: Endpoint) -> list[Problem]:
    spec = endpoint.connection
    if spec.type not in WINRM_TYPES:
        return []
    problems = []
    if spec.password is not None and not spec.user:  # connect_winrm needs both (a store gives its own)
        problems.append(Problem(f"is required with --password over {spec.type}", option="--user"))
    auth = spec.extra.get("winrm_auth")
    if auth is not None and str(auth).lower() not in AUTH_METHODS:
        problems.append(Problem(f"must be one of: {', '.join(AUTH_METHODS)}", option="--winrm_auth"))
    if spec.extra.get("ca_bundle") and spec.type != "winrm_https":
        problems.append(Problem("applies only to winrm_https (the only type that verifies the server)",
                                option="--ca_bundle"))
    return problems


@impl
def connect(endpoint: Endpoint, credentials: Credentials) -> WindowsConnection | None:
    if endpoint.connection.type not in WINRM_TYPES:
        return None
    return connect_winrm(endpoint, credentials)
