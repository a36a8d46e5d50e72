"""A loopback ACME Renewal Information (ARI, RFC 9773) front for a real Pebble.

Debian's Pebble (2.4) has no ``renewalInfo`` resource (Pebble added it later), so this shim fronts
Pebble's directory and adds one; everything else (accounts, orders, challenges, certificates) is
Pebble's own, at the URLs Pebble's directory names. What the shim models, each traced to the RFC:

- §3: the directory object gains a ``renewalInfo`` field, the URL of the RenewalInfo resource.
- §4.1: a client GETs ``<renewalInfo>/<certID>`` (unauthenticated GET, not POST-as-GET), where
  certID is base64url(keyIdentifier of the certificate's Authority Key Identifier) "." base64url
  (DER content octets of its serial number), both without padding. A certID that is not two such
  parts is malformed (400); one naming no certificate this CA issued is 404.
- §4.2: the answer is a RenewalInfo object, ``{"suggestedWindow": {"start", "end"}}`` (RFC 3339
  timestamps, end after start), served as application/json.
- §4.3: the answer carries a Retry-After header: when the client should ask again.

The shim asks Pebble's management port whether it issued the serial (``/cert-status-by-serial/``,
Pebble 2.4) and checks the AKI against that certificate, so the client's certID is really checked.
The window a test wants is set with :meth:`AriShim.set_window` (the same for every certificate).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from .certs import TestCA
from .fixtures_core import free_port
from .pebble import PebbleServer

RENEWAL_INFO_PATH = "/renewalInfo"


def _b64url_decode(part: str) -> bytes:
    """base64url without padding (RFC 9773 §4.1 strips the trailing '='); raises ValueError."""
    if not part or "=" in part or any(c not in _B64URL for c in part):
        raise ValueError("not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def cert_id(cert: x509.Certificate) -> str:
    """RFC 9773 §4.1's certID of a certificate, computed here independently of the client."""
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki is not None
    return encode_cert_id(aki, cert.serial_number)


def encode_cert_id(key_identifier: bytes, serial: int) -> str:
    """§4.1: base64url(keyIdentifier) "." base64url(the serial's DER INTEGER content octets),
    both unpadded."""
    der = serial.to_bytes((serial.bit_length() + 8) // 8, "big", signed=True)  # two's complement, minimal

    def enc(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).decode().rstrip("=")

    return f"{enc(key_identifier)}.{enc(der)}"


def parse_cert_id(text: str) -> tuple[bytes, int]:
    """(keyIdentifier, serial) of a certID (§4.1); ValueError for anything else."""
    parts = text.split(".")
    if len(parts) != 2:
        raise ValueError("needs two parts")
    aki, serial_der = _b64url_decode(parts[0]), _b64url_decode(parts[1])
    return aki, int.from_bytes(serial_der, "big", signed=True)


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AriShim:
    """HTTPS on 127.0.0.1 (a certificate of the session's TestCA, the root the account's
    ``--ca_bundle`` already trusts for Pebble): ``/dir`` and ``/renewalInfo/<certID>``."""

    def __init__(self, pebble: PebbleServer, ca: TestCA, root: Path, *, retry_after: int = 21600) -> None:
        self.pebble = pebble
        self.retry_after = retry_after
        self.requests: list[str] = []  # the certIDs asked for, in order
        self._window: tuple[dt.datetime, dt.datetime] | None = None
        self.port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        listener = ca.issue("127.0.0.1", "localhost", cn="ari-shim")
        (root / "ari.crt").write_bytes(listener.cert_pem + listener.chain_pem)
        (root / "ari.key").write_bytes(listener.key_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(root / "ari.crt", root / "ari.key")
        self._client_ctx = ssl.create_default_context(cafile=str(pebble.ca_bundle))
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="ari-shim", daemon=True)
        self._thread.start()

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def set_window(self, start: dt.datetime, end: dt.datetime) -> None:
        """The suggestedWindow every RenewalInfo answer carries (§4.2: end after start)."""
        assert end > start
        self._window = (start, end)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # -- Pebble ------------------------------------------------------------------------------
    def _pebble_get(self, url: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(url, context=self._client_ctx, timeout=10) as resp:
                return resp.status, bytes(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, b""

    def _issued(self, serial: int) -> x509.Certificate | None:
        status, body = self._pebble_get(
            f"https://127.0.0.1:{self.pebble.management_port}/cert-status-by-serial/{serial:x}")
        if status != 200:
            return None
        return x509.load_pem_x509_certificate(json.loads(body)["Certificate"].encode())

    # -- HTTP --------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        shim = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any], ctype: str = "application/json",
                      headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _problem(self, status: int, kind: str, detail: str) -> None:
                self._send(status, {"type": f"urn:ietf:params:acme:error:{kind}", "detail": detail},
                           "application/problem+json")

            def do_GET(self) -> None:
                if self.path == "/dir":
                    status, body = shim._pebble_get(shim.pebble.directory)
                    if status != 200:
                        self._problem(502, "serverInternal", f"pebble's directory: HTTP {status}")
                        return
                    directory = json.loads(body)
                    # §3: the directory names the RenewalInfo resource
                    directory["renewalInfo"] = f"https://127.0.0.1:{shim.port}{RENEWAL_INFO_PATH}"
                    self._send(200, directory)
                elif self.path.startswith(RENEWAL_INFO_PATH + "/"):
                    self._renewal_info(self.path[len(RENEWAL_INFO_PATH) + 1:])
                else:
                    self._problem(404, "malformed", "no such resource")

            def do_POST(self) -> None:
                # §4.1: RenewalInfo is fetched with a plain GET, not POST-as-GET
                self._problem(405, "malformed", "use GET for renewalInfo")

            def _renewal_info(self, cid: str) -> None:
                shim.requests.append(cid)
                # §4.1: certID = base64url(AKI keyIdentifier) "." base64url(serial), unpadded
                try:
                    aki, serial = parse_cert_id(cid)
                except ValueError as exc:
                    self._problem(400, "malformed", f"certID {cid!r}: {exc}")
                    return
                cert = shim._issued(serial) if serial > 0 else None
                issuer_aki = cert.extensions.get_extension_for_class(
                    x509.AuthorityKeyIdentifier).value.key_identifier if cert is not None else None
                if cert is None or issuer_aki != aki:
                    self._problem(404, "malformed", f"no certificate with certID {cid!r}")
                    return
                if shim._window is None:
                    self._problem(500, "serverInternal", "the test set no window")
                    return
                start, end = shim._window
                # §4.2 the RenewalInfo object; §4.3 Retry-After: when to ask again
                self._send(200, {"suggestedWindow": {"start": _rfc3339(start), "end": _rfc3339(end)}},
                           headers={"Retry-After": str(shim.retry_after)})

        return Handler


@pytest.fixture
def ari_factory(tmp_path: Path, test_ca: TestCA) -> Iterator[Callable[..., AriShim]]:
    """``ari_factory(pebble, retry_after=21600)`` fronts a started Pebble with RFC 9773's
    renewalInfo (:class:`AriShim`; give its ``directory`` to ``acme add``); stopped at teardown."""
    started: list[AriShim] = []

    def start(pebble: PebbleServer, *, retry_after: int = 21600) -> AriShim:
        shim = AriShim(pebble, test_ca, tmp_path / f"ari{len(started)}", retry_after=retry_after)
        started.append(shim)
        return shim

    try:
        yield start
    finally:
        for shim in started:
            shim.stop()
