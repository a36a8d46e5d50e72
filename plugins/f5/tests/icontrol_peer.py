"""A loopback iControl REST peer: a stateful stand-in for a BIG-IP's management API, built from
F5's published API (``shared/reference/protocols.md`` section 1.10) so that the F5 driver talks to
it with real ``requests`` over real HTTPS.

State: users (role, shell), tokens (timeout, expiry, the 100-per-user limit), uploads
(Content-Range arithmetic), files in ``/var/config/rest/downloads``, partitions, ssl-cert and
ssl-key objects parsed from real PEM (fingerprint ``SHA256/...``, ``expirationDate``, subject,
``isBundle``), client-ssl and server-ssl profiles (the key/cert mismatch refusal), virtual
servers with their profiles subcollection, transactions (all-or-nothing commit), ``save sys
config`` counts, F5's error bodies, ``?ver=`` in every selfLink, and fault injection.

Optionally (:meth:`IControlPeer.serve_virtuals`) each virtual server on a 127.0.0.x address gets a
TLS listener that presents, per SNI, the certificate its client-ssl profile points at right now.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import json
import secrets
import socket
import ssl
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from icontrol_dataplane import DataPlane

DOWNLOADS = "/var/config/rest/downloads"
NONE = "none"


class F5HttpError(Exception):
    def __init__(self, status: int, message: str, *, framework: bool = False, api_error: int = 3,
                 html: bool = False) -> None:
        self.html = html
        self.status = status
        self.message = message
        self.framework = framework
        self.api_error = api_error
        super().__init__(message)

    def body(self, path: str) -> dict[str, Any]:
        if self.framework:  # restjavad
            return {"code": self.status, "message": self.message, "referer": "127.0.0.1",
                    "restOperationId": secrets.randbelow(10**7), "kind": ":resterrorresponse"}
        return {"code": self.status, "message": self.message, "errorStack": [], "apiError": self.api_error}


@attrs.frozen
class CertObject:
    pem: bytes
    certs: tuple[x509.Certificate, ...]
    source: str
    created: float


@attrs.frozen
class KeyObject:
    pem: bytes
    key: Any
    source: str
    created: float


@attrs.define
class User:
    password: str
    role: str = "admin"
    shell: str = "tmsh"
    remote: bool = False  # authenticated by LDAP/RADIUS: no /mgmt/tm/auth/user object


@attrs.define
class Token:
    user: str
    timeout: int
    expires: float
    updated: float


@attrs.define
class Fault:
    method: str
    pattern: str
    status: int
    message: str
    times: int = 1
    html: bool = False  # answer an HTML page, as the Configuration Utility does while restarting


def _parse_certs(pem: bytes) -> tuple[x509.Certificate, ...]:
    return tuple(x509.load_pem_x509_certificates(pem))


def _parse_key(pem: bytes) -> Any:
    return serialization.load_pem_private_key(pem, None)


def _spki(obj: Any) -> bytes:
    return obj.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _f5_name(name: x509.Name) -> str:
    return name.rfc4514_string({x509.NameOID.EMAIL_ADDRESS: "emailAddress"})


def _split(full: str) -> tuple[str, str]:
    if full.startswith("/"):
        part, _, name = full[1:].partition("/")
        return part, name
    return "Common", full


class Device:
    """The state of one fake BIG-IP. Every method runs under ``lock``."""

    def __init__(self, version: str = "15.1.10") -> None:
        self.version = version
        self.lock = threading.RLock()
        self.users: dict[str, User] = {"admin": User("admin-Pa55 'quoted' $word")}
        self.tokens: dict[str, Token] = {}
        self.token_timeout = 1200
        self.max_tokens = 100
        self.tokens_issued = 0
        self.tokens_deleted = 0
        self.uploads: dict[str, bytearray] = {}
        self.files: dict[str, bytes] = {}
        self.partitions: set[str] = {"Common"}
        self.certs: dict[str, CertObject] = {}
        self.keys: dict[str, KeyObject] = {}
        self.profiles: dict[str, dict[str, Any]] = {}
        self.server_profiles: dict[str, dict[str, Any]] = {}
        self.other_profiles: dict[str, str] = {}  # fullPath -> kind (http, tcp, ...)
        self.virtuals: dict[str, dict[str, Any]] = {}
        self.transactions: dict[int, list[tuple[str, str, Any]]] = {}
        self.saves = 0
        self.ignore_paging = False  # answer every item whatever $top says
        self.corrupt_uploads: dict[str, bytes] = {}  # name regex -> what lands on disk instead
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, Any]] = []

    # -- building a device (tests) --------------------------------------------------------------
    def add_cert(self, full: str, pem: bytes) -> None:
        self.certs[full] = CertObject(pem, _parse_certs(pem), f"file://{DOWNLOADS}/{_split(full)[1]}", time.time())

    def add_key(self, full: str, pem: bytes) -> None:
        self.keys[full] = KeyObject(pem, _parse_key(pem), f"file://{DOWNLOADS}/{_split(full)[1]}", time.time())

    def add_profile(self, full: str, cert: str, key: str, chain: str = NONE, *, server_name: str | None = None,
                    sni_default: bool = False, entries: list[dict[str, Any]] | None = None) -> None:
        self.profiles[full] = {
            "defaultsFrom": "/Common/clientssl" if full != "/Common/clientssl" else NONE,
            "certKeyChain": entries or [{"name": "default", "cert": cert, "key": key, "chain": chain}],
            "serverName": server_name or NONE, "sniDefault": "true" if sni_default else "false",
            "inheritCertkeychain": "false",
        }

    def add_virtual(self, full: str, destination: str, profiles: list[tuple[str, str]], *, enabled: bool = True) -> None:
        self.virtuals[full] = {"destination": destination, "profiles": profiles, "enabled": enabled}

    def fail(self, method: str, pattern: str, status: int = 500,
             message: str = "The connection to mcpd has been lost, try again.", times: int = 1,
             html: bool = False) -> Fault:
        """Inject a failure: the next ``times`` requests whose method and path match answer
        ``status`` with an F5 error body (or an HTML page), before they change anything. Returns
        the fault (``fault.times == 0`` once it has answered every time)."""
        fault = Fault(method.upper(), pattern, status, message, times, html)
        self.faults.append(fault)
        return fault

    def live_tokens(self, user: str | None = None) -> int:
        now = time.time()
        return sum(1 for t in self.tokens.values() if t.expires > now and (user is None or t.user == user))

    def expire_tokens(self) -> None:
        for token in self.tokens.values():
            token.expires = time.time() - 1

    def snapshot(self) -> dict[str, Any]:
        """Everything a test compares to prove an install left the device as before."""
        return {
            "certs": {k: hashlib.sha256(v.pem).hexdigest() for k, v in self.certs.items()},
            "keys": sorted(self.keys),
            "profiles": copy.deepcopy(self.profiles),
            "files": sorted(self.files),
            "uploads": sorted(self.uploads),
        }

    # -- rendering ------------------------------------------------------------------------------
    def link(self, path: str) -> str:
        return f"https://localhost{path}?ver={self.version}"

    def cert_item(self, full: str) -> dict[str, Any]:
        obj = self.certs[full]
        part, name = _split(full)
        leaf = obj.certs[0]
        der = leaf.public_bytes(serialization.Encoding.DER)
        digest = hashlib.sha256(der).hexdigest().upper()
        pub = leaf.public_key()
        key_type = "rsa-public" if isinstance(pub, rsa.RSAPublicKey) else "ec-public" if isinstance(pub, ec.EllipticCurvePublicKey) else "unknown"
        after = leaf.not_valid_after_utc
        item: dict[str, Any] = {
            "kind": "tm:sys:file:ssl-cert:ssl-certstate", "name": name, "partition": part, "fullPath": full,
            "generation": 1, "selfLink": self.link(f"/mgmt/tm/sys/file/ssl-cert/{full.replace('/', '~')}"),
            "certificateKeyCurveName": pub.curve.name if isinstance(pub, ec.EllipticCurvePublicKey) else "none",
            "certificateKeySize": pub.key_size,
            "checksum": f"SHA1:{len(obj.pem)}:{hashlib.sha1(obj.pem).hexdigest()}",
            "createTime": dt.datetime.fromtimestamp(obj.created, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "createdBy": "admin", "expirationDate": int(after.timestamp()),
            "expirationString": after.strftime("%b %e %H:%M:%S %Y GMT"),
            "fingerprint": "SHA256/" + ":".join(digest[i:i + 2] for i in range(0, len(digest), 2)),
            "isBundle": "true" if len(obj.certs) > 1 else "false",
            "issuer": _f5_name(leaf.issuer), "subject": _f5_name(leaf.subject),
            "keyType": key_type, "mode": 33188, "revision": 1, "serialNumber": str(leaf.serial_number),
            "size": len(obj.pem), "sourcePath": obj.source,
            "systemPath": f"/config/filestore/files_d/{part}_d/certificate_d/:{part}:{name}_1", "version": 3,
        }
        try:
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            item["subjectAlternativeName"] = ", ".join(
                [f"DNS:{n}" for n in san.get_values_for_type(x509.DNSName)]
                + [f"IP Address:{n}" for n in san.get_values_for_type(x509.IPAddress)]
            )
        except x509.ExtensionNotFound:
            pass
        return item

    def key_item(self, full: str) -> dict[str, Any]:
        obj = self.keys[full]
        part, name = _split(full)
        key = obj.key
        return {
            "kind": "tm:sys:file:ssl-key:ssl-keystate", "name": name, "partition": part, "fullPath": full,
            "generation": 1, "selfLink": self.link(f"/mgmt/tm/sys/file/ssl-key/{full.replace('/', '~')}"),
            "checksum": f"SHA1:{len(obj.pem)}:{hashlib.sha1(obj.pem).hexdigest()}",
            "curveName": key.curve.name if isinstance(key, ec.EllipticCurvePrivateKey) else "none",
            "keySize": key.key_size,
            "keyType": "rsa-private" if isinstance(key, rsa.RSAPrivateKey) else "ec-private",
            "securityType": "normal", "size": len(obj.pem), "sourcePath": obj.source,
        }

    def profile_item(self, full: str, kind: str = "client-ssl") -> dict[str, Any]:
        prof = self.profiles[full] if kind == "client-ssl" else self.server_profiles[full]
        part, name = _split(full)
        entries = []
        for e in prof.get("certKeyChain", []):
            entry = dict(e)
            for field, coll in (("cert", "ssl-cert"), ("key", "ssl-key"), ("chain", "ssl-cert")):
                if entry.get(field, NONE) != NONE:
                    entry[f"{field}Reference"] = {"link": self.link(f"/mgmt/tm/sys/file/{coll}/{entry[field].replace('/', '~')}")}
            entry.setdefault("appService", "none")
            entries.append(entry)
        first = prof.get("certKeyChain", [{}])[0] if prof.get("certKeyChain") else {}
        return {
            "kind": f"tm:ltm:profile:{kind}:{kind}state", "name": name, "partition": part, "fullPath": full,
            "generation": 1, "selfLink": self.link(f"/mgmt/tm/ltm/profile/{kind}/{full.replace('/', '~')}"),
            **{k: v for k, v in prof.items() if k != "certKeyChain"},
            "cert": first.get("cert", NONE), "key": first.get("key", NONE), "chain": first.get("chain", NONE),
            "certKeyChain": entries,
        }

    def profile_kind(self, full: str) -> str:
        if full in self.profiles:
            return "client-ssl"
        if full in self.server_profiles:
            return "server-ssl"
        return self.other_profiles.get(full, "http")

    def virtual_item(self, full: str, expand: bool) -> dict[str, Any]:
        vs = self.virtuals[full]
        part, name = _split(full)
        uri = full.replace("/", "~")
        ref: dict[str, Any] = {"link": self.link(f"/mgmt/tm/ltm/virtual/{uri}/profiles"), "isSubcollection": True}
        if expand:
            ref["items"] = self.virtual_profiles(full)
        return {
            "kind": "tm:ltm:virtual:virtualstate", "name": name, "partition": part, "fullPath": full,
            "generation": 1, "selfLink": self.link(f"/mgmt/tm/ltm/virtual/{uri}"),
            "destination": vs["destination"], "mask": "255.255.255.255", "source": "0.0.0.0/0",
            "ipProtocol": "tcp", "translateAddress": "enabled", "translatePort": "enabled",
            **({"enabled": True} if vs["enabled"] else {"disabled": True}),
            "profilesReference": ref,
        }

    def virtual_profiles(self, full: str) -> list[dict[str, Any]]:
        out = []
        for path, context in self.virtuals[full]["profiles"]:
            part, name = _split(path)
            kind = self.profile_kind(path)
            out.append({
                "kind": "tm:ltm:virtual:profiles:profilesstate", "name": name, "partition": part,
                "fullPath": path, "generation": 1, "context": context,
                "selfLink": self.link(f"/mgmt/tm/ltm/virtual/{full.replace('/', '~')}/profiles/{path.replace('/', '~')}"),
                "nameReference": {"link": self.link(f"/mgmt/tm/ltm/profile/{kind}/{path.replace('/', '~')}")},
            })
        return out

    def collection(self, kind: str, path: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"kind": kind, "selfLink": self.link(path), "items": items}

    # -- checks ---------------------------------------------------------------------------------
    def references(self, full: str) -> list[str]:
        users = []
        for pfull, prof in [*self.profiles.items(), *self.server_profiles.items()]:
            for e in prof.get("certKeyChain", []):
                if full in (e.get("cert"), e.get("key"), e.get("chain")):
                    users.append(pfull)
        return users

    def check_profile_entries(self, full: str, entries: list[dict[str, Any]]) -> None:
        own = _split(full)[0]
        for e in entries:
            cert, key, chain = e.get("cert", NONE), e.get("key", NONE), e.get("chain", NONE)
            for ref in (cert, key, chain):
                if ref != NONE and _split(ref)[0] not in (own, "Common"):
                    raise F5HttpError(400, f"01070726:3: Profile {full} in partition {own} cannot reference "
                                           f"{ref} in partition {_split(ref)[0]}")
            if cert not in self.certs:
                raise F5HttpError(400, f"01020036:3: The requested Certificate File ({cert}) was not found.")
            if key not in self.keys:
                raise F5HttpError(400, f"01020036:3: The requested Certificate Key File ({key}) was not found.")
            if chain != NONE and chain not in self.certs:
                raise F5HttpError(400, f"01020036:3: The requested Certificate File ({chain}) was not found.")
            if _spki(self.certs[cert].certs[0].public_key()) != _spki(self.keys[key].key.public_key()):
                raise F5HttpError(
                    400, f"01070313:3: Key and certificate do not match for profile {full}: key {key} does "
                    f"not belong to certificate {cert} (X509_check_private_key:key values mismatch)")


class IControlPeer(DataPlane):
    """The HTTP(S) server around a :class:`Device`. ``tls``: an SSLContext (HTTPS) or None (plain
    HTTP). Start with :meth:`start`; ``port`` is chosen free by the OS."""

    def __init__(self, device: Device, tls: ssl.SSLContext | None, host: str = "127.0.0.1") -> None:
        self.device = device
        self.tls = tls
        self.host = host
        self.server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._listeners: list[socket.socket] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="icontrol-peer-")
        self.freeze_listeners = False
        self._frozen: dict[str, tuple[str, str, str]] = {}

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self) -> IControlPeer:
        peer = self

        class Handler(_Handler):
            pass

        Handler.peer = peer
        server = ThreadingHTTPServer((self.host, 0), Handler)
        server.daemon_threads = True
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self.server = server
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        for sock in self._listeners:
            try:
                sock.close()
            except OSError:
                pass
        self._listeners.clear()
        self._tmp.cleanup()


class _Handler(BaseHTTPRequestHandler):
    peer: IControlPeer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        from icontrol_api import handle  # the routes live next to this module

        try:
            status, body = handle(self.peer.device, method, path, query, self.headers, raw)
        except F5HttpError as exc:
            status, body = exc.status, exc.body(path)
            if exc.html:
                page = f"<html><head><title>BIG-IP</title></head><body>{exc.message}</body></html>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def basic_user(headers: Any) -> tuple[str, str] | None:
    auth = headers.get("Authorization") or ""
    if not auth.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
    except ValueError:
        return None
    return user, password
