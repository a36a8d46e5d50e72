"""The ``ssh`` transport (paramiko): commands over exec channels, files over SFTP.

Reusable pieces, for sibling transports such as ``ssh_windows``:

* :func:`open_ssh_client` opens the socket itself (connect timeout, ``TCP_NODELAY``) or a
  ``direct-tcpip`` tunnel through the bastions of ``--ssh_jump`` / ``ProxyJump`` (each hop's host
  key verified and each hop authenticated in turn), verifies the host key against
  ``$TLSGATE_HOME/known_hosts`` then ``~/.ssh/known_hosts``, and authenticates with what the
  operator configured (password and/or private key with its ``-cert.pub``); only when nothing is
  configured, a host alias's ``IdentityFile`` from ``~/.ssh/config``, else an ssh-agent's keys
  (never ``~/.ssh/id_*`` guessed). Every failure is a :class:`ConnectionFailed` naming host and
  port (and "bastion N" for a hop), never a secret. :mod:`.ssh_route` parses jump specs and
  applies ``~/.ssh/config``.
* ``--sudo`` / ``--sudo_password``: commands a driver marks ``privileged`` run through sudo, and
  file operations the account is refused fall back to sudo (see :mod:`.ssh_sudo` and
  :meth:`SSHConnection.write_file`).
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
import functools
import io
import os
import re
import select
import socket
import stat as stat_mod
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ..connection import Connection, LateCheckedWrites, temp_name
from ..errors import ConnectionFailed, FileChanged, HostKeyError, OperationError
from ..models import CommandResult, ConnectionType, Credentials, Endpoint, FileStat, Problem
from ..options import option
from ..plugin import impl
from ..quoting import sh_join
from ..secret import Secret, reveal
from . import ssh_sudo
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
    if _TCP_QUICKACK is None:
        return sock
    quick = _QuickAckSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    quick.settimeout(timeout)
    return quick


_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class _QuickAckSocket(socket.socket):
    """A TCP socket that acknowledges what it receives at once (Linux ``TCP_QUICKACK``, which
    the kernel clears again by itself, so it is set after every read).

    Why: OpenSSH's sshd leaves Nagle's algorithm on for non-interactive sessions. Right after
    authentication it sends its host keys (``hostkeys-00@openssh.com``) unasked; our
    ``CHANNEL_OPEN`` crosses them, and sshd's confirmation then waits in its kernel until that
    data is acknowledged -- which a client in delayed-ACK mode does only after its timer (40 ms
    on Linux). Measured against the loopback sshd: 45 ms of every connection's 85 ms was that
    wait. paramiko reads with ``recv`` in its transport thread, so this is where to set it; a
    failing setsockopt only loses the optimisation."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        if data:
            try:
                self.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)  # type: ignore[arg-type]
            except OSError:
                pass
        return data


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
                ident = _file_identity(path, os.fstat(fh.fileno()), passphrase)
                cached = _key_file_cache_get(ident)
                if cached is not None:
                    return cached
                data = fh.read()
        except FileNotFoundError:
            raise ConnectionFailed(f"--ssh_key_path {path}: no such file on the gateway") from None
        except PermissionError:
            raise ConnectionFailed(f"--ssh_key_path {path}: permission denied") from None
        except IsADirectoryError:
            raise ConnectionFailed(f"--ssh_key_path {path}: is a directory") from None
        pkey = _with_certificate(load_private_key(data, passphrase, source=f"--ssh_key_path {path}"), path)
        if not os.path.exists(f"{path}-cert.pub"):  # with a certificate: loaded each time (it may change alone)
            _key_file_cache_put(ident, pkey)
        return pkey
    return None


# Parsed keys of --ssh_key_path files, by the file's identity: a fleet job connects once per
# endpoint, and every endpoint named the same key file, which was read, decrypted (an
# encrypted key: its KDF) and parsed again for each (~0.7 ms, the bcrypt KDF of an encrypted
# OpenSSH key far more). Within one process only; a key file that is replaced, rewritten or
# touched (another inode, size, mtime or ctime), or a different passphrase, is loaded again,
# and the file is opened (so its permissions are checked) on every connection.
_KEY_FILES: dict[tuple[Any, ...], paramiko.PKey] = {}
_KEY_FILES_MAX = 16
_KEY_FILES_LOCK = threading.Lock()


def _file_identity(path: str, st: os.stat_result, passphrase: str | None) -> tuple[Any, ...]:
    import hashlib

    secret = hashlib.sha256(passphrase.encode("utf-8", "surrogatepass")).digest() if passphrase else b""
    return (os.path.abspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, secret)


def _key_file_cache_get(ident: tuple[Any, ...]) -> paramiko.PKey | None:
    with _KEY_FILES_LOCK:
        return _KEY_FILES.get(ident)


def _key_file_cache_put(ident: tuple[Any, ...], pkey: paramiko.PKey) -> None:
    with _KEY_FILES_LOCK:
        for old in [k for k in _KEY_FILES if k[0] == ident[0]]:  # the file's earlier versions
            del _KEY_FILES[old]
        while len(_KEY_FILES) >= _KEY_FILES_MAX:
            del _KEY_FILES[next(iter(_KEY_FILES))]
        _KEY_FILES[ident] = pkey


def _timeout(endpoint: Endpoint) -> float:
    value = (endpoint.connection.extra or {}).get("timeout")
    try:
        return float(value) if value else DEFAULT_TIMEOUT
    except (TypeError, ValueError):
        return DEFAULT_TIMEOUT


def _with_certificate(pkey: paramiko.PKey, key_path: str | None) -> paramiko.PKey:
    """Attach the OpenSSH user certificate beside the key (``<key>-cert.pub``), as ssh does, so
    the server may accept the certificate where it does not list the bare key."""
    if not key_path:
        return pkey
    cert = f"{key_path}-cert.pub"
    if os.path.isfile(cert):
        try:
            pkey.load_certificate(cert)
        except (OSError, ValueError) as exc:
            raise ConnectionFailed(f"{cert}: cannot use this certificate with its key ({_plain(exc)})") from None
    return pkey


def _identity_file_key(paths: Sequence[str], passphrase: str | None) -> paramiko.PKey | None:
    """The first readable ``IdentityFile`` of ``~/.ssh/config`` (with its certificate)."""
    for path in paths:
        if os.path.isfile(path):
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            return _with_certificate(load_private_key(data, passphrase, source=f"IdentityFile {path}"), path)
    return None


@functools.cache
def _client_class() -> type:
    """A ``paramiko.SSHClient`` that also closes the bastion connections it was opened through."""
    import paramiko

    class Client(paramiko.SSHClient):
        def __init__(self) -> None:
            super().__init__()
            self.hops: list[Any] = []

        def close(self) -> None:
            super().close()
            for hop in reversed(self.hops):
                _close_quietly(hop)
            self.hops = []

    return Client


def _hop_credentials(credentials: Credentials, index: int) -> Credentials:
    """A bastion's credentials: its own from the credential store when given, else the endpoint's."""
    own = credentials.hops[index] if index < len(credentials.hops) else None
    return own if own is not None else credentials


def _authenticate(
    client: Any, *, host: str, port: int, user: str, password: str | None, pkey: Any, sock: Any,
    timeout: float, endpoint_name: str | None, label: str, agent: bool,
) -> None:
    """``client.connect`` over ``sock`` with every failure mapped to one clear line."""
    import paramiko

    where = f"{label}{user}@{host}:{port}"
    try:
        client.connect(
            host, port=port, username=user, password=password or None, pkey=pkey, sock=sock,
            # the key exchange may take longer than the banner, so the handshake gets twice as long
            timeout=2 * timeout, banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
            allow_agent=agent, look_for_keys=False,
        )
    except HostKeyError:
        _close_quietly(client, sock)
        raise
    except paramiko.BadHostKeyException as exc:
        _close_quietly(client, sock)
        raise HostKeyError(
            f"{label}{host}:{port}: SSH HOST KEY CHANGED: the host presented {exc.key.get_name()} "
            f"{fingerprint(exc.key)} but {fingerprint(exc.expected_key)} is trusted; this may be an "
            f"attack (or a reinstalled host); refusing to connect. "
            + _trust_hint(endpoint_name, host, port).replace("if this is", "if the new key is"),
            fingerprint=fingerprint(exc.key),
            host=host,
        ) from None
    except paramiko.BadAuthenticationType as exc:
        _close_quietly(client, sock)
        tried = "key" if pkey is not None and not password else ("agent key" if agent else "password")
        raise ConnectionFailed(
            f"{where}: authentication failed: the server does not accept {tried} login "
            f"(it allows: {', '.join(exc.allowed_types) or 'nothing'})", host=host
        ) from None
    except paramiko.AuthenticationException:
        _close_quietly(client, sock)
        used = (("private key", pkey is not None), ("password", bool(password)), ("ssh-agent keys", agent))
        tried = " and ".join(m for m, on in used if on)
        raise ConnectionFailed(f"{where}: authentication failed ({tried} refused)", host=host) from None
    except (paramiko.SSHException, EOFError, OSError) as exc:
        transport = client.get_transport()
        cause = transport.get_exception() if transport is not None else None  # the reader thread's
        _close_quietly(client, sock)
        text = _plain(cause or exc)
        if "no authentication methods available" in text.lower():
            raise ConnectionFailed(f"{where}: no SSH credential to offer (give one, or its own with "
                                   "--ssh_jump_store_cred_id for a bastion, an IdentityFile in ~/.ssh/config, "
                                   "or an ssh-agent)", host=host) from None
        if "banner" in text.lower():
            text = f"no SSH banner within {timeout:g} s (is this an SSH server?)"
        elif "no existing session" in text.lower():
            text = f"the SSH handshake did not complete within {2 * timeout:g} s"
        raise ConnectionFailed(f"{where}: SSH connection failed: {text}", host=host) from None


def _tunnel(via: Any, host: str, port: int, timeout: float, label: str, through: str = "the bastion") -> Any:
    """A ``direct-tcpip`` channel through the bastion ``via`` to host:port (ssh -J's forwarding)."""
    import paramiko

    transport = via.get_transport()
    try:
        channel = transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
    except paramiko.ChannelException as exc:
        raise ConnectionFailed(f"{label}cannot reach {host}:{port} through {through}: "
                               f"{exc.text or 'refused'} (is it listening, and may {through} forward?)",
                               host=host) from None
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise ConnectionFailed(f"{label}cannot open a tunnel to {host}:{port}: {_plain(exc)}", host=host) from None
    return channel


def format_jump(hops: Any) -> str:
    from .ssh_route import format_jump as fmt

    return fmt(tuple(hops))


def target_route(endpoint: Endpoint, credentials: Credentials | None = None) -> Any:
    """The endpoint's :class:`~.ssh_route.Route` after ``~/.ssh/config`` (host alias)."""
    from .ssh_route import resolve

    spec = endpoint.connection
    if not spec.host:
        raise ConnectionFailed(f"{endpoint.name}: no --host for an SSH connection")
    user = (credentials.user if credentials else None) or spec.user
    try:
        return resolve(spec.host, spec.port, user, (spec.extra or {}).get("ssh_jump"))
    except ValueError as exc:
        raise ConnectionFailed(f"{endpoint.name}: {exc}") from None


def open_hops(endpoint: Endpoint, credentials: Credentials, route: Any, timeout: float) -> tuple[list[Any], Any]:
    """Connect through every bastion of ``route`` in turn (each host key checked against
    known_hosts, each authenticated); return the bastion clients and the socket (a tunnel
    channel, or a TCP socket when there is none) to the final host."""
    import paramiko

    hops: list[Any] = []
    sock: Any = None
    try:
        for index, hop in enumerate(route.jump):
            label = f"bastion {index + 1} "
            sock = (_open_socket(hop.host, hop.port, timeout) if not hops
                    else _tunnel(hops[-1], hop.host, hop.port, timeout, label))
            creds = _hop_credentials(credentials, index)
            user = hop.user or creds.user or route.user
            if not user:
                raise ConnectionFailed(f"{label}{hop.host}:{hop.port}: no user to log in as "
                                       "(write it in --ssh_jump as user@host)", host=hop.host)
            password = reveal(creds.password)
            pkey = _client_key(creds)
            if pkey is None and not password:  # as ssh: the hop's own Host entry, else the endpoint's
                pkey = _identity_file_key([*_config_identity_files(hop.host), *route.identity_files],
                                          reveal(creds.ssh_key_password))
            client = paramiko.SSHClient()
            for keytype, key in known_host_keys(hop.host, hop.port).items():
                client.get_host_keys().add(known_hosts_name(hop.host, hop.port), keytype, key)
            client.set_missing_host_key_policy(
                _host_key_policy(endpoint.name, hop.host, port=hop.port, label=label))
            _authenticate(client, host=hop.host, port=hop.port, user=user, password=password, pkey=pkey,
                          sock=sock, timeout=timeout, endpoint_name=endpoint.name, label=label,
                          agent=pkey is None and not password and _agent_available())
            hops.append(client)
        final = (_open_socket(route.host, route.port, timeout) if not hops
                 else _tunnel(hops[-1], route.host, route.port, timeout, ""))
    except BaseException:
        for client in reversed(hops):
            _close_quietly(client)
        raise
    return hops, final


def path_host_key(endpoint: Endpoint, credentials: Credentials, route: Any) -> tuple[str, str, Any, str, int]:
    """``(key type, fingerprint, key, host, port)`` of the first host on the way whose key is
    not trusted yet (a bastion, reached through the trusted ones before it), else of the final
    host. Backs ``tls trust`` for endpoints behind bastions: run it once per untrusted hop."""
    timeout = _timeout(endpoint)
    target = (route.host, route.port)
    prefix = route
    for index, hop in enumerate(route.jump):
        if not known_host_keys(hop.host, hop.port):
            target = (hop.host, hop.port)
            prefix = attrs.evolve(route, jump=route.jump[:index], host=hop.host, port=hop.port)
            break
    hops, sock = open_hops(endpoint, credentials, prefix, timeout)
    try:
        key_type, fp, key = fetch_host_key(target[0], target[1], timeout, sock=sock)
    finally:
        for client in reversed(hops):
            _close_quietly(client)
    return key_type, fp, key, target[0], target[1]


def _config_identity_files(host: str) -> list[str]:
    from .ssh_route import lookup_config

    try:
        found = lookup_config(host)
    except ValueError:
        return []
    return [os.path.expanduser(str(p)) for p in (found.get("identityfile") or ())]  # type: ignore[attr-defined]


def _agent_available() -> bool:
    return bool(os.environ.get("SSH_AUTH_SOCK"))


def open_ssh_client(
    endpoint: Endpoint, credentials: Credentials, *, timeout: float | None = None
) -> paramiko.SSHClient:
    """Connect (through the bastions of ``--ssh_jump`` or ``~/.ssh/config``'s ProxyJump), verify
    every host key, authenticate; return the open ``paramiko.SSHClient``.

    Authentication uses what the operator configured: password and/or private key (with its
    ``-cert.pub`` certificate); without either, the ``IdentityFile`` of ``~/.ssh/config`` for a
    host alias, else the keys of a running ssh-agent (``SSH_AUTH_SOCK``). Raises
    :class:`HostKeyError` (unknown or changed host key, with the fingerprint) or
    :class:`ConnectionFailed` (refused, unreachable, timed out, not SSH, authentication failed).
    """
    route = target_route(endpoint, credentials)
    host, port, user = route.host, route.port, route.user
    if not user:
        raise ConnectionFailed(f"{host}:{port}: no user to log in as (give --user or store it in the credential)",
                               host=host)
    timeout = timeout or _timeout(endpoint)
    password = reveal(credentials.password)
    pkey = _client_key(credentials)
    if pkey is None and not password and route.identity_files:
        pkey = _identity_file_key(route.identity_files, reveal(credentials.ssh_key_password))
    agent = pkey is None and not password and _agent_available()
    if pkey is None and not password and not agent:
        raise ConnectionFailed(f"{host}:{port}: no SSH credential (give --password, --ssh_key_path, "
                               "or --store/--store_cred_id, or run an ssh-agent: SSH_AUTH_SOCK)", host=host)

    hops, sock = open_hops(endpoint, credentials, route, timeout)
    client = _client_class()()
    client.hops = hops
    for keytype, key in known_host_keys(host, port).items():
        client.get_host_keys().add(known_hosts_name(host, port), keytype, key)
    client.set_missing_host_key_policy(_host_key_policy(endpoint.name, host, port))
    try:
        _authenticate(client, host=host, port=port, user=user, password=password, pkey=pkey, sock=sock,
                      timeout=timeout, endpoint_name=endpoint.name, label="", agent=agent)
    except BaseException:
        client.close()
        raise
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(30)
    return client  # type: ignore[no-any-return]


def _close_quietly(client: Any, sock: socket.socket | None = None) -> None:
    with contextlib.suppress(Exception):
        client.close()
    if sock is not None:
        with contextlib.suppress(Exception):
            sock.close()


# -- the connection -----------------------------------------------------------------------------
# -- pipelined SFTP ------------------------------------------------------------------------------
# paramiko's SFTPClient pipelines a file's writes and prefetches its reads, but sends every other
# request (open, fstat, chmod, fsync, close) alone and waits for its answer; on a busy host each
# wait is a scheduling round trip through sshd and sftp-server. These helpers send a batch of
# requests at once on paramiko's own request machinery (the server runs them in order) and
# collect every answer: a small file is read in two round trips (open; fstat + reads) instead of
# five, and written in two (open; chmod/chown + writes + fsync + close) instead of seven.
_CHUNK = 32768  # paramiko's MAX_REQUEST_SIZE: the read/write size every SFTP server accepts


class _Replies:
    """Receives the answers paramiko routes to the object registered with each request."""

    def __init__(self) -> None:
        self.got: dict[int, tuple[int, Any]] = {}

    def _async_response(self, t: int, msg: Any, num: int) -> None:
        self.got[num] = (t, msg)


def _sftp_batch(sftp: Any, requests: Sequence[tuple[int, tuple[Any, ...]]]) -> list[tuple[int, Any]]:
    """Send ``requests`` ((command, args), ...) without waiting, then wait for every answer."""
    replies = _Replies()
    nums = [sftp._async_request(replies, t, *args) for t, args in requests]
    for num in nums:
        while num not in replies.got:
            sftp._read_response()
    return [replies.got[n] for n in nums]


def _status_error(sftp: Any, t: int, msg: Any) -> OSError | None:
    """The OSError an SFTP answer stands for (paramiko's mapping of status codes), or None."""
    from paramiko.sftp import CMD_STATUS, SFTP_OK

    if t != CMD_STATUS:
        return None
    code = msg.get_int()
    return None if code == SFTP_OK else _status_exception(sftp, code, msg.get_text())


def _status_exception(sftp: Any, code: int, text: str) -> OSError:
    from paramiko.message import Message
    from paramiko.sftp import SFTP_EOF

    if code == SFTP_EOF:  # where an answer was due (paramiko would raise EOFError: "connection lost")
        return OSError(errno.EIO, f"unexpected end of file: {text}")
    reply = Message()
    reply.add_int(code)
    reply.add_string(text)
    reply.rewind()
    try:
        sftp._convert_status(reply)
    except OSError as exc:
        return exc
    return OSError(text)


def _sftp_read(sftp: Any, path: str) -> bytes:
    """The whole file: open; then fstat and the reads that cover it, pipelined; close (unwaited)."""
    return _sftp_read_attrs(sftp, path)[0]


def _sftp_read_attrs(sftp: Any, path: str) -> tuple[bytes, Any]:
    """:func:`_sftp_read` and the file's attributes as its open handle's fstat gave them."""
    from paramiko.sftp import (
        CMD_ATTRS,
        CMD_CLOSE,
        CMD_DATA,
        CMD_FSTAT,
        CMD_HANDLE,
        CMD_OPEN,
        CMD_READ,
        CMD_STATUS,
        SFTP_EOF,
        SFTP_FLAG_READ,
        int64,
    )
    from paramiko.sftp_attr import SFTPAttributes

    t, msg = sftp._request(CMD_OPEN, path, SFTP_FLAG_READ, SFTPAttributes())
    if t != CMD_HANDLE:
        raise OSError(errno.EIO, "expected a file handle")
    handle = msg.get_binary()
    try:
        parts: list[bytes] = []
        offset, size, eof = 0, None, False
        attributes: Any = None
        while not eof:
            # until the size is known: two reads (a small file and its end in one round trip)
            count = 2 if size is None else max(1, -(-(size - offset) // _CHUNK)) + 1
            requests = [(CMD_READ, (handle, int64(offset + i * _CHUNK), _CHUNK)) for i in range(count)]
            if size is None:
                requests.insert(0, (CMD_FSTAT, (handle,)))
            replies = _sftp_batch(sftp, requests)
            if size is None:
                t, msg = replies.pop(0)
                if t != CMD_ATTRS:
                    raise _status_error(sftp, t, msg) or OSError(errno.EIO, "expected file attributes")
                attributes = SFTPAttributes._from_msg(msg)
                size = int(attributes.st_size or 0)
            start = offset
            for i, (t, msg) in enumerate(replies):
                at = start + i * _CHUNK
                if t == CMD_DATA and at == offset:
                    chunk = msg.get_binary()
                    parts.append(chunk)
                    offset += len(chunk)
                    continue
                if t == CMD_STATUS:
                    code = msg.get_int()
                    if code != SFTP_EOF:
                        raise _status_exception(sftp, code, msg.get_text())
                    # the end: at the contiguous end of what was read, or beyond it when the file
                    # is no longer than that (a short last read, then EOF); else ask again
                    eof = at == offset or offset >= size
                    break
                if t == CMD_DATA:
                    break  # after a short read (allowed anywhere): ask again from the new offset
                raise OSError(errno.EIO, f"unexpected SFTP answer {t}")
        return b"".join(parts), attributes
    finally:
        with contextlib.suppress(Exception):
            sftp._async_request(type(None), CMD_CLOSE, handle)  # answered later, ignored


def _sftp_create(sftp: Any, path: str, mode: int) -> bytes:
    """Create ``path`` exclusively for writing, with permission bits no wider than ``mode``."""
    from paramiko.sftp import CMD_HANDLE, CMD_OPEN, SFTP_FLAG_CREATE, SFTP_FLAG_EXCL, SFTP_FLAG_TRUNC, SFTP_FLAG_WRITE
    from paramiko.sftp_attr import SFTPAttributes

    attr = SFTPAttributes()
    attr.st_mode = mode & 0o777
    t, msg = sftp._request(CMD_OPEN, path, SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC | SFTP_FLAG_EXCL, attr)
    if t != CMD_HANDLE:
        raise OSError(errno.EIO, "expected a file handle")
    return bytes(msg.get_binary())


def _sftp_write_batch(sftp: Any, handle: bytes, data: bytes, mode: int, owner: tuple[int, int] | None,
                      *, fsync: bool) -> bool | None:
    """chmod, [chown, chmod,] write, [fsync,] close on an open handle, in one batch. Returns
    whether ``fsync@openssh.com`` worked (None: not asked). Raises the first failure (a refused
    chown excepted)."""
    from paramiko.sftp import CMD_CLOSE, CMD_EXTENDED, CMD_FSETSTAT, CMD_WRITE, int64
    from paramiko.sftp_attr import SFTPAttributes

    def perms() -> Any:
        a = SFTPAttributes()
        a.st_mode = mode
        return a

    requests: list[tuple[int, tuple[Any, ...]]] = [(CMD_FSETSTAT, (handle, perms()))]
    chown_at = fsync_at = -1
    if owner is not None:
        a = SFTPAttributes()
        a.st_uid, a.st_gid = owner
        chown_at = len(requests)
        requests += [(CMD_FSETSTAT, (handle, a)), (CMD_FSETSTAT, (handle, perms()))]
    view = memoryview(data)
    requests += [(CMD_WRITE, (handle, int64(o), bytes(view[o:o + _CHUNK]))) for o in range(0, len(view), _CHUNK)]
    if fsync:
        fsync_at = len(requests)
        requests.append((CMD_EXTENDED, ("fsync@openssh.com", handle)))
    requests.append((CMD_CLOSE, (handle,)))
    fsync_ok = None
    failure: OSError | None = None
    for i, (t, msg) in enumerate(_sftp_batch(sftp, requests)):
        error = _status_error(sftp, t, msg)
        if i == fsync_at:
            fsync_ok = error is None  # unsupported by this server: the rename is still atomic
        elif error is not None and i != chown_at and failure is None:
            failure = error
    if failure is not None:
        raise failure
    return fsync_ok


def _changes_host(method: Callable[..., None]) -> Callable[..., None]:
    """An :class:`SSHConnection` method that changes something on the host: cached reads are
    forgotten before and after it (see :meth:`SSHConnection.cached_reads`)."""

    @functools.wraps(method)
    def changing(self: SSHConnection, *args: Any, **kwargs: Any) -> None:
        self._changed()
        try:
            method(self, *args, **kwargs)
        finally:
            self._changed()

    return changing


#: Paths whose reads :meth:`SSHConnection.cached_reads` never keeps.
_LIVE_FILES = ("/proc/", "/sys/", "/dev/")


class SSHConnection(LateCheckedWrites, Connection):
    """A :class:`Connection` over one SSH transport: exec channels and one SFTP session.

    Subclasses for other remote platforms override :attr:`platform`, :meth:`sftp_path` (how a
    path the driver uses is spelled for the SFTP server) and :meth:`run`.
    """

    platform = "posix"

    #: Seconds one SFTP request may wait for its answer before the connection counts as lost.
    io_timeout: float = 120.0

    def __init__(self, client: paramiko.SSHClient, *, host: str, port: int = DEFAULT_PORT, user: str = "",
                 io_timeout: float | None = None, sudo: bool = False, sudo_password: Secret | None = None) -> None:
        self.client = client
        self.host = host
        self.port = port
        self.user = user
        if io_timeout:
            self.io_timeout = io_timeout
        self._sftp: Any = None
        self._fsync_ok: bool | None = None
        #: "sudo" when commands marked privileged (and writes the account may not do) go through sudo.
        self.escalation = "sudo" if sudo else None
        self._sudo_password = sudo_password
        self._uid: int | None = None
        #: How the host was reached, for ``tls test`` ("10.0.0.5:22 from ~/.ssh/config; through ...").
        self.route_note = ""
        #: Within :meth:`cached_reads`: what was read / stat'ed since the last change (else None),
        #: and a counter of changes, so a read that raced a change is not kept.
        self._files: dict[str, bytes] | None = None
        self._stats: dict[str, FileStat] | None = None
        self._changes = 0
        #: Set by the first command or tunnel within :meth:`cached_reads`: from then on nothing
        #: is kept. A command can start what changes files after it returned (a reload, a
        #: restart writing its pid file), and the waits that follow poll such files (/proc
        #: entries of the old workers): a kept read made every poll see the first answer until
        #: its deadline (nginx over ssh: 80 s of a test's 94).
        self._live = False

    #: Whether :meth:`cached_reads` caches (subclasses whose writes bypass this class's
    #: methods turn it off).
    read_cache = True

    # -- plumbing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def cached_reads(self) -> Iterator[None]:
        """See :meth:`tlsgate.connection.Connection.cached_reads`: one install reads its
        keystore or config up to six times within milliseconds (discovery, the driver's load,
        the backup, the read-back, the re-discovery), each two SFTP round trips and ~1 ms of
        paramiko's Python. Within the block a repeated read or stat of a path is answered from
        what this connection read last, until any change through it (:meth:`_changed`). The
        read-back after a write and the late check before a rename are reads of the host's
        file: every write forgets everything first, and the late check never uses the cache."""
        if self._files is not None or not self.read_cache:
            yield  # nested: the outer block's cache
            return
        self._files, self._stats = {}, {}
        self._live = False
        try:
            yield
        finally:
            self._files = self._stats = None
            self._live = False

    def _changed(self) -> None:
        """Something may have changed on the host (a write, a rename, a command): forget every
        cached read (called before and after each such operation)."""
        self._changes += 1
        if self._files:
            self._files.clear()
        if self._stats:
            self._stats.clear()

    def _remember(self, path: str, changes: int, data: bytes | None, st: FileStat | None) -> None:
        """Keep a read (and/or the file's attributes) made while the change counter was
        ``changes``, unless something changed since it was sent."""
        files, stats = self._files, self._stats
        if files is None or stats is None or changes != self._changes or self._live:
            return
        if path.startswith(_LIVE_FILES):  # kernel views: the state of processes now
            return
        if data is not None:
            files[path] = data
        if st is not None:
            stats[path] = st

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def _transport(self) -> Any:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectionFailed(f"{self.where}: the SSH connection is closed", host=self.host)
        return transport

    def open_socket(self, host: str, port: int, *, timeout: float = 10.0) -> Any:
        self._changed()  # what the service at the other end does is not known
        self._live = self._files is not None
        channel = _tunnel(self.client, host, port, timeout, f"{self.where}: ", through="its sshd")
        channel.settimeout(timeout)
        return channel

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

    @property
    def _openssh(self) -> bool:
        """Whether the server is OpenSSH (its sftp-server's ``realpath`` semantics are known)."""
        transport = self.client.get_transport()
        return "openssh" in str(getattr(transport, "remote_version", "") or "").lower()

    @contextlib.contextmanager
    def _sftp_errors(self, path: str, action: str, *, denied: bool = False) -> Iterator[None]:
        """Turn paramiko/SFTP failures into one-line OperationError / ConnectionFailed
        (``denied=True``: a PermissionError goes through, for the caller's sudo fallback)."""
        import paramiko

        try:
            yield
        except FileNotFoundError:
            raise OperationError(f"{self.host}: {path}: no such file or directory", host=self.host) from None
        except PermissionError:
            if denied:
                raise
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
        privileged: bool = False,
    ) -> CommandResult:
        argv = tuple(str(a) for a in argv)
        if privileged and self.escalation == "sudo":
            result = self._run_sudo(argv, stdin=stdin, timeout=timeout, env=env)
        else:
            command, header = self.command_line(argv, env)
            result = self.exec(command, (header + stdin) if stdin else header, timeout=timeout, argv=argv)
        return self.check(result) if check else result

    def _run_sudo(self, argv: tuple[str, ...], *, stdin: bytes | None, timeout: float | None,
                  env: Mapping[str, str] | None) -> CommandResult:
        """``sudo -n -- argv``; with a password and only when sudo says one is needed, again as
        ``sudo -S -p '' -- argv`` with the password as the first line of stdin (see
        :mod:`.ssh_sudo`). A refusal by sudo itself is an OperationError naming the command."""
        _inner, header = self.command_line(argv, env)
        target = ("sh", "-c", _ENV_PROLOGUE, "sh", *argv) if header else argv
        payload = header + (stdin or b"")
        result = self.exec(ssh_sudo.sudo_command_line(target), payload, timeout=timeout, argv=argv)
        kind = ssh_sudo.classify(result.exit_code, result.stderr)
        password = reveal(self._sudo_password)
        if kind == "password" and password is not None:
            line = password.encode() + b"\n"
            result = self.exec(ssh_sudo.sudo_command_line(target, with_password=True), line + payload,
                               timeout=timeout, argv=argv)
            del line
            kind = ssh_sudo.classify(result.exit_code, result.stderr)
        del password
        if kind is not None:
            raise OperationError(ssh_sudo.describe(kind, argv, self.host, self.user), host=self.host)
        return result

    def sudo_allows(self, argv: Sequence[str]) -> bool:
        """Whether the account's sudo rules let it run ``argv`` as root (``sudo -n -l``; with a
        password configured, ``sudo -S -l``)."""
        res = self.exec(sh_join(ssh_sudo.list_argv(argv)), timeout=30, argv=tuple(argv))
        password = reveal(self._sudo_password)
        if res.exit_code != 0 and password is not None:
            listing = ["sudo", "-S", "-p", "", "-l", "--", *[str(a) for a in argv]]
            res = self.exec("LC_ALL=C " + sh_join(listing), password.encode() + b"\n", timeout=30, argv=tuple(argv))
        return res.exit_code == 0

    @property
    def uid(self) -> int | None:
        """The login account's uid on the remote host."""
        if self._uid is None:
            res = self.run(["id", "-u"])
            if res.ok and res.stdout.strip().isdigit():
                self._uid = int(res.stdout.strip())
        return self._uid

    def _privileged(self, argv: Sequence[str], what: str) -> CommandResult:
        """A file operation through sudo; a failure names the path."""
        res = self._run_sudo(tuple(argv), stdin=None, timeout=self.io_timeout, env=None)
        if not res.ok:
            detail = (res.stderr or res.stdout).strip().splitlines()
            raise OperationError(f"{self.host}: {what} through sudo failed: "
                                 f"{detail[-1] if detail else f'exit status {res.exit_code}'}", host=self.host)
        return res

    def _denied(self, path: str, action: str, fix: str) -> OperationError:
        who = self.user or "the login account"
        return OperationError(f"{self.host}: permission denied {action} {path} as {who} ({fix})", host=self.host)

    def exec(self, command: str, stdin: bytes = b"", *, timeout: float | None = 120,
             argv: tuple[str, ...] = ()) -> CommandResult:
        """Run ``command`` (already quoted for the remote shell) on a new exec channel."""
        status, stdout, stderr = self.exec_bytes(command, stdin, timeout=timeout, argv=argv)
        return CommandResult(argv or (command,), status, stdout.decode("utf-8", "surrogateescape"),
                             stderr.decode("utf-8", "replace"))

    def exec_bytes(self, command: str, stdin: bytes = b"", *, timeout: float | None = 120,
                   argv: tuple[str, ...] = ()) -> tuple[int, bytes, bytes]:
        """:meth:`exec` with standard output and error as bytes: ``(status, stdout, stderr)``."""
        import paramiko

        label = argv[0] if argv else "command"
        self._changed()  # a command may change any file (and may still run after a timeout)
        self._live = self._files is not None  # ... and may start what changes them later
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
        finally:
            self._changed()
        return status, stdout, stderr

    # -- files ----------------------------------------------------------------------------------
    def read_file(self, path: str) -> bytes:
        """The file's bytes over SFTP; when that read is refused and ``--sudo`` is on,
        ``sudo cat`` (root-only keys and configs)."""
        data = self._read(path)
        if data is None:
            raise OperationError(f"{self.host}: {path}: no such file or directory", host=self.host)
        return data

    def _read(self, path: str, *, fresh: bool = False) -> bytes | None:
        """:meth:`read_file`, or None when ``path`` does not exist. ``fresh``: from the host
        even within :meth:`cached_reads` (and not kept)."""
        files = self._files  # (one look-up each: a probe thread's tunnel may clear it meanwhile)
        cached = files.get(path) if files is not None and not fresh else None
        if cached is not None:
            return cached
        changes = self._changes
        try:
            with self._sftp_errors(path, "read", denied=True):
                try:
                    data, attributes = _sftp_read_attrs(self.sftp, self.sftp_path(path))
                except FileNotFoundError:
                    return None
                if not fresh:
                    self._remember(path, changes, data, _file_stat(attributes))
                return data
        except PermissionError:
            if self.escalation != "sudo":
                raise self._denied(path, "reading", "use --sudo, or give the account read permission") from None
        if self.stat(path) is None:
            return None
        return self._sudo_read(path)

    def _sudo_read(self, path: str) -> bytes:
        argv = ("cat", "--", path)
        status, out, err = self.exec_bytes(ssh_sudo.sudo_command_line(argv), timeout=self.io_timeout, argv=argv)
        kind = ssh_sudo.classify(status, err.decode("utf-8", "replace"))
        password = reveal(self._sudo_password)
        if kind == "password" and password is not None:
            status, out, err = self.exec_bytes(ssh_sudo.sudo_command_line(argv, with_password=True),
                                               password.encode() + b"\n", timeout=self.io_timeout, argv=argv)
            kind = ssh_sudo.classify(status, err.decode("utf-8", "replace"))
        del password
        if kind is not None:
            raise OperationError(ssh_sudo.describe(kind, argv, self.host, self.user), host=self.host)
        if status != 0:
            detail = err.decode("utf-8", "replace").strip().splitlines()
            raise OperationError(f"{self.host}: {path}: read through sudo failed: "
                                 f"{detail[-1] if detail else f'exit status {status}'}", host=self.host)
        return out

    def write_needs_privilege(self, path: str) -> bool:
        """Whether :meth:`write_file` would go through sudo (for ``--dry-run`` plans): the
        directory is not writable by the account, or the file belongs to someone else."""
        if self.escalation != "sudo":
            return False
        directory = self.path.dirname(path) or "."
        if not self.run(["test", "-w", directory]).ok:
            return True
        try:
            old = self.stat(path)
        except OperationError:
            return True
        return old is not None and old.uid is not None and self.uid not in (0, old.uid)

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        check, expect = self._expected(path)
        self._write(path, data, mode, check=check, expect=expect)

    def realpath(self, path: str) -> str:
        """SFTP ``realpath`` (OpenSSH resolves every link); a missing file: ``readlink -f``.
        OpenSSH's sftp-server resolves a missing last component (and a dangling link) as
        ``readlink -f`` does, so against it the one ``realpath`` request is enough."""
        if self._openssh:
            with contextlib.suppress(OSError, OperationError):
                with self._sftp_errors(path, "resolve", denied=True):
                    return str(self.sftp.normalize(self.sftp_path(path)))
        elif self.exists(path):
            with self._sftp_errors(path, "resolve"):
                return str(self.sftp.normalize(self.sftp_path(path)))
        return super().realpath(path)

    def _write(self, path: str, data: bytes, mode: int, *, check: bool, expect: bytes | None) -> None:
        """Atomic replace: temporary file in the same directory, owner of the old file where
        permitted, final mode before any byte, write, fsync, ``posix-rename``. A failure before
        the rename leaves ``path`` untouched.

        With ``--sudo``, a directory the account cannot write (or a file that belongs to another
        account, whose owner the account could not keep) goes through :meth:`_write_sudo`."""
        old = self.stat(path)  # the owner to keep (the content is checked just before the rename)
        self._replace(path, data, mode, old, check=check, expect=expect)

    @_changes_host
    def _replace(self, path: str, data: bytes, mode: int, old: FileStat | None, *, check: bool,
                 expect: bytes | None) -> None:
        if (self.escalation == "sudo" and old is not None and old.uid is not None
                and self.uid not in (0, old.uid)):
            self._write_sudo(path, data, mode, old, check, expect)
            return
        try:
            self._write_plain(path, data, mode, old, check, expect)
        except PermissionError:
            if self.escalation != "sudo":
                raise self._denied(path, "writing", "use --sudo, or give the group write permission") from None
            self._write_sudo(path, data, mode, old, check, expect)

    def _check_unchanged(self, path: str, check: bool, expect: bytes | None) -> None:
        """The last moment before the rename: never overwrite a file changed since it was read."""
        if check:
            current = self._read(path, fresh=True)
            if current != expect:
                raise FileChanged(self.host, path)

    def _write_plain(self, path: str, data: bytes, mode: int, old: FileStat | None,
                     check: bool = False, expect: bytes | None = None) -> None:
        directory = self.path.dirname(path) or "."
        tmp = self.path.join(directory, temp_name())
        sftp = self.sftp
        created = False
        try:
            with self._sftp_errors(path, "write", denied=True):
                # created with the final mode's permission bits (never wider: the server's umask
                # only narrows), then, in one pipelined batch the server runs in order: chmod to
                # the exact mode, chown to the old owner (only root may give a file away: a
                # refusal is ignored) and chmod again (chown may clear set-id bits), the bytes,
                # fsync, close. Any other failure in the batch fails the write.
                handle = _sftp_create(sftp, self.sftp_path(tmp), mode)
                created = True
                owner = (old.uid, old.gid if old.gid is not None else old.uid) \
                    if old is not None and old.uid is not None else None
                synced = _sftp_write_batch(sftp, handle, data, mode, owner, fsync=self._fsync_ok is not False)
                if synced is not None:
                    self._fsync_ok = synced
            self._check_unchanged(path, check, expect)
            with self._sftp_errors(path, "rename", denied=True):
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

    def _send(self, fh: Any, data: bytes) -> None:
        fh.set_pipelined(True)
        view = memoryview(data)
        for offset in range(0, len(view), 1 << 18):
            fh.write(view[offset:offset + (1 << 18)])
        fh.flush()
        self._fsync(fh)

    def _write_sudo(self, path: str, data: bytes, mode: int, old: FileStat | None,
                    check: bool = False, expect: bytes | None = None, mtime: float | None = None) -> None:
        """The content goes to a temporary file the account owns (mode 0600, in its home), then
        ``sudo install -m MODE [-o UID -g GID]`` copies it to a temporary name in the target
        directory and ``sudo mv -f`` renames that over ``path`` (one rename in one directory:
        atomic). Owner and group of the old file are kept; a new file belongs to root.
        ``mtime``: the staged file gets it and ``install -p`` keeps it (see :meth:`set_mtime`)."""
        sftp = self.sftp
        with self._sftp_errors("~", "home directory lookup"):
            home = sftp.normalize(".")
        name = temp_name()
        staged = self.path.join(home, name)
        target_tmp = self.path.join(self.path.dirname(path) or ".", name)
        try:
            with self._sftp_errors(staged, "write"), sftp.open(self.sftp_path(staged), "wbx") as fh:
                fh.chmod(0o600)
                self._send(fh, data)
            argv = ["install", "-m", f"{mode:04o}"]
            if mtime is not None:
                with self._sftp_errors(staged, "utime"):
                    sftp.utime(self.sftp_path(staged), (mtime, mtime))
                argv.append("-p")
            if old is not None and old.uid is not None:
                argv += ["-o", str(old.uid), "-g", str(old.gid if old.gid is not None else old.uid)]
            self._privileged([*argv, "--", staged, target_tmp], f"writing {path}")
            try:
                self._check_unchanged(path, check, expect)
                self._privileged(["mv", "-f", "--", target_tmp, path], f"writing {path}")
            except OperationError as exc:
                try:
                    self._privileged(["rm", "-f", "--", target_tmp], f"removing {target_tmp}")
                except Exception:  # noqa: BLE001 - say what is left behind
                    raise OperationError(f"{exc}; {path} is unchanged, but the temporary copy {target_tmp} "
                                         "remains (sudo rm was refused too)", host=self.host) from None
                raise
        finally:
            with contextlib.suppress(Exception):
                sftp.remove(self.sftp_path(staged))

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
        stats = self._stats
        cached = stats.get(path) if stats is not None else None
        if cached is not None:
            return cached
        changes = self._changes
        try:
            with self._sftp_errors(path, "stat", denied=True):
                try:
                    attrs = self.sftp.stat(self.sftp_path(path))
                except FileNotFoundError:
                    return None
        except PermissionError:
            if self.escalation != "sudo":
                raise self._denied(path, "looking up", "use --sudo, or give the account access to the directory") from None
            return self._sudo_stat(path)
        st = _file_stat(attrs)
        self._remember(path, changes, None, st)
        return st

    def _sudo_stat(self, path: str) -> FileStat | None:
        res = self._run_sudo(("stat", "-L", "-c", "%s %f %Y %u %g", "--", path), stdin=None,
                             timeout=self.io_timeout, env=None)
        if not res.ok:
            if "no such file" in res.stderr.lower():
                return None
            self._privileged(("stat", "--", path), f"stat of {path}")  # raises with the reason
        size, raw_mode, mtime, uid, gid = res.stdout.split()
        mode = int(raw_mode, 16)
        return FileStat(size=int(size), mode=stat_mod.S_IMODE(mode), mtime=float(mtime), uid=int(uid),
                        gid=int(gid), is_dir=stat_mod.S_ISDIR(mode))

    @_changes_host
    def remove(self, path: str) -> None:
        try:
            with self._sftp_errors(path, "remove", denied=True), contextlib.suppress(FileNotFoundError):
                self.sftp.remove(self.sftp_path(path))
        except PermissionError:
            if self.escalation != "sudo":
                raise self._denied(path, "removing", "use --sudo, or give the group write permission") from None
            self._privileged(["rm", "-f", "--", path], f"removing {path}")

    @_changes_host
    def rename(self, src: str, dst: str) -> None:
        try:
            with self._sftp_errors(src, f"rename to {dst}", denied=True):
                self.sftp.posix_rename(self.sftp_path(src), self.sftp_path(dst))
        except PermissionError:
            if self.escalation != "sudo":
                raise self._denied(dst, "renaming to", "use --sudo, or give the group write permission") from None
            self._privileged(["mv", "-f", "--", src, dst], f"renaming {src} to {dst}")

    def listdir(self, path: str) -> list[str]:
        try:
            with self._sftp_errors(path, "list", denied=True):
                return sorted(self.sftp.listdir(self.sftp_path(path)))
        except PermissionError:
            raise self._denied(path, "listing", "give the account read permission on the directory") from None

    @_changes_host
    def makedirs(self, path: str, *, mode: int = 0o755) -> None:
        existing = self.stat(path)
        if existing is not None:
            if not existing.is_dir:
                raise OperationError(f"{self.host}: {path}: exists and is not a directory", host=self.host)
            return
        parent = self.path.dirname(path.rstrip("/\\"))
        if parent and parent != path:
            self.makedirs(parent, mode=mode)
        try:
            with self._sftp_errors(path, "mkdir", denied=True):
                try:
                    self.sftp.mkdir(self.sftp_path(path), mode)
                except PermissionError:
                    raise
                except OSError:
                    if self.stat(path) is None:  # lost a race with another creator: fine
                        raise
        except PermissionError:
            if self.escalation != "sudo":
                raise self._denied(path, "creating", "use --sudo, or give the group write permission") from None
            # ``install -d`` rather than ``mkdir``: the same sudoers rule that lets files in
            # (install, mv, rm, cat) creates the directory; the parents exist already (above)
            self._privileged(["install", "-d", "-m", f"{mode:04o}", "--", path], f"creating {path}")

    @_changes_host
    def set_mtime(self, path: str, mtime: float) -> None:
        """SFTP ``setstat`` of the times (the access time kept). A file the account may not
        change (root's, written through sudo) is written once more through sudo with the same
        content and ``install -p`` from a staged copy with that mtime: the rule that lets files
        in (install, mv, cat) is enough, no ``touch`` in it."""
        try:
            with self._sftp_errors(path, "utime", denied=True):
                attrs = self.sftp.stat(self.sftp_path(path))
                self.sftp.utime(self.sftp_path(path), (attrs.st_atime or mtime, mtime))
        except PermissionError:
            if self.escalation != "sudo":
                return  # best effort, as touch was: the content is back, only the time is not
            old = self.stat(path)
            if old is None:
                return
            self._write_sudo(path, self.read_file(path), old.mode, old, mtime=mtime)

    @_changes_host
    def chown_like(self, path: str, reference: str) -> None:
        """Copy uid/gid of ``reference`` onto ``path`` where permitted (through sudo with
        ``--sudo``; silently not otherwise)."""
        ref = self.stat(reference)
        if ref is None or ref.uid is None:
            return
        gid = ref.gid if ref.gid is not None else -1
        try:
            with self._sftp_errors(path, "chown", denied=True):
                self.sftp.chown(self.sftp_path(path), ref.uid, gid)
        except PermissionError:
            if self.escalation == "sudo":
                owner = f"{ref.uid}:{ref.gid}" if ref.gid is not None else str(ref.uid)
                self._privileged(["chown", owner, "--", path], f"chown of {path}")

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


def _file_stat(attrs: Any) -> FileStat:
    """A :class:`FileStat` of paramiko's ``SFTPAttributes`` (of ``stat`` or of an open
    handle's ``fstat``: both follow symbolic links)."""
    mode = attrs.st_mode or 0
    return FileStat(
        size=int(attrs.st_size or 0),
        mode=stat_mod.S_IMODE(mode),
        mtime=float(attrs.st_mtime or 0),
        uid=attrs.st_uid,
        gid=attrs.st_gid,
        is_dir=stat_mod.S_ISDIR(mode),
    )


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
@attrs.frozen
class SSHOptions:
    """``tls add`` flags of the ssh connection type (stored in ``ConnectionSpec.extra``)."""

    sudo: bool = option(help="Run the commands that need privilege through sudo (sudo -n: a rule that wants a "
                        "password fails at once unless --sudo_password is given).", default=False)
    sudo_password: Secret | None = option(help="The account's sudo password, given to sudo -S on standard "
                                          "input only when sudo asks; stored encrypted.", secret=True, max_len=1024)
    ssh_jump: str | None = option(help="Bastions to connect through, as OpenSSH -J: [user@]host[:port], the flag "
                                  "once per hop or several hops separated by commas (first hop first); each "
                                  "host key must be trusted.",
                                  max_len=2048, metavar="<user@host:port>", repeat=",")
    ssh_jump_store_cred_id: str | None = option(
        help="Credential store IDs (in --store) of the bastions, comma-separated in hop order; an empty "
             "entry uses the endpoint's credentials.", max_len=4096)


SSH = ConnectionType(
    "ssh",
    "OpenSSH (or any SSH-2 server) on a POSIX host: commands over exec, files over SFTP.",
    default_port=DEFAULT_PORT,
    options=SSHOptions,
    host_keys=True,
)


@impl
def tlsgate_connection_types() -> list[ConnectionType]:
    return [SSH]


def connect_ssh(endpoint: Endpoint, credentials: Credentials) -> SSHConnection:
    """Open an :class:`SSHConnection` (one per endpoint per job; close it when done)."""
    route = target_route(endpoint, credentials)
    client = open_ssh_client(endpoint, credentials)
    extra = endpoint.connection.extra or {}
    password = extra.get("sudo_password")
    conn = SSHConnection(
        client,
        host=endpoint.connection.host or "",
        port=route.port,
        user=route.user or "",
        sudo=bool(extra.get("sudo")) or password is not None,
        sudo_password=password if isinstance(password, Secret) or password is None else Secret(str(password)),
    )
    notes = [f"{route.host}:{route.port} from ~/.ssh/config"] if route.alias else []
    notes += [f"through {format_jump(route.jump)}"] if route.jump else []
    notes += ["commands needing root through sudo"] if conn.escalation else []
    conn.route_note = "; ".join(notes)
    return conn


@impl
def validate(endpoint: Endpoint) -> list[Problem]:
    """``--ssh_jump`` must parse; ``--sudo_password`` needs ``--sudo``."""
    from .ssh_route import parse_jump

    spec = endpoint.connection
    if spec.type != "ssh":
        return []
    extra = spec.extra or {}
    try:
        hops = parse_jump(extra.get("ssh_jump"))
    except ValueError as exc:
        return [Problem(str(exc), option="--ssh_jump")]
    if extra.get("sudo_password") is not None and extra.get("sudo") is False:
        return [Problem("needs --sudo true (or leave --sudo out)", option="--sudo_password")]
    ids = extra.get("ssh_jump_store_cred_id")
    if ids is not None:
        if not spec.store:
            return [Problem("needs --store (the credential store the IDs are in)", option="--ssh_jump_store_cred_id")]
        if len(ids.split(",")) > max(len(hops), 1):
            return [Problem(f"has more entries than --ssh_jump has hops ({len(hops)})", option="--ssh_jump_store_cred_id")]
    return []


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
