"""SSH host keys for the ssh transports: OpenSSH fingerprints, the two known_hosts files, and
the functions behind ``tlsgate tls trust <endpoint>``.

Trust lives in ``$TLSGATE_HOME/known_hosts`` (written by :func:`trust_host_key`, mode 0600) and the
gateway user's ``~/.ssh/known_hosts`` (read only). For a given host and port, tlsgate's file wins
when it has any entry, so trusting a new key overrides a stale entry in the user's file. Entries
for a port other than 22 are written ``[host]:port``; hashed entries (``|1|...``) are understood.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import paths
from ..errors import ConnectionFailed, HostKeyError

if TYPE_CHECKING:
    import paramiko

DEFAULT_PORT = 22
DEFAULT_TIMEOUT = 15.0


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint (base64 of the SHA-256 of the key blob, unpadded)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    """The host field OpenSSH writes: ``host`` for port 22, ``[host]:port`` otherwise."""
    return host if port == DEFAULT_PORT else f"[{host}]:{port}"


def user_known_hosts() -> Path:
    """The gateway user's own ``~/.ssh/known_hosts`` (read, never written, by tlsgate)."""
    return Path.home() / ".ssh" / "known_hosts"


#: The last parse of each known_hosts file, with the exact text it was parsed from: the file is
#: read on every connection and parsed again only when its text differs (a fleet job connects
#: once per endpoint, and paramiko builds every line's key object on each parse).
_PARSED: dict[str, tuple[str, paramiko.HostKeys]] = {}


def _load_host_keys(path: Path) -> paramiko.HostKeys:
    """The file's host keys (none when it does not exist). Callers only look keys up in it."""
    import paramiko

    try:
        text = path.read_text()
    except FileNotFoundError:
        return paramiko.HostKeys()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConnectionFailed(f"cannot read known hosts file {path}: {exc}") from None
    cached = _PARSED.get(str(path))
    if cached is not None and cached[0] == text:
        return cached[1]
    keys = paramiko.HostKeys()
    try:
        keys.load(str(path))
        unchanged = path.read_text() == text  # (kept only when what load() read is that text)
    except FileNotFoundError:
        return paramiko.HostKeys()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConnectionFailed(f"cannot read known hosts file {path}: {exc}") from None
    if unchanged:
        _PARSED[str(path)] = (text, keys)
    return keys


def known_host_keys(host: str, port: int) -> dict[str, paramiko.PKey]:
    """Trusted keys for host:port by key type. tlsgate's own file wins: when it has any entry
    for the host, the user's file is not consulted (so ``tls trust`` overrides a stale entry)."""
    name = known_hosts_name(host, port)
    for path in (paths.known_hosts(), user_known_hosts()):
        found = _load_host_keys(path).lookup(name)
        if found:
            return {keytype: found[keytype] for keytype in found}
    return {}


def _trust_hint(endpoint_name: str | None, host: str, port: int, *, bastion: bool = False) -> str:
    target = endpoint_name or known_hosts_name(host, port)
    hint = f"if this is the right host, run `tlsgate tls trust {target}`"
    return hint + " (it asks for each bastion in turn)" if bastion else hint


def _host_key_policy(endpoint_name: str | None, host: str, port: int, *, label: str = "") -> Any:
    """Refuse an unknown host key (``label`` names a bastion: "bastion 1 ")."""
    import paramiko

    class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
            raise HostKeyError(
                f"{label}{host}:{port}: unknown SSH host key ({key.get_name()} {fingerprint(key)}); "
                + _trust_hint(endpoint_name, host, port, bastion=bool(label)),
                fingerprint=fingerprint(key),
                host=host,
            )

    return _RefuseUnknown()


def fetch_host_key(host: str, port: int = DEFAULT_PORT, timeout: float = DEFAULT_TIMEOUT,
                   sock: Any = None) -> tuple[str, str, Any]:
    """Ask the server for its host key without authenticating.

    Returns ``(key_type, fingerprint, key)``; pass ``key`` to :func:`trust_host_key` after the
    operator has confirmed the fingerprint. The key type is the one a later connection
    negotiates (the first known type is preferred, as in :func:`open_ssh_client`). ``sock``:
    an open socket or tunnel channel to use (through a bastion) instead of connecting.
    """
    import paramiko

    from .ssh import _open_socket, _plain

    if sock is None:
        sock = _open_socket(host, port, timeout)
    transport = paramiko.Transport(sock)
    try:
        known = known_host_keys(host, port)
        if known:
            _prefer_key_types(transport, list(known))
        transport.banner_timeout = timeout
        try:
            transport.start_client(timeout=timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectionFailed(f"{host}:{port}: SSH handshake failed: {_plain(exc)}", host=host) from None
        key = transport.get_remote_server_key()
        return key.get_name(), fingerprint(key), key
    finally:
        transport.close()
        sock.close()


def _matches(name: str, field: str) -> bool:
    import paramiko

    if field.startswith("|1|"):
        return bool(paramiko.HostKeys.hash_host(name, field) == field)
    return field == name


def trust_host_key(host: str, port: int, key: Any) -> Path:
    """Record ``key`` (a paramiko key, or a known_hosts-style ``"type base64"`` string) as the
    host key of host:port in ``$TLSGATE_HOME/known_hosts`` (mode 0600), replacing every older key
    for that host and port. Returns the file's path."""
    if isinstance(key, str):
        parts = key.split()
        if len(parts) < 2:
            raise ValueError("expected 'key-type base64' for a host key")
        keytype, blob = parts[0], parts[1]
    else:
        keytype, blob = key.get_name(), key.get_base64()
    name = known_hosts_name(host, port)
    path = paths.known_hosts()
    with open(path.with_name(".known_hosts.lock"), "a") as lock:
        _lock(lock)  # two `tls trust` at once must not lose an entry
        _replace_entries(path, name, f"{name} {keytype} {blob}")
    return path


def _lock(fh: Any) -> None:
    try:
        import fcntl
    except ImportError:  # Windows gateway: no advisory locks; the rename is still atomic
        return
    fcntl.flock(fh, fcntl.LOCK_EX)


def _replace_entries(path: Path, name: str, new_line: str) -> None:
    kept: list[str] = []
    if path.exists():
        for line in path.read_text().splitlines():
            fields = line.split()
            if not fields or line.lstrip().startswith("#"):
                kept.append(line)
                continue
            marker = fields[0] if fields[0].startswith("@") else None
            host_field = fields[1] if marker and len(fields) > 1 else fields[0]
            hostnames = host_field.split(",")
            remaining = [h for h in hostnames if not _matches(name, h)]
            if len(remaining) == len(hostnames):
                kept.append(line)
            elif remaining:
                rest = line.split(None, 2 if marker else 1)
                if marker:
                    kept.append(" ".join([marker, ",".join(remaining), rest[2]]))
                else:
                    kept.append(" ".join([",".join(remaining), rest[1]]))
    kept.append(new_line)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(kept) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.chmod(path, 0o600)


def _prefer_key_types(transport: Any, keytypes: list[str]) -> None:
    options = transport.get_security_options()
    offered = list(options.key_types)
    first = [k for k in offered if k in keytypes]
    if "ssh-rsa" in keytypes:  # an RSA host key is negotiated as rsa-sha2-*
        first = [k for k in offered if k.startswith("rsa-sha2") or k == "ssh-rsa"] + first
    options.key_types = list(dict.fromkeys(first + offered))
