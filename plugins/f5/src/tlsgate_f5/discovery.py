"""Discovery: one node per virtual server and client-ssl profile, with the certificate each
profile presents.

Node naming (what ``tls nodes`` shows): ``name`` is the virtual server's full path
(``/Common/vs_www``); ``alias`` is the client-ssl profile's full path, then the profile's SNI
``serverName`` when it has one; ``ip``/``port`` come from the destination (``10.0.0.1%2`` keeps
BIG-IP's route-domain notation; "any port" is None); ``locator`` is
``<virtual full path>|<profile full path>`` so that an install finds the pair again; ``state`` is
``active`` / ``disabled``, with ``; not probed: <why>`` when ``tls verify`` cannot reach the
virtual address (disabled, a route domain other than 0, no specific address or port).
Certificate facts come from ``/mgmt/tm/sys/file/ssl-cert`` (fingerprint, subject, expiry), not
``/sys/crypto/cert``; the certificate itself (DER) is read by a TLS handshake to the virtual
address when the gateway can reach it and what it serves is the profile's certificate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs
from tlsgate.plugin import Node, OperationError, Target, probe_many

from .names import NONE, Destination, epoch_to_datetime, hex_fingerprint, parse_destination

if TYPE_CHECKING:
    from .rest import F5Connection

PROFILES = "/mgmt/tm/ltm/profile/client-ssl"
SERVER_PROFILES = "/mgmt/tm/ltm/profile/server-ssl"
VIRTUALS = "/mgmt/tm/ltm/virtual"
CERTS = "/mgmt/tm/sys/file/ssl-cert"
KEYS = "/mgmt/tm/sys/file/ssl-key"
PROBE_TIMEOUT = 1.5


@attrs.frozen
class Binding:
    """One (virtual server, client-ssl profile) profile pair as found on the device."""

    virtual: str
    profile: str
    destination: Destination | None
    enabled: bool
    server_name: str | None
    sni_default: bool

    @property
    def locator(self) -> str:
        return f"{self.virtual}|{self.profile}"


@attrs.define
class DeviceState:
    """What discovery and install read from the device in one pass."""

    version: str
    profiles: dict[str, dict[str, Any]]  # client-ssl fullPath -> profile
    server_profiles: dict[str, dict[str, Any]]
    certs: dict[str, dict[str, Any]]  # ssl-cert fullPath -> item
    keys: dict[str, dict[str, Any]]
    bindings: list[Binding]

    def chain_entries(self, profile: str) -> list[dict[str, Any]]:
        return list(self.profiles.get(profile, {}).get("certKeyChain") or [])

    def primary_cert(self, profile: str) -> str | None:
        entries = self.chain_entries(profile)
        if entries:
            return str(entries[0].get("cert") or "") or None
        cert = self.profiles.get(profile, {}).get("cert")
        return str(cert) if cert and cert != NONE else None

    def references(self, *, ignore: Iterable[str] = ()) -> set[str]:
        """Every cert/key/chain object a client-ssl or server-ssl profile references, except
        in the profiles named in ``ignore``."""
        skip = set(ignore)
        out: set[str] = set()
        for path, profile in [*self.profiles.items(), *self.server_profiles.items()]:
            if path in skip:
                continue
            out |= profile_references(profile)
        return out

    def virtuals_using(self, profile: str) -> list[str]:
        return sorted({b.virtual for b in self.bindings if b.profile == profile})


def profile_references(profile: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for entry in profile.get("certKeyChain") or []:
        out |= {str(entry.get(f)) for f in ("cert", "key", "chain") if entry.get(f)}
    out |= {str(profile.get(f)) for f in ("cert", "key", "chain", "caFile") if profile.get(f)}
    return out - {NONE, ""}


def _optional_items(conn: F5Connection, path: str) -> list[dict[str, Any]]:
    """A collection only the references come from (server-ssl profiles): a device or account
    without it answers 404, which means "none" (BIG-IP itself refuses to delete an object a
    profile still references, so install's clean-up stays safe)."""
    from .rest import F5Error

    try:
        return conn.items(path)
    except F5Error as exc:
        if exc.status == 404:
            return []
        raise


def read_state(conn: F5Connection) -> DeviceState:
    profiles = {p["fullPath"]: p for p in conn.items(PROFILES)}
    server_profiles = {p["fullPath"]: p for p in _optional_items(conn, SERVER_PROFILES)}
    certs = {c["fullPath"]: c for c in conn.items(CERTS)}
    keys = {k["fullPath"]: k for k in conn.items(KEYS)}
    bindings: list[Binding] = []
    for vs in conn.items(VIRTUALS, params={"expandSubcollections": "true"}):
        items = (vs.get("profilesReference") or {}).get("items")
        if items is None:  # an older device or a proxy that does not expand subcollections
            items = conn.items(f"{conn.object_path(VIRTUALS, vs['fullPath'])}/profiles")
        try:
            dest = parse_destination(str(vs.get("destination") or ""))
        except ValueError:
            dest = None
        enabled = not (vs.get("disabled") is True or vs.get("enabled") is False)
        for item in items:
            path = item.get("fullPath") or f"/{item.get('partition', 'Common')}/{item.get('name')}"
            if path not in profiles:  # not a client-ssl profile (http, tcp, server-ssl, ...)
                continue
            profile = profiles[path]
            server_name = profile.get("serverName")
            bindings.append(Binding(
                virtual=vs["fullPath"], profile=path, destination=dest, enabled=enabled,
                server_name=None if server_name in (None, NONE, "") else str(server_name),
                sni_default=str(profile.get("sniDefault", "false")).lower() == "true",
            ))
    bindings.sort(key=lambda b: (b.virtual, b.profile))
    return DeviceState(conn.version, profiles, server_profiles, certs, keys, bindings)


def to_node(state: DeviceState, binding: Binding, served: bytes | None = None) -> Node:
    cert_path = state.primary_cert(binding.profile)
    item = state.certs.get(cert_path or "", {})
    fp = hex_fingerprint(item.get("fingerprint"))
    alias = (binding.profile, *((binding.server_name,) if binding.server_name else ()))
    dest = binding.destination
    return Node(
        name=binding.virtual,
        alias=alias,
        protocol="https",
        ip=dest.ip if dest else None,
        port=dest.port if dest else None,
        fingerprint=fp,
        subject=str(item["subject"]) if item.get("subject") else None,
        not_after=epoch_to_datetime(item.get("expirationDate")),
        vendor=f"F5 BIG-IP {state.version}",
        state=("active" if binding.enabled else "disabled") + _not_probed(binding),
        locator=binding.locator,
        certificate=served if served is not None and fp == hashlib.sha256(served).hexdigest() else None,
    )


def _not_probed(binding: Binding) -> str:
    """Why ``tls verify`` does not try a handshake to a binding ("" when it does)."""
    dest = binding.destination
    if not binding.enabled:
        return "; not probed: a disabled virtual server accepts no connections"
    if dest is not None and dest.route_domain not in (None, 0):
        return f"; not probed: route domain {dest.route_domain} is not reachable from the gateway"
    if dest is None or not dest.probeable:
        return "; not probed: no specific address and port"
    return ""


def probe_target(binding: Binding) -> Target | None:
    """The handshake that reaches a binding's virtual address with the profile's SNI (None when
    the gateway cannot reach the address)."""
    dest = binding.destination
    if dest is None or not dest.probeable or dest.port is None:
        return None
    return Target(dest.address, dest.port, binding.server_name)


def served_der(binding: Binding) -> bytes | None:
    """What the virtual address serves for the profile's SNI, when the gateway can reach it."""
    target = probe_target(binding)
    return None if target is None else probe_many([target], timeout=PROBE_TIMEOUT)[target]


def discover(conn: F5Connection, *, probe: bool = True) -> list[Node]:
    """Every node of the device. Checks the Administrator role first (once per session), so
    that ``tls test``, which discovers, reports a missing role clearly."""
    if not conn.role_checked:
        conn.check_role(strict=False)
    try:
        state = read_state(conn)
    except KeyError as exc:
        raise OperationError(f"{conn.where}: unexpected iControl REST answer (no {exc})") from None
    targets = [probe_target(b) if probe else None for b in state.bindings]
    got = probe_many([t for t in targets if t is not None], timeout=PROBE_TIMEOUT, threads=8)
    served = [got[t] if t is not None else None for t in targets]
    return [to_node(state, b, s) for b, s in zip(state.bindings, served, strict=True)]
