"""How the ssh transport reaches a host: bastions (``--ssh_jump``) and the gateway user's
``~/.ssh/config``.

* :func:`parse_jump` reads OpenSSH's ``-J`` / ``ProxyJump`` syntax: ``[user@]host[:port]``, hops
  separated by commas, an IPv6 address in brackets (``[::1]:2222``). Hostile values (spaces,
  control characters, a host starting with ``-``, a bad port) are refused with the rule.
* :func:`resolve` applies ``~/.ssh/config`` (through :class:`paramiko.SSHConfig`, the field's
  parser) for a host alias: ``HostName``, ``Port``, ``User``, ``IdentityFile`` and ``ProxyJump``,
  each only where the endpoint itself does not say otherwise (as OpenSSH: the command line wins).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import attrs

from .ssh_hostkeys import DEFAULT_PORT

_HOST_CHARS = re.compile(r"[A-Za-z0-9._%-]+\Z")  # names, IPv4, and IPv6 zone ids inside [...]
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.%A-Za-z-]+\Z")
_USER_BAD = re.compile(r"[\s\x00-\x1f\x7f,/:]")


@attrs.frozen
class Hop:
    """One bastion (or the final host) on the way: user (None: the endpoint's), host, port."""

    host: str
    port: int = DEFAULT_PORT
    user: str | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        text = f"{self.user}@{host}" if self.user else host
        return text if self.port == DEFAULT_PORT else f"{text}:{self.port}"


def parse_hop(text: str) -> Hop:
    """One ``[user@]host[:port]``; ValueError with the rule otherwise."""
    if not text:
        raise ValueError("empty hop (expected [user@]host[:port])")
    user, at, rest = text.rpartition("@")
    if at and not user:
        raise ValueError(f"{text!r}: empty user before '@'")
    if user and _USER_BAD.search(user):
        raise ValueError(f"{text!r}: the user contains a space, control character, ',', '/' or ':'")
    port_text = None
    if rest.startswith("["):
        host, close, tail = rest[1:].partition("]")
        if not close or not host or not _IPV6_CHARS.match(host) or ":" not in host:
            raise ValueError(f"{text!r}: a bracketed host must be an IPv6 address, as [::1]:22")
        if tail:
            if not tail.startswith(":"):
                raise ValueError(f"{text!r}: expected ':port' after ']'")
            port_text = tail[1:]
    else:
        host, colon, port_text_raw = rest.partition(":")
        if colon:
            port_text = port_text_raw
        if not host or not _HOST_CHARS.match(host):
            raise ValueError(f"{text!r}: the host may contain only letters, digits, '.', '-', '_' and '%'")
    if host.startswith("-"):
        raise ValueError(f"{text!r}: a host cannot start with '-'")
    port = DEFAULT_PORT
    if port_text is not None:
        if not port_text.isdigit() or not port_text.isascii() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{text!r}: the port must be an integer between 1 and 65535")
        port = int(port_text)
    return Hop(host=host, port=port, user=user or None)


def parse_jump(spec: str | None) -> tuple[Hop, ...]:
    """The hops of an OpenSSH ``-J`` value (comma-separated, first hop first); () for none."""
    if spec is None or spec.strip().lower() in ("", "none"):
        return ()
    parts = spec.split(",")
    if any(part.strip().lower() == "none" for part in parts):
        raise ValueError(f"{spec!r}: 'none' (no bastion) stands alone, not among hops")
    return tuple(parse_hop(part) for part in parts)


def format_jump(hops: tuple[Hop, ...]) -> str:
    return ",".join(str(h) for h in hops)


@attrs.frozen
class Route:
    """Where the final host really is, after ``~/.ssh/config``."""

    host: str
    port: int
    user: str | None
    identity_files: tuple[str, ...]
    jump: tuple[Hop, ...]
    alias: str | None = None  # the name the endpoint gave, when the config mapped it


def user_ssh_config() -> Path:
    return Path.home() / ".ssh" / "config"


def lookup_config(host: str) -> dict[str, object]:
    """The ``~/.ssh/config`` options for ``host`` (empty when there is no file)."""
    import paramiko

    path = user_ssh_config()
    if not path.is_file():
        return {}
    try:
        config = paramiko.SSHConfig.from_path(str(path))
        return dict(config.lookup(host))
    except (OSError, UnicodeDecodeError, paramiko.SSHException, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None


def resolve(host: str, port: int | None, user: str | None, jump: str | None) -> Route:
    """Apply ``~/.ssh/config`` to what the endpoint says. ``port`` None or 22 (the stored default)
    lets the config's ``Port`` apply; ``user`` and ``jump`` given win over the config."""
    found = lookup_config(host)
    real = str(found.get("hostname") or host)
    cfg_port = found.get("port")
    final_port = int(port or DEFAULT_PORT)
    if cfg_port and final_port == DEFAULT_PORT:
        final_port = int(str(cfg_port))
    files = tuple(os.path.expanduser(str(p)) for p in (found.get("identityfile") or ()))  # type: ignore[union-attr]
    hops = parse_jump(jump)
    if not hops and found.get("proxyjump"):
        hops = parse_jump(str(found["proxyjump"]))
    cfg_user = found.get("user")
    return Route(
        host=real, port=final_port, user=user or (str(cfg_user) if cfg_user else None),
        identity_files=files, jump=hops, alias=host if real != host else None,
    )
