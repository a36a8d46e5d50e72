"""A loopback WS-Management (WinRM) server that speaks the protocol as pywinrm 0.5.0 does.

Built from the published protocol and pywinrm's parsing code (``protocols.md`` section 2 and its
verified prototype, Appendix A): HTTP/1.1 keep-alive POSTs to ``/wsman``; Basic and NTLM
(pyspnego acceptor, state per TCP connection); NTLM message encryption (multipart/encrypted,
sealed with the NTLM session key); Create shell / Command / Receive (base64 streams, exit code,
Running chunks) / Send / Signal / Delete, each answered with ``a:RelatesTo``; SOAP faults as HTTP
500 (unknown shell, unknown action, the operation-timeout fault 2150858793); https with any
certificate. Commands go to a :class:`~tlsgate_testing.winhost.SimulatedWindowsHost`, which also
enforces cmd.exe's 8,191-character limit.

    host = SimulatedWindowsHost()
    with WinRMPeer(host, users={"vagrant": "vagrant"}, tls=(certfile, keyfile)) as peer:
        peer.url          # https://127.0.0.1:<port>/wsman
        peer.requests     # [RequestRecord(action, scheme, encrypted, user), ...]
        peer.inject_operation_timeouts(2)   # the next command's first 2 Receives time out

NTLM's acceptor reads users from the file named by ``NTLM_USER_FILE`` (a process-wide variable):
every peer adds its users to one shared file, and the peer also checks that the authenticated
user is one of its own.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import socket
import ssl
import struct
import tempfile
import threading
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs

from .winhost import SimulatedWindowsHost

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
}
SHELL = NS["rsp"]
A_CREATE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
A_DELETE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
A_COMMAND = SHELL + "/Command"
A_RECEIVE = SHELL + "/Receive"
A_SIGNAL = SHELL + "/Signal"
A_SEND = SHELL + "/Send"
BOUNDARY = b"--Encrypted Boundary"
ENC_PROTO = "application/HTTP-SPNEGO-session-encrypted"
TIMEOUT_FAULT_CODE = 2150858793
TIMEOUT_REASON = (
    "The WS-Management service cannot complete the operation within the time specified in OperationTimeout."
)

_NTLM_LOCK = threading.Lock()
_NTLM_USERS: dict[str, str] = {}


def _ntlm_user_file(users: dict[str, str]) -> None:
    """Add ``users`` to the process-wide NTLM_USER_FILE that pyspnego's acceptor reads."""
    with _NTLM_LOCK:
        _NTLM_USERS.update(users)
        path = os.environ.get("TLSGATE_TEST_NTLM_USER_FILE")
        if not path:
            fd, path = tempfile.mkstemp(prefix="tlsgate-ntlm-users-")
            os.close(fd)
            os.environ["TLSGATE_TEST_NTLM_USER_FILE"] = path
            atexit.register(_remove_quietly, path)
        with open(path, "w", encoding="utf-8") as fh:
            for user, password in _NTLM_USERS.items():
                fh.write(f":{user}:{password}\n")
        os.environ["NTLM_USER_FILE"] = path


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@attrs.define
class RequestRecord:
    """One SOAP request the peer processed (the empty encryption-setup POST is ``action=""``)."""

    action: str
    scheme: str  # "basic", "ntlm" or "none" (already authenticated connection)
    encrypted: bool
    user: str | None
    tls: bool


@attrs.define
class _Command:
    command_line: str
    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = -1
    ran: bool = False
    timeouts: int = 0
    running_chunk: bool = False
    sent_out: int = 0
    sent_err: int = 0
    stdin: bytearray = attrs.field(factory=bytearray)


def _envelope(action: str, relates_to: str, body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<s:Envelope xml:lang="en-US" xmlns:s="{s}" xmlns:a="{a}" xmlns:x="{x}" xmlns:w="{w}" '
        'xmlns:rsp="{rsp}" xmlns:p="{p}">'
        "<s:Header><a:Action>{act}</a:Action><a:MessageID>uuid:{mid}</a:MessageID>"
        "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
        "<a:RelatesTo>{rel}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).format(**NS, act=action, mid=str(uuid.uuid4()).upper(), rel=relates_to, body=body).encode("utf-8")


def _fault(relates_to: str, code: str, subcode: str, reason: str, wsman_code: int) -> bytes:
    body = (
        f"<s:Fault><s:Code><s:Value>s:{code}</s:Value><s:Subcode><s:Value>w:{subcode}</s:Value>"
        f'</s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">{reason}</s:Text></s:Reason>'
        f'<s:Detail><f:WSManFault xmlns:f="{NS["f"]}" Code="{wsman_code}" Machine="localhost">'
        f"<f:Message>{reason}</f:Message></f:WSManFault></s:Detail></s:Fault>"
    )
    return _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


class WinRMPeer:
    """The WS-Man server; use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(
        self,
        host: SimulatedWindowsHost | None = None,
        *,
        users: dict[str, str] | None = None,
        tls: tuple[str, str] | None = None,
        auth: tuple[str, ...] = ("basic", "ntlm"),
        allow_unencrypted: bool = True,
        output_chunk: int = 16384,
    ) -> None:
        self.host = host or SimulatedWindowsHost()
        self.users = dict(users or {"vagrant": "vagrant"})
        self.tls = tls
        self.auth = auth
        self.allow_unencrypted = allow_unencrypted
        self.output_chunk = output_chunk
        self.requests: list[RequestRecord] = []
        self.max_request_size = 0  # largest SOAP envelope received (plaintext)
        self.shells: dict[str, dict[str, _Command]] = {}
        self.lock = threading.Lock()
        self._pending_timeouts = 0
        self._drop_template: str | None = None
        self._connections: list[socket.socket] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if "ntlm" in auth:
            _ntlm_user_file(self.users)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> WinRMPeer:
        peer = self

        class Handler(_Handler):
            pass

        Handler.peer = peer
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="winrm-peer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> WinRMPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "peer not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/wsman"

    # -- test controls ------------------------------------------------------------------------
    def inject_operation_timeouts(self, count: int = 1) -> None:
        """The next command answers its first ``count`` Receives with the operation-timeout fault
        (as Windows does when a command prints nothing within OperationTimeout), then one Running
        chunk, then the rest."""
        with self.lock:
            self._pending_timeouts = count

    def close_idle_connections(self) -> None:
        """Close every open keep-alive connection, as HTTP.sys does after its idle timeout."""
        with self.lock:
            conns, self._connections = list(self._connections), []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def drop_connection_on(self, template: str | None) -> None:
        """When a command that ran template ``template`` is first received, close the TCP
        connection without an answer (a host or network failure in the middle of a job)."""
        self._drop_template = template

    def soap_actions(self) -> list[str]:
        return [r.action.rsplit("/", 1)[-1] for r in self.requests if r.action]

    # -- SOAP ---------------------------------------------------------------------------------
    def handle_soap(self, raw: bytes) -> tuple[int, bytes, str]:
        root = ET.fromstring(raw)  # noqa: S314 - test peer, local client
        hdr = root.find("s:Header", NS)
        assert hdr is not None
        action = hdr.findtext("a:Action", "", NS)
        mid = hdr.findtext("a:MessageID", "", NS)
        self.max_request_size = max(self.max_request_size, len(raw))
        limit = int(hdr.findtext("w:MaxEnvelopeSize", "153600", NS) or 153600)
        if len(raw) > limit:  # fault code recalled, not verified against a real host
            return 500, _fault(mid, "Sender", "EncodingLimit",
                               "The WS-Management service cannot process the request because the envelope "
                               "size exceeds MaxEnvelopeSize.", 2150858909), action
        sel = hdr.find("w:SelectorSet/w:Selector[@Name='ShellId']", NS)
        shell_id = sel.text if sel is not None else None
        body = root.find("s:Body", NS)
        if action == A_CREATE:
            sid = str(uuid.uuid4()).upper()
            with self.lock:
                self.shells[sid] = {}
            return 200, _envelope(
                A_CREATE + "Response", mid,
                "<x:ResourceCreated><a:Address>http://localhost:5985/wsman</a:Address><a:ReferenceParameters>"
                "<w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI>"
                f'<w:SelectorSet><w:Selector Name="ShellId">{sid}</w:Selector></w:SelectorSet>'
                "</a:ReferenceParameters></x:ResourceCreated>"), action
        if shell_id not in self.shells:
            return 500, _fault(
                mid, "Sender", "InvalidSelectors",
                f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell "
                "was not found on the server.", 2150858843), action
        shell = self.shells[shell_id]
        if action == A_COMMAND:
            cl = body.find("rsp:CommandLine", NS) if body is not None else None
            program = (cl.findtext("rsp:Command", "", NS) if cl is not None else "") or ""
            args = cl.findall("rsp:Arguments", NS) if cl is not None else []
            cmdline = " ".join([program, *[a.text or "" for a in args]]).strip()
            cid = str(uuid.uuid4()).upper()
            with self.lock:
                # Run at the first Receive, once any stdin (Send ... End="true") has arrived.
                shell[cid] = _Command(cmdline, timeouts=self._pending_timeouts,
                                      running_chunk=self._pending_timeouts > 0)
                self._pending_timeouts = 0
            return 200, _envelope(A_COMMAND + "Response", mid,
                                  f"<rsp:CommandResponse><rsp:CommandId>{cid}</rsp:CommandId></rsp:CommandResponse>"), action
        if action == A_SEND:
            stream = body.find("rsp:Send/rsp:Stream", NS) if body is not None else None
            cid = stream.get("CommandId", "") if stream is not None else ""
            if cid in shell and stream is not None and stream.text:
                shell[cid].stdin += base64.b64decode(stream.text)
            return 200, _envelope(A_SEND + "Response", mid, "<rsp:SendResponse/>"), action
        if action == A_RECEIVE:
            ds = body.find("rsp:Receive/rsp:DesiredStream", NS) if body is not None else None
            cid = ds.get("CommandId", "") if ds is not None else ""
            if cid not in shell:
                return 500, _fault(mid, "Sender", "InvalidParameter", "The command was not found.", 2150858854), action
            cmd: _Command = shell[cid]
            if not cmd.ran:
                before = len(self.host.calls)
                cmd.stdout, cmd.stderr, cmd.exit_code = self.host.run_command_line(cmd.command_line, bytes(cmd.stdin))
                cmd.ran = True
                ran = [c.template for c in self.host.calls[before:]]
                if self._drop_template is not None and self._drop_template in ran:
                    self._drop_template = None
                    return 0, b"", action  # 0: drop the connection
            return 200 if not shell[cid].timeouts else 500, self._receive(mid, cid, shell[cid]), action
        if action == A_SIGNAL:
            sig = body.find("rsp:Signal", NS) if body is not None else None
            if sig is not None:
                shell.pop(sig.get("CommandId", ""), None)
            return 200, _envelope(A_SIGNAL + "Response", mid, "<rsp:SignalResponse/>"), action
        if action == A_DELETE:
            with self.lock:
                self.shells.pop(shell_id, None)  # type: ignore[arg-type]
            return 200, _envelope(A_DELETE + "Response", mid, ""), action
        return 500, _fault(mid, "Sender", "ActionNotSupported", "The action is not supported by the service.",
                           2150858770), action

    def _receive(self, mid: str, cid: str, cmd: _Command) -> bytes:
        if cmd.timeouts:
            cmd.timeouts -= 1
            return _fault(mid, "Receiver", "TimedOut", TIMEOUT_REASON, TIMEOUT_FAULT_CODE)
        parts = []

        def stream(name: str, data: bytes) -> None:
            parts.append(f'<rsp:Stream Name="{name}" CommandId="{cid}">{base64.b64encode(data).decode()}</rsp:Stream>')

        if cmd.running_chunk:  # one partial chunk, as a still-running command produces
            cmd.running_chunk = False
            n = min(len(cmd.stdout), max(1, len(cmd.stdout) // 3))
            if n:
                stream("stdout", cmd.stdout[:n])
                cmd.sent_out = n
            parts.append(f'<rsp:CommandState CommandId="{cid}" State="{SHELL}/CommandState/Running"/>')
            return _envelope(A_RECEIVE + "Response", mid,
                             f'<rsp:ReceiveResponse SequenceID="0">{"".join(parts)}</rsp:ReceiveResponse>')
        out = cmd.stdout[cmd.sent_out:cmd.sent_out + self.output_chunk]
        cmd.sent_out += len(out)
        err = cmd.stderr[cmd.sent_err:cmd.sent_err + self.output_chunk]
        cmd.sent_err += len(err)
        if out:
            stream("stdout", out)
        if err:
            stream("stderr", err)
        done = cmd.sent_out >= len(cmd.stdout) and cmd.sent_err >= len(cmd.stderr)
        if done:
            for name in ("stdout", "stderr"):
                parts.append(f'<rsp:Stream Name="{name}" CommandId="{cid}" End="true"></rsp:Stream>')
            parts.append(f'<rsp:CommandState CommandId="{cid}" State="{SHELL}/CommandState/Done">'
                         f"<rsp:ExitCode>{cmd.exit_code}</rsp:ExitCode></rsp:CommandState>")
        else:
            parts.append(f'<rsp:CommandState CommandId="{cid}" State="{SHELL}/CommandState/Running"/>')
        return _envelope(A_RECEIVE + "Response", mid,
                         f'<rsp:ReceiveResponse SequenceID="0">{"".join(parts)}</rsp:ReceiveResponse>')


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: NTLM authenticates a connection
    peer: WinRMPeer
    ntlm: Any = None
    authed_user: str | None = None

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes; without NODELAY, Nagle + delayed ACK add
        # 40 ms to every keep-alive round trip.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.peer.lock:
            self.peer._connections.append(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: bytes = b"", headers: list[tuple[str, str]] | tuple = ()) -> None:
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _unauth(self, extra: str | None = None) -> None:
        if extra:
            hdrs = [("WWW-Authenticate", extra)]
        else:
            hdrs = []
            if "ntlm" in self.peer.auth:
                hdrs.append(("WWW-Authenticate", "Negotiate"))
            if "basic" in self.peer.auth:
                hdrs.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        self._send(401, b"", hdrs)

    def do_POST(self) -> None:
        peer = self.peer
        if self.path.rstrip("/").lower() != "/wsman":
            return self._send(404)
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        auth = self.headers.get("Authorization", "")
        tls = peer.tls is not None
        scheme = "none"
        if auth.startswith("Basic ") and "basic" in peer.auth:
            try:
                user, _, password = base64.b64decode(auth[6:]).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return self._unauth()
            if peer.users.get(user) != password:
                return self._unauth()
            scheme, self.authed_user = "basic", user
        elif auth.startswith(("NTLM ", "Negotiate ")) and "ntlm" in peer.auth:
            import spnego
            import spnego.exceptions

            auth_scheme, token = auth.split(" ", 1)
            if self.ntlm is None or self.authed_user is not None:
                self.ntlm = spnego.server(protocol="ntlm")
                self.authed_user = None
            try:
                out = self.ntlm.step(base64.b64decode(token))
            except spnego.exceptions.SpnegoError:  # wrong password or bad token
                self.ntlm = None
                return self._unauth()
            if not self.ntlm.complete:
                return self._unauth(f"{auth_scheme} {base64.b64encode(out or b'').decode()}")
            user = str(self.ntlm.client_principal or "").split("\\")[-1]
            if user.casefold() not in {u.casefold() for u in peer.users}:
                self.ntlm = None
                return self._unauth()
            scheme, self.authed_user = "ntlm", user
        elif self.authed_user is None:
            return self._unauth()
        encrypted = self.headers.get("Content-Type", "").startswith("multipart/encrypted")
        if encrypted:
            if self.ntlm is None or self.authed_user is None:
                return self._send(400)
            try:
                data = self._unwrap(data)
            except Exception:  # noqa: BLE001 - sealed with another context: the host answers 400
                return self._send(400)
        elif data and not tls and not peer.allow_unencrypted:
            return self._send(401)  # AllowUnencrypted=false refuses a plain body over http
        if not data:  # pywinrm's empty POST that sets up message encryption
            peer.requests.append(RequestRecord("", scheme, encrypted, self.authed_user, tls))
            return self._send(200)
        code, resp, action = peer.handle_soap(data)
        peer.requests.append(RequestRecord(action, scheme, encrypted, self.authed_user, tls))
        if code == 0:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        if encrypted:
            sealed = self.ntlm.wrap(resp, encrypt=True).data  # 16-byte signature + sealed
            body = (BOUNDARY + b"\r\n\tContent-Type: " + ENC_PROTO.encode() + b"\r\n"
                    b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
                    + str(len(resp)).encode() + b"\r\n" + BOUNDARY
                    + b"\r\n\tContent-Type: application/octet-stream\r\n"
                    + struct.pack("<i", 16) + sealed + BOUNDARY + b"--\r\n")
            return self._send(code, body, [(
                "Content-Type", f'multipart/encrypted;protocol="{ENC_PROTO}";boundary="Encrypted Boundary"')])
        return self._send(code, resp, [("Content-Type", "application/soap+xml;charset=UTF-8")])

    def _unwrap(self, data: bytes) -> bytes:
        parts = [p for p in data.split(BOUNDARY + b"\r\n") if p]
        payload = parts[1].replace(b"\tContent-Type: application/octet-stream\r\n", b"")
        end = BOUNDARY + b"--\r\n"
        if payload.endswith(end):
            payload = payload[: -len(end)]
        siglen = struct.unpack("<i", payload[:4])[0]
        return bytes(self.ntlm.unwrap(payload[4:4 + siglen] + payload[4 + siglen:]).data)
