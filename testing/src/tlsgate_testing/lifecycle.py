"""Helpers for ACME tests: run the ``tlsgate`` CLI as a subprocess and read served certificates."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from cryptography import x509


def tg(*args: str, stdin: str | None = None, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``tlsgate ARGS`` as an operator runs it (stdout piped); with ``check`` exit 0 is asserted."""
    res = subprocess.run([sys.executable, "-m", "tlsgate", *args], capture_output=True, text=True, input=stdin,
                         timeout=timeout, check=False)
    if check:
        assert res.returncode == 0, f"tlsgate {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def tg_json(*args: str, stdin: str | None = None) -> Any:
    return json.loads(tg(*args, "--json", stdin=stdin).stdout)


def served(port: int, sni: str) -> x509.Certificate:
    from tlsgate.probe import served_certificate

    return x509.load_der_x509_certificate(served_certificate("127.0.0.1", port, sni))


def changed_directives(before: bytes, after: bytes) -> list[bytes]:
    """The first word of every line that differs between two versions of a config file (same
    number of lines: an in-place edit of arguments)."""
    old, new = before.splitlines(), after.splitlines()
    assert len(old) == len(new), "lines were added or removed"
    return [a.split()[0] for a, b in zip(old, new, strict=True) if a != b]


def install_recorded(endpoint: str, cert_id: int) -> Any:
    """Install a certificate the inventory recorded with its sealed key (``tls install`` through
    the library: the key never goes to a file); returns the install outcome."""
    from tlsgate.api import Gateway

    gw = Gateway()
    try:
        return gw.install(endpoint, gw.lifecycle.bundle(cert_id))
    finally:
        gw.close()


def deployed_by_cli(endpoint: str, cert_id: int) -> bool:
    """``tlsgate cert deploy ID --endpoint E`` (the certificate's sealed key never goes to a file):
    True when the job's one item changed the endpoint and the handshake verified it."""
    job = tg_json("cert", "deploy", str(cert_id), "--endpoint", endpoint)
    items = job["items"]
    return bool(job["state"] == "done" and len(items) == 1 and items[0]["state"] == "changed"
                and items[0]["details"]["verified"])
