"""Pure helpers for iControl REST names and values: object URLs, virtual-server destinations,
fingerprints, and the unique names new certificate objects get. No I/O, no requests."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from urllib.parse import quote

import attrs

#: certKeyChain / profile fields use this word for "no object".
NONE = "none"



@attrs.frozen
class Destination:
    """A virtual server's ``destination``: address, route domain (None when absent) and port
    (None for "any port")."""

    address: str
    port: int | None
    route_domain: int | None = None
    partition: str | None = None

    @property
    def ip(self) -> str:
        """The address as BIG-IP writes it: ``10.0.0.1%2`` with a route domain."""
        return self.address if self.route_domain is None else f"{self.address}%{self.route_domain}"

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.address)
            return True
        except ValueError:
            return False

    @property
    def probeable(self) -> bool:
        """Whether the gateway can try a TLS handshake to it: a specific IP in the default
        route domain and a specific port."""
        if not self.is_ip or self.port in (None, 0) or self.route_domain not in (None, 0):
            return False
        return not ipaddress.ip_address(self.address).is_unspecified


def parse_destination(value: str) -> Destination:
    """Parse ``/Common/10.0.0.1:443``, ``/Common/10.0.0.1%2:443``, ``/Common/2001:db8::1.443``,
    ``/Common/2001:db8::1%2.443``, ``any`` ports and named virtual addresses (``/Common/web:443``).

    IPv4 separates the port with ``:``, IPv6 with ``.``; raises ValueError for anything else.
    """
    text = value.strip()
    partition = None
    m = re.match(r"^/([^/]+)/(.*)$", text)
    if m:
        partition, text = m.group(1), m.group(2)
        # an iApp folder: /Common/app.app/10.0.0.1:443
        if "/" in text:
            text = text.rsplit("/", 1)[1]
    if text.count(":") > 1:  # IPv6: the port follows the last "."
        addr_rd, sep, port = text.rpartition(".")
    elif ":" in text:  # IPv4 or a named virtual address: the port follows ":"
        addr_rd, sep, port = text.rpartition(":")
    else:  # the IPv6 wildcard "any6.any", or a named address in IPv6 form
        addr_rd, sep, port = text.rpartition(".")
        if re.fullmatch(r"[\d.%]+", addr_rd):  # "1.1.1.1" has no port
            sep = ""
    addr, _, rd = addr_rd.partition("%")
    if not sep or not addr or not (port.isdigit() or port == "any") or (rd and not rd.isdigit()):
        raise ValueError(f"not a virtual server destination: {value!r}")
    port_num = None if port == "any" else int(port)
    if port_num is not None and port_num > 65535:
        raise ValueError(f"port out of range in destination {value!r}")
    return Destination(
        address=addr, port=port_num or None, route_domain=int(rd) if rd else None, partition=partition
    )


def uri_name(full_path: str) -> str:
    """The URL segment of an object: ``/Common/x.crt`` -> ``~Common~x.crt`` (f5-ansible's
    ``transform_name``: ``/`` -> ``~``, ``%`` -> ``%25``, other unsafe characters quoted)."""
    return quote(full_path.replace("/", "~"), safe="~.-_:")


def split_path(full_path: str) -> tuple[str, str]:
    """``/Common/x.crt`` -> (``Common``, ``x.crt``); a bare name is in Common."""
    if full_path.startswith("/"):
        partition, _, name = full_path[1:].partition("/")
        return partition, name
    return "Common", full_path


def hex_fingerprint(f5_fingerprint: str | None) -> str | None:
    """``SHA256/3A:F7:...`` -> ``3af7...`` (tlsgate's lower-case SHA-256 hex), else None."""
    if not f5_fingerprint:
        return None
    algo, _, digest = f5_fingerprint.partition("/")
    if algo.upper() != "SHA256" or not digest:
        return None
    return digest.replace(":", "").lower()


def f5_fingerprint(hex_digest: str) -> str:
    """tlsgate's hex SHA-256 -> BIG-IP's ``SHA256/3A:F7:...``."""
    up = hex_digest.upper()
    return "SHA256/" + ":".join(up[i : i + 2] for i in range(0, len(up), 2))


def epoch_to_datetime(value: object) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(int(value), dt.UTC)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def object_stem(common_name: str | None, not_after: dt.datetime, serial: int) -> str:
    """The base name of new objects: ``<cn>_<notAfter YYYYMMDD>_<serial, last 8 hex>``, made of
    characters BIG-IP accepts in object names (letters, digits, ``.``, ``_``, ``-``)."""
    base = (common_name or "tlsgate").replace("*", "wildcard")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", base).strip("._-") or "tlsgate"
    if not safe[0].isalpha():
        safe = "c" + safe  # tmsh object names must start with a letter
    serial8 = f"{serial:08x}"[-8:]
    return f"{safe[:120]}_{not_after:%Y%m%d}_{serial8}"


def unique_stem(stem: str, taken: set[str]) -> str:
    """``stem`` or ``stem_2``, ``stem_3``... so that none of ``stem.crt``, ``stem.key`` or
    ``stem_chain.crt`` is in ``taken`` (object names in the target partition)."""
    candidate, n = stem, 1
    while {f"{candidate}.crt", f"{candidate}.key", f"{candidate}_chain.crt"} & taken:
        n += 1
        candidate = f"{stem}_{n}"
    return candidate
