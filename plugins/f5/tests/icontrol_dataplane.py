"""The data plane of the loopback BIG-IP: a TLS listener per virtual server on a 127.x.x.x
address, presenting per SNI the certificate its client-ssl profile points at right now (or, with
``freeze_listeners``, what it pointed at when the listeners opened: a device that accepted a
change but does not serve it)."""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from icontrol_peer import Device

NONE = "none"


class DataPlane:
    device: Device
    _tmp: tempfile.TemporaryDirectory[str]
    _listeners: list[socket.socket]
    freeze_listeners: bool
    _frozen: dict[str, tuple[str, str, str]]

    # -- the data plane: TLS listeners on virtual addresses -----------------------------------------
    def serve_virtuals(self) -> list[str]:
        """Open a TLS listener for each virtual server whose destination is ``127.x.x.x:port``;
        return the virtual servers served."""
        served = []
        for full, vs in self.device.virtuals.items():
            m = re.match(r"^/[^/]+/(127\.\d+\.\d+\.\d+):(\d+)$", vs["destination"])
            if not m or not any(p in self.device.profiles for p, _ in vs["profiles"]):
                continue
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((m.group(1), int(m.group(2))))
            sock.listen(16)
            sock.settimeout(0.2)
            self._listeners.append(sock)
            thread = threading.Thread(target=self._accept, args=(sock, full), daemon=True)
            thread.start()
            served.append(full)
            for p, _ in vs["profiles"]:
                if p in self.device.profiles:
                    entry = self.device.profiles[p]["certKeyChain"][0]
                    self._frozen[p] = (entry["cert"], entry["key"], entry.get("chain", NONE))
        return served

    def _context_for(self, virtual: str, sni: str | None) -> ssl.SSLContext:
        dev = self.device
        with dev.lock:
            profs = [p for p, _ in dev.virtuals[virtual]["profiles"] if p in dev.profiles]
            chosen = next((p for p in profs if sni and dev.profiles[p]["serverName"] == sni), None)
            chosen = chosen or next((p for p in profs if dev.profiles[p]["sniDefault"] == "true"), profs[0])
            if self.freeze_listeners:
                cert, key, chain = self._frozen[chosen]
            else:
                entry = dev.profiles[chosen]["certKeyChain"][0]
                cert, key, chain = entry["cert"], entry["key"], entry.get("chain", NONE)
            pem = dev.certs[cert].pem + (dev.certs[chain].pem if chain != NONE else b"")
            key_pem = dev.keys[key].pem
        digest = hashlib.sha256(pem + key_pem).hexdigest()[:16]
        cert_file, key_file = Path(self._tmp.name, f"{digest}.crt"), Path(self._tmp.name, f"{digest}.key")
        if not cert_file.exists():
            cert_file.write_bytes(pem)
            key_file.write_bytes(key_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_file, key_file)
        return ctx

    def _accept(self, sock: socket.socket, virtual: str) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handshake, args=(conn, virtual), daemon=True).start()

    def _handshake(self, conn: socket.socket, virtual: str) -> None:
        def pick(sslsock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            sslsock.context = self._context_for(virtual, name)

        conn.settimeout(5)
        try:
            base = self._context_for(virtual, None)
            base.sni_callback = pick
            with base.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError, KeyError):
            pass
        finally:
            conn.close()


