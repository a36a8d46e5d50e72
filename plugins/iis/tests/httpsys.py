"""A TLS listener that serves what the simulated IIS has bound, as HTTP.sys would: for a handshake
on ``port`` it picks the certificate of ``hostnameport=<SNI>:<port>`` (SNI bindings), else of
``ipport=127.0.0.1:<port>``, else ``ipport=0.0.0.0:<port>``, and fails the handshake when there is
none. So an install's TLS verification is a real handshake against the binding table the install
changed. :meth:`freeze` keeps serving the table as it is now (a host whose HTTP.sys did not take
the change), which a correct install must detect and roll back.
"""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading
from pathlib import Path

from iis_sim import IISSim
from tlsgate_testing.winhost import SimulatedWindowsHost


class SimHttpSys:
    def __init__(self, host: SimulatedWindowsHost) -> None:
        self.host = host
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port: int = self._sock.getsockname()[1]
        self._dir = tempfile.TemporaryDirectory(prefix="tlsgate-httpsys-")
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._frozen: IISSim | None = None
        self.handshakes: list[tuple[str | None, str | None]] = []  # (SNI, thumbprint served)
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> SimHttpSys:
        self._thread.start()
        return self

    def freeze(self) -> None:
        """From now on serve the binding table as it is at this moment."""
        self._frozen = IISSim.load(self.host)

    def stop(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self._sock.close()
        self._dir.cleanup()

    def _table(self) -> IISSim:
        return self._frozen or IISSim.load(self.host)

    def _context_for(self, sni: str | None) -> tuple[ssl.SSLContext | None, str | None]:
        sim = self._table()
        entry = None
        if sni:
            entry = sim.http_sys.get(f"hostnameport={sni.lower()}:{self.port}")
        for ip in ("127.0.0.1", "0.0.0.0"):
            entry = entry or sim.http_sys.get(f"ipport={ip}:{self.port}")
        if entry is None:
            return None, None
        cert = sim.stores.get(entry["store"], {}).get(entry["hash"])
        if cert is None or not cert.key_pem:
            return None, None
        thumb = entry["hash"]
        if thumb not in self._contexts:
            import base64

            from cryptography import x509
            from cryptography.hazmat.primitives import serialization

            pem = x509.load_der_x509_certificate(base64.b64decode(cert.der)).public_bytes(serialization.Encoding.PEM)
            path = Path(self._dir.name) / f"{thumb}.pem"
            path.write_bytes(pem + cert.key_pem.encode())
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(path))
            self._contexts[thumb] = ctx
        return self._contexts[thumb], thumb

    def _serve(self) -> None:
        base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)

        def pick(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> int | None:
            ctx, thumb = self._context_for(name)
            self.handshakes.append((name, thumb))
            if ctx is None:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            sslobj.context = ctx
            return None

        base.sni_callback = pick  # type: ignore[assignment]
        self._sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                with base.wrap_socket(conn, server_side=True):
                    pass  # the handshake is all a probe does
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()
