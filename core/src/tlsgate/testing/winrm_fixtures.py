"""Fixtures for Windows hosts: the WinRM loopback peer and the simulated Windows host.

* ``winhost``: a fresh :class:`~tlsgate.testing.winhost.SimulatedWindowsHost` (in-memory C:).
* ``winrm_peer_factory``: ``make(kind, *, host=None, users=None, auth=...)`` starts a
  :class:`~tlsgate.testing.winrm_peer.WinRMPeer` on 127.0.0.1 for one test. ``kind``:
  ``"http"``, ``"https"`` (certificate from the session test CA, for 127.0.0.1 and localhost) or
  ``"https_untrusted"`` (a self-signed certificate nobody trusts).
* ``winrm_tls``: the https certificate files and ``ca_bundle`` (the test CA's root, PEM).
* ``winrm_endpoint(peer, conn_type, ...)`` and ``WINRM_USER`` / ``WINRM_PASSWORD``: an
  :class:`~tlsgate.models.Endpoint` aimed at a peer and the credentials it accepts.

The ssh_windows host (sshd + ``powershell`` shim + SFTP drive mapping) is ``ssh_windows_host``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from ..models import ConnectionSpec, Credentials, Endpoint
from ..secret import Secret
from .certs import TestCA
from .winhost import SimulatedWindowsHost
from .winrm_peer import WinRMPeer

WINRM_USER = "vagrant"
#: Spaces, quotes, ';', '$()' and backticks: a password is data everywhere it travels.
WINRM_PASSWORD = "p@ss w0rd;$(calc) `id` 'q' \"dq\""


@attrs.frozen
class WinRMTLS:
    certfile: Path
    keyfile: Path
    ca_bundle: Path  # trusts ``certfile``
    untrusted_certfile: Path  # self-signed
    untrusted_keyfile: Path


@pytest.fixture(scope="session")
def winrm_tls(test_ca: TestCA) -> Iterator[WinRMTLS]:
    from cryptography.hazmat.primitives import serialization

    with tempfile.TemporaryDirectory(prefix="tlsgate-winrm-tls-") as tmp:
        d = Path(tmp)
        leaf = test_ca.issue("127.0.0.1", "localhost")
        _, key, _ = leaf.write(d, "winrm")
        pem = serialization.Encoding.PEM
        # The server sends leaf + intermediate; the client trusts only the root.
        (d / "winrm.fullchain.crt").write_bytes(leaf.cert_pem + test_ca.intermediate.public_bytes(pem))
        (d / "ca.pem").write_bytes(test_ca.root.public_bytes(pem))
        bcrt, bkey, _ = test_ca.self_signed("127.0.0.1").write(d, "untrusted")
        yield WinRMTLS(d / "winrm.fullchain.crt", key, d / "ca.pem", bcrt, bkey)


@pytest.fixture
def winhost() -> SimulatedWindowsHost:
    """A fresh simulated Windows host (in-memory file system with drive C:)."""
    return SimulatedWindowsHost()


@pytest.fixture
def winrm_peer_factory(winrm_tls: WinRMTLS) -> Iterator[Callable[..., WinRMPeer]]:
    """``make(kind="http"|"https"|"https_untrusted", *, host=None, users=None, auth=("basic", "ntlm"))``."""
    started: list[WinRMPeer] = []

    def make(kind: str = "http", *, host: SimulatedWindowsHost | None = None,
             users: dict[str, str] | None = None, **kwargs: Any) -> WinRMPeer:
        tls = {
            "http": None,
            "https": (str(winrm_tls.certfile), str(winrm_tls.keyfile)),
            "https_untrusted": (str(winrm_tls.untrusted_certfile), str(winrm_tls.untrusted_keyfile)),
        }[kind]
        peer = WinRMPeer(host or SimulatedWindowsHost(), users=users or {WINRM_USER: WINRM_PASSWORD},
                         tls=tls, **kwargs).start()
        started.append(peer)
        return peer

    yield make
    for peer in started:
        peer.stop()


def winrm_endpoint(peer: WinRMPeer, conn_type: str = "winrm_http", *, auth: str = "ntlm",
                   ca_bundle: str | Path | None = None, type: str = "pem", options: Any = None,
                   name: str = "win1") -> Endpoint:
    """An endpoint of ``type`` that reaches ``peer`` over ``conn_type`` (winrm_*)."""
    extra: dict[str, Any] = {"winrm_auth": auth}
    if ca_bundle is not None:
        extra["ca_bundle"] = str(ca_bundle)
    spec = ConnectionSpec(conn_type, host="127.0.0.1", port=peer.port, user=WINRM_USER,
                          password=Secret(WINRM_PASSWORD), extra=extra)
    return Endpoint(name=name, type=type, connection=spec, options=options)


def winrm_credentials(password: str = WINRM_PASSWORD, user: str = WINRM_USER) -> Credentials:
    return Credentials(user=user, password=Secret(password))
