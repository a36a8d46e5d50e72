"""The ``ssh`` transport (paramiko): commands over exec channels, files over SFTP.

Reusable pieces, for sibling transports such as ``ssh_windows``:

* :func:`open_ssh_client` opens the socket itself (connect timeout, ``TCP_NODELAY``), verifies the
  host key against ``$TLSGATE_HOME/known_hosts`` then ``~/.ssh/known_hosts``, and authenticates
  with exactly what the operator configured (password and/or private key; never an agent or
  ``~/.ssh/id_*``). Every failure is a :class:`ConnectionFailed` naming host and port, never a
  secret.
* :class:`SSHConnection` implements :class:`tlsgate.Connection`. Its file operations go through
  one SFTP session and map remote paths with :meth:`SSHConnection.sftp_path`, which a Windows
  subclass overrides; ``run`` is the POSIX form, which a Windows subclass replaces.
* :func:`fetch_host_key` and :func:`trust_host_key` (from :mod:`.ssh_hostkeys`, re-exported here)
  back ``tlsgate tls trust <endpoint>``.

Rules this module keeps (``protocols.md`` section 8): one connection per endpoint per job,
opened once and reused; atomic writes as temporary name in the same directory, ``chmod`` to the
final mode before any byte, write, ``fsync@openssh.com`` when offered, ``posix-rename``.

Commands and the environment: ``run(argv)`` quotes every argument with
:func:`tlsgate.quoting.sh_join`, so the remote login shell must be a POSIX shell (sh, dash, bash,
ksh, zsh). ``env`` values never appear on the remote command line (which ``ps`` shows to every
local user there): they travel first on the channel's standard input, octal-escaped, and a fixed
``sh`` prologue reads them into the environment with the shell's builtins before ``exec``-ing the
command, whose standard input then continues with ``stdin``. So a secret may go in ``env`` or in
``stdin``; never put one in ``argv``.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import select
import socket
import stat as stat_mod
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..connection import Connection, LateCheckedWrites, temp_name
from ..errors import ConnectionFailed, FileChanged, HostKeyError, OperationError
from ..models import CommandResult, ConnectionType, Credentials, Endpoint, FileStat
from ..plugin import impl
from ..quoting import sh_join
from ..secret import reveal
from .ssh_hostkeys import (
    DEFAULT_PORT,
    DEFAULT_TIMEOUT,
    _host_key_policy,
    _trust_hint,
    fetch_host_key,
    fingerprint,
    known_host_keys,
    known_hosts_name,
    trust_host_key,
    user_known_hosts,
)

if TYPE_CHECKING:
    import paramiko

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Reads NAME / octal-escaped VALUE line pairs from stdin until an empty line, exports them, then
# runs "$@". ``read`` and ``printf`` are builtins, so no value shows up in any process's argv.
_ENV_PROLOGUE = (
    'while IFS= read -r __tg_n && [ -n "$__tg_n" ]; do IFS= read -r __tg_v; '
    '__tg_v=$(printf "%bx" "$__tg_v"); export "$__tg_n=${__tg_v%x}"; done; '
    'unset __tg_n __tg_v; exec "$@"'
)


# -- connecting ---------------------------------------------------------------------------------
def _plain(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _open_socket(host: str, port: int, timeout: float) -> socket.socket:
    """A connected TCP socket with TCP_NODELAY, or ConnectionFailed with the reason."""
    where = f"{host}:{port}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        raise ConnectionFailed(
            f"{where}: connection timed out after {timeout:g} s (host down or port filtered)", host=host
        ) from None
    except socket.gaierror as exc:
        raise ConnectionFailed(f"{host}: cannot resolve host name ({exc.strerror})", host=host) from None
    except ConnectionRefusedError:
        raise ConnectionFailed(f"{where}: connection refused (is an SSH server listening on port {port}?)",
                               host=host) from None
    except OSError as exc:
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL):
            raise ConnectionFailed(f"{where}: host unreachable ({exc.strerror})", host=host) from None
        raise ConnectionFailed(f"{where}: cannot connect: {exc.strerror or exc}", host=host) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def load_private_key(text: str | bytes, passphrase: str | None, *, source: str = "private key") -> paramiko.PKey:
    """A paramiko key from private key text: OpenSSH, PEM (PKCS#1/SEC1) or PKCS#8, RSA, ECDSA
    or Ed25519, encrypted or not. ``source`` names the key in errors (a path, never the text)."""
    import paramiko
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    data = text.encode() if isinstance(text, str) else bytes(text)
    password = passphrase.encode() if passphrase else None

    def load(password: bytes | None) -> Any:
        if b"BEGIN OPENSSH PRIVATE KEY" in data:
            return serialization.load_ssh_private_key(data, password=password)
        return serialization.load_pem_private_key(data, password=password)

    try:
        try:
            loaded = load(password)
        except TypeError:
            if password is None:
                raise
            loaded = load(None)  # a passphrase for an unencrypted key is ignored, as ssh does
    except TypeError:
        raise ConnectionFailed(f"{source} is encrypted: give its passphrase (--ssh_key_password)") from None
    except ValueError as exc:
        msg = str(exc).lower()
        if password is not None and ("decrypt" in msg or "password" in msg or "checksum" in msg):
            raise ConnectionFailed(f"{source}: wrong passphrase (--ssh_key_password)") from None
        raise ConnectionFailed(f"{source} is not a private key tlsgate can read "
                               "(RSA, ECDSA or Ed25519; OpenSSH, PEM or PKCS#8)") from None
    except Exception as exc:  # noqa: BLE001 - cryptography raises several kinds for bad input
        raise ConnectionFailed(f"{source}: cannot load private key ({type(exc).__name__})") from None
    if isinstance(loaded, rsa.RSAPrivateKey):
        cls: Any = paramiko.RSAKey
    elif isinstance(loaded, ec.EllipticCurvePrivateKey):
        cls = paramiko.ECDSAKey
    elif isinstance(loaded, ed25519.Ed25519PrivateKey):
        cls = paramiko.Ed25519Key
    else:
        raise ConnectionFailed(f"{source}: unsupported key type {type(loaded).__name__} "
                               "(use RSA, ECDSA or Ed25519)")
    # Re-serialised unencrypted in memory only, in the one format every paramiko key class reads.
    clear = loaded.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                 serialization.NoEncryption())
    return cls.from_private_key(io.StringIO(clear.decode()))  # type: ignore[no-any-return]


def _client_key(credentials: Credentials) -> paramiko.PKey | None:
    passphrase = reveal(credentials.ssh_key_password)
    if credentials.ssh_key:
        return load_private_key(reveal(credentials.ssh_key) or "", passphrase,
                                source="private key from the credential store")
    if credentials.ssh_key_path:
        path = os.path.expanduser(credentials.ssh_key_path)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            raise ConnectionFailed(f"--ssh_key_path {path}: no such file on the gateway") from None
        except PermissionError:
            raise ConnectionFailed(f"--ssh_key_path {path}: permission denied") from None
        except IsADirectoryError:
            raise ConnectionFailed(f"--ssh_key_path {path}: is a directory") from None
        return load_private_key(data, passphrase, source=f"--ssh_key_path {path}")
    return None


def _timeout(endpoint: Endpoint) -> float:
    value = (endpoint.connection.extra or {}).get("timeout")
    try:
        return float(value) if value else DEFAULT_TIMEOUT
    except (TypeError, ValueError):
        return DEFAULT_TIMEOUT


def open_ssh_client(
    endpoint: Endpoint, credentials: Credentials, *, timeout: float | None = None
) -> paramiko.SSHClient:
    """Connect, verify the host key and authenticate; return the open ``paramiko.SSHClient``.

    Raises :class:`HostKeyError` (unknown or changed host key, with the fingerprint) or
    :class:`ConnectionFailed` (refused, unreachable, timed out, not SSH, authentication failed).
    """
    import paramiko

    spec = endpoint.connection
    host = spec.host
    if not host:
        raise ConnectionFailed(f"{endpoint.name}: no --host for an SSH connection")
    port = int(spec.port or DEFAULT_PORT)
    user = credentials.user or spec.user
    if not user:
        raise ConnectionFailed(f"{host}:{port}: no user to log in as (give --user or store it in the credential)",
                               host=host)
    timeout = timeout or _timeout(endpoint)
    password = reveal(credentials.password)
    pkey = _client_key(credentials)
    if pkey is None and not password:
        raise ConnectionFailed(f"{host}:{port}: no SSH credential (give --password, --ssh_key_path, "
                               "or --store/--store_cred_id)", host=host)
    where = f"{user}@{host}:{port}"

    client = paramiko.SSHClient()
    for keytype, key in known_host_keys(host, port).items():
        client.get_host_keys().add(known_hosts_name(host, port), keytype, key)
    client.set_missing_host_key_policy(_host_key_policy(endpoint.name, host, port))
    sock = _open_socket(host, port, timeout)
    try:
        client.connect(
            host, port=port, username=user, password=password or None, pkey=pkey, sock=sock,
            # the key exchange may take longer than the banner, so the handshake gets twice as long
            timeout=2 * timeout, banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
            allow_agent=False, look_for_keys=False,
        )
    except HostKeyError:
        _close_quietly(client, sock)
        raise
    except paramiko.BadHostKeyException as exc:
        _close_quietly(client, sock)
        raise HostKeyError(
            f"{host}:{port}: SSH HOST KEY CHANGED: the host presented {exc.key.get_name()} "
            f"{fingerprint(exc.key)} but {fingerprint(exc.expected_key)} is trusted; this may be an "
            f"attack (or a reinstalled host); refusing to connect. "
            + _trust_hint(endpoint.name, host, port).replace("if this is", "if the new key is"),
            fingerprint=fingerprint(exc.key),
            host=host,
        ) from None
    except paramiko.BadAuthenticationType as exc:
        _close_quietly(client, sock)
        tried = "key" if pkey is not None and not password else "password"
        raise ConnectionFailed(
            f"{where}: authentication failed: the server does not accept {tried} login "
            f"(it allows: {', '.join(exc.allowed_types) or 'nothing'})", host=host
        ) from None
    except paramiko.AuthenticationException:
        _close_quietly(client, sock)
        tried = " and ".join(m for m, used in (("private key", pkey is not None), ("password", bool(password))) if used)
        raise ConnectionFailed(f"{where}: authentication failed ({tried} refused)", host=host) from None
    except (paramiko.SSHException, EOFError, OSError) as exc:
        transport = client.get_transport()
        cause = transport.get_exception() if transport is not None else None  # the reader thread's
        _close_quietly(client, sock)
        text = _plain(cause or exc)
        if "banner" in text.lower():
            text = f"no SSH banner within {timeout:g} s (is this an SSH server?)"
        elif "no existing session" in text.lower():
            text = f"the SSH handshake did not complete within {2 * timeout:g} s"
        raise ConnectionFailed(f"{where}: SSH connection failed: {text}", host=host) from None
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(30)
    return client


def _close_quietly(client: Any, sock: socket.socket | None = None) -> None:
    with contextlib.suppress(Exception):
        client.close()
    if sock is not None:
        with contextlib.suppress(Exception):
            sock.close()


# -- the connection -----------------------------------------------------------------------------
class SSHConnection(LateCheckedWrites, Connection):
    """A :class:`Connection` over one SSH transport: exec channels and one SFTP session.

    Subclasses for other remote platforms override :attr:`platform`, :meth:`sftp_path` (how a
    path the driver uses is spelled for the SFTP server) and :meth:`run`.
    """

    platform = "posix"

    #: Seconds one SFTP request may wait for its answer before the connection counts as lost.
    io_timeout: float = 120.0

    def __init__(self, client: paramiko.SSHClient, *, host: str, port: int = DEFAULT_PORT, user: str = "",
                 io_timeout: float | None = None) -> None:
        self.client = client
        self.host = host
        self.port = port
        self.user = user
        if io_timeout:
            self.io_timeout = io_timeout
        self._sftp: Any = None
        self._fsync_ok: bool | None = None

    # -- plumbing -------------------------------------------------------------------------------
    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def _transport(self) -> Any:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectionFailed(f"{self.where}: the SSH connection is closed", host=self.host)
        return transport

    @property
    def sftp(self) -> Any:
        """The connection's one SFTP session, opened on first use."""
        if self._sftp is None:
            import paramiko

            transport = self._transport()
            try:
                self._sftp = paramiko.SFTPClient.from_transport(transport)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise ConnectionFailed(f"{self.where}: cannot start SFTP: {_plain(exc)}", host=self.host) from None
            if self._sftp is None:
                raise ConnectionFailed(f"{self.where}: the server refused the SFTP subsystem", host=self.host)
            self._sftp.get_channel().settimeout(self.io_timeout)  # a silent peer is not waited on forever
        return self._sftp

    def sftp_path(self, path: str) -> str:
        """How ``path`` is spelled for the SFTP server (identity on POSIX)."""
        return path

    @contextlib.contextmanager
    def _sftp_errors(self, path: str, action: str) -> Iterator[None]:
        """Turn paramiko/SFTP failures into one-line OperationError / ConnectionFailed."""
        import paramiko

        try:
            yield
        except FileNotFoundError:
            raise OperationError(f"{self.host}: {path}: no such file or directory", host=self.host) from None
        except PermissionError:
            raise OperationError(f"{self.host}: {path}: permission denied ({action})", host=self.host) from None
        except (OSError, paramiko.SSHException, EOFError, ConnectionError) as exc:
            if self._lost(exc):
                why = f" (no answer within {self.io_timeout:g} s)" if isinstance(exc, TimeoutError) else ""
                raise ConnectionFailed(
                    f"{self.where}: SSH connection lost during {action} of {path}{why}", host=self.host
                ) from None
            raise OperationError(f"{self.host}: {path}: {action} failed: {_plain(exc)}", host=self.host) from None

    def _lost(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the connection is gone; if so, close it for good (a job never
        goes on over a half-dead connection)."""
        transport = self.client.get_transport()
        channel = getattr(self._sftp, "sock", None)
        lost = (
            isinstance(exc, (EOFError, ConnectionError, TimeoutError))
            or "connection dropped" in str(exc).lower()
            or transport is None
            or not transport.is_active()
            or (channel is not None and channel.closed)
        )
        if lost:
            self.close()
        return lost

    # -- commands -------------------------------------------------------------------------------
    def command_line(self, argv: Sequence[str], env: Mapping[str, str] | None) -> tuple[str, bytes]:
        """The remote command text and the bytes to send ahead of the caller's stdin."""
        args = [str(a) for a in argv]
        if not env:
            return sh_join(args), b""
        header = bytearray()
        for name, value in env.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"invalid environment variable name {name!r}")
            raw = str(value).encode()
            if b"\x00" in raw:
                raise ValueError(f"environment variable {name} cannot contain NUL")
            header += name.encode() + b"\n" + "".join(f"\\0{b:03o}" for b in raw).encode() + b"\n"
        header += b"\n"
        return sh_join(["sh", "-c", _ENV_PROLOGUE, "sh", *args]), bytes(header)

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = 120,
        env: Mapping[str, str] | None = None,
        check: bool = False,
    ) -> CommandResult:
        argv = tuple(str(a) for a in argv)
        command, header = self.command_line(argv, env)
        result = self.exec(command, (header + stdin) if stdin else header, timeout=timeout, argv=argv)
        return self.check(result) if check else result

    def exec(self, command: str, stdin: bytes = b"", *, timeout: float | None = 120,
             argv: tuple[str, ...] = ()) -> CommandResult:
        """Run ``command`` (already quoted for the remote shell) on a new exec channel."""
        import paramiko

        label = argv[0] if argv else "command"
        try:
            channel = self._transport().open_session(timeout=timeout)
            channel.settimeout(timeout)
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            stdout, stderr, status = _collect(channel, timeout)
        except (_Timeout, TimeoutError):  # TimeoutError: it did not read its input in time
            with contextlib.suppress(Exception):
                channel.close()
            raise OperationError(f"{self.host}: {label} did not finish within {timeout:g} s",
                                 host=self.host) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if self._lost(exc):
                raise ConnectionFailed(f"{self.where}: SSH connection lost while running {label}",
                                       host=self.host) from None
            raise OperationError(f"{self.host}: cannot run {label}: {_plain(exc)}", host=self.host) from None
        return CommandResult(argv or (command,), status, stdout.decode("utf-8", "replace"),
                             stderr.decode("utf-8", "replace"))

    # -- files ----------------------------------------------------------------------------------
    def read_file(self, path: str) -> bytes:
        with self._sftp_errors(path, "read"), self.sftp.open(self.sftp_path(path), "rb") as fh:
            fh.prefetch()
            return bytes(fh.read())

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        check, expect = self._expected(path)
        self._write(path, data, mode, check=check, expect=expect)

    def realpath(self, path: str) -> str:
        """SFTP ``realpath`` (OpenSSH resolves every link); a missing file: ``readlink -f``."""
        if self.exists(path):
            with self._sftp_errors(path, "resolve"):
                return str(self.sftp.normalize(self.sftp_path(path)))
        return super().realpath(path)

    def _write(self, path: str, data: bytes, mode: int, *, check: bool, expect: bytes | None) -> None:
        """Atomic replace: temporary file in the same directory, owner of the old file where
        permitted, final mode before any byte, write, fsync, ``posix-rename``. A failure before
        the rename leaves ``path`` untouched."""
        directory = self.path.dirname(path) or "."
        tmp = self.path.join(directory, temp_name())
        old = self.stat(path)
        sftp = self.sftp
        created = False
        try:
            with self._sftp_errors(path, "write"):
                with sftp.open(self.sftp_path(tmp), "wbx") as fh:
                    created = True
                    fh.chmod(mode)  # before any (possibly secret) byte is written
                    if old is not None and old.uid is not None:
                        with contextlib.suppress(OSError):  # only root may give a file away
                            fh.chown(old.uid, old.gid if old.gid is not None else -1)
                        fh.chmod(mode)  # chown may clear set-id bits; the mode is ours again
                    fh.set_pipelined(True)
                    view = memoryview(data)
                    for offset in range(0, len(view), 1 << 18):
                        fh.write(view[offset:offset + (1 << 18)])
                    fh.flush()
                    self._fsync(fh)
            if check:
                # the last moment before the rename: never overwrite a file changed since read
                current = self.read_file(path) if self.exists(path) else None
                if current != expect:
                    raise FileChanged(self.host, path)
            with self._sftp_errors(path, "rename"):
                sftp.posix_rename(self.sftp_path(tmp), self.sftp_path(path))
        except ConnectionFailed as exc:
            if created:
                raise ConnectionFailed(f"{exc}; {path} is unchanged (a partial temporary file {tmp} "
                                       "may remain, already with the final mode)", host=self.host) from None
            raise
        except BaseException:
            if created:
                with contextlib.suppress(Exception):
                    sftp.remove(self.sftp_path(tmp))
            raise

    def _fsync(self, fh: Any) -> None:
        """``fsync@openssh.com`` on the open handle when the server offers it."""
        if self._fsync_ok is False:
            return
        import paramiko
        from paramiko.sftp import CMD_EXTENDED

        try:
            self.sftp._request(CMD_EXTENDED, "fsync@openssh.com", fh.handle)
            self._fsync_ok = True
        except (OSError, paramiko.SFTPError):
            transport = self.client.get_transport()
            if transport is None or not transport.is_active():
                raise
            self._fsync_ok = False  # unsupported by this server: the rename is still atomic

    def stat(self, path: str) -> FileStat | None:
        with self._sftp_errors(path, "stat"):
            try:
                attrs = self.sftp.stat(self.sftp_path(path))
            except FileNotFoundError:
                return None
        mode = attrs.st_mode or 0
        return FileStat(
            size=int(attrs.st_size or 0),
            mode=stat_mod.S_IMODE(mode),
            mtime=float(attrs.st_mtime or 0),
            uid=attrs.st_uid,
            gid=attrs.st_gid,
            is_dir=stat_mod.S_ISDIR(mode),
        )

    def remove(self, path: str) -> None:
        with self._sftp_errors(path, "remove"), contextlib.suppress(FileNotFoundError):
            self.sftp.remove(self.sftp_path(path))

    def rename(self, src: str, dst: str) -> None:
        with self._sftp_errors(src, f"rename to {dst}"):
            self.sftp.posix_rename(self.sftp_path(src), self.sftp_path(dst))

    def listdir(self, path: str) -> list[str]:
        with self._sftp_errors(path, "list"):
            return sorted(self.sftp.listdir(self.sftp_path(path)))

    def makedirs(self, path: str, *, mode: int = 0o755) -> None:
        existing = self.stat(path)
        if existing is not None:
            if not existing.is_dir:
                raise OperationError(f"{self.host}: {path}: exists and is not a directory", host=self.host)
            return
        parent = self.path.dirname(path.rstrip("/\\"))
        if parent and parent != path:
            self.makedirs(parent, mode=mode)
        with self._sftp_errors(path, "mkdir"):
            try:
                self.sftp.mkdir(self.sftp_path(path), mode)
            except OSError:
                if self.stat(path) is None:  # lost a race with another creator: fine
                    raise

    def chown_like(self, path: str, reference: str) -> None:
        """Copy uid/gid of ``reference`` onto ``path`` where permitted (silently not otherwise)."""
        ref = self.stat(reference)
        if ref is None or ref.uid is None:
            return
        with self._sftp_errors(path, "chown"), contextlib.suppress(PermissionError):
            self.sftp.chown(self.sftp_path(path), ref.uid, ref.gid if ref.gid is not None else -1)

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

    def close(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
            self._sftp = None
        with contextlib.suppress(Exception):
            self.client.close()


class _Timeout(Exception):
    pass


def _collect(channel: Any, timeout: float | None) -> tuple[bytes, bytes, int]:
    """Read stdout and stderr together until the command exits (no deadlock on a full pipe)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    while True:
        while channel.recv_ready():
            out += channel.recv(65536)
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(65536)
        drained = not channel.recv_ready() and not channel.recv_stderr_ready()
        finished = channel.eof_received or channel.closed
        if drained and finished and (channel.exit_status_ready() or channel.closed):
            break
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise _Timeout
        wait = 0.02 if finished else 1.0  # exit-status does not wake select(); poll briefly
        select.select([channel], [], [], min(remaining, wait) if remaining is not None else wait)
    status = channel.recv_exit_status() if channel.exit_status_ready() else -1
    channel.close()
    return bytes(out), bytes(err), status


# -- the plugin ---------------------------------------------------------------------------------
SSH = ConnectionType(
    "ssh",
    "OpenSSH (or any SSH-2 server) on a POSIX host: commands over exec, files over SFTP.",
    default_port=DEFAULT_PORT,
    host_keys=True,
)


@impl
def tlsgate_connection_types() -> list[ConnectionType]:
    return [SSH]


def connect_ssh(endpoint: Endpoint, credentials: Credentials) -> SSHConnection:
    """Open an :class:`SSHConnection` (one per endpoint per job; close it when done)."""
    client = open_ssh_client(endpoint, credentials)
    return SSHConnection(
        client,
        host=endpoint.connection.host or "",
        port=int(endpoint.connection.port or DEFAULT_PORT),
        user=credentials.user or endpoint.connection.user or "",
    )


@impl
def connect(endpoint: Endpoint, credentials: Credentials) -> Connection | None:
    if endpoint.connection.type != "ssh":
        return None
    return connect_ssh(endpoint, credentials)


__all__ = [
    "SSH",
    "SSHConnection",
    "connect_ssh",
    "fetch_host_key",
    "fingerprint",
    "known_host_keys",
    "known_hosts_name",
    "load_private_key",
    "open_ssh_client",
    "trust_host_key",
    "user_known_hosts",
]
