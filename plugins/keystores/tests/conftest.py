"""Fixtures for the keystores plugin tests: endpoints driven through the registry facade, and
the real ``openssl`` and ``keytool`` reading back what was written.

Passwords reach the tools through the environment (``-passin env:``, ``-storepass:env``), never
argv. The modern profile's 600,000 PBKDF2 rounds cost ~0.3 s per bag on this machine, so the
``fast_kdf`` fixture (autouse) lowers them to 2048 for speed; ``test_p12.py`` keeps one test on
the production value to pin it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tlsgate import CertificateBundle, ConnectionSpec, Endpoint, Secret
from tlsgate.registry import Registry, get_registry
from tlsgate_testing.certs import Issued, TestCA
from tlsgate_testing.connections import LocalConnection

TOOLS_ENV = {"LC_ALL": "C.utf8", "LANG": "C.utf8"}  # keytool decodes the env password with the locale


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    if "production_kdf" in request.keywords:
        return
    from tlsgate_keystores import p12_codec

    monkeypatch.setattr(p12_codec, "MODERN_KDF_ROUNDS", 2048)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "production_kdf: keep the modern profile's real PBKDF2 rounds")


@pytest.fixture(scope="session")
def registry() -> Registry:
    return get_registry()


@pytest.fixture(scope="session")
def leaf_a(test_ca: TestCA) -> Issued:
    return test_ca.issue("a.example.org")


@pytest.fixture(scope="session")
def leaf_b(test_ca: TestCA) -> Issued:
    return test_ca.issue("b.example.org")


def bundle_of(issued: Issued) -> CertificateBundle:
    return CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)


def run_tool(argv: list[str], password: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **TOOLS_ENV}
    if password is not None:
        env["KS_TEST_PW"] = password
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv[0]} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    return proc


def openssl_info(path: Path, password: str) -> str:
    """``openssl pkcs12 -info`` output (PBE algorithms, MAC, bag attributes); password via env.

    The certificates' PEM bodies are left out: their base64 holds any three letters by chance, and
    a test asserting "AES" not in the output failed in CI on a certificate that happened to.
    """
    proc = run_tool(
        ["openssl", "pkcs12", "-info", "-in", str(path), "-passin", "env:KS_TEST_PW", "-nokeys"], password
    )
    return re.sub(r"-----BEGIN [^-]+-----.*?-----END [^-]+-----\n?", "", proc.stdout + proc.stderr, flags=re.S)


def keytool_list(path: Path, password: str) -> dict[str, dict[str, Any]]:
    """``keytool -list -v`` parsed: alias -> {type, chain, sha256 (leaf, lower hex), store_type}."""
    proc = run_tool(["keytool", "-list", "-v", "-keystore", str(path), "-storepass:env", "KS_TEST_PW"], password)
    out = proc.stdout
    store_type = re.search(r"Keystore type: (\S+)", out)
    entries: dict[str, dict[str, Any]] = {}
    for block in out.split("Alias name: ")[1:]:
        # the alias exactly as keytool prints it: str.strip() and splitlines() would also cut
        # a no-break space or U+2028 that is part of it (hypothesis found "0\xa0")
        alias = block.split("\n", 1)[0].rstrip("\r")
        kind = re.search(r"Entry type: (\S+)", block)
        chain = re.search(r"Certificate chain length: (\d+)", block)
        sha = re.search(r"SHA256: ([0-9A-F:]+)", block)
        entries[alias] = {
            "type": kind.group(1) if kind else None,
            "chain": int(chain.group(1)) if chain else 1,
            "sha256": sha.group(1).replace(":", "").lower() if sha else None,
            "store_type": store_type.group(1) if store_type else None,
        }
    return entries


@pytest.fixture(scope="session")
def keytool() -> str:
    path = shutil.which("keytool")
    if path is None:
        pytest.fail("keytool is required (apt-get install openjdk-17-jre-headless)")
    return path


class Driver:
    """Endpoints of the plugin's types driven through the registry facade."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def endpoint(self, type_: str, path: Path | str, connection: str = "local", **options: Any) -> Endpoint:
        et = self.registry.endpoint_types[type_]
        for name in ("store_password", "key_password"):
            if isinstance(options.get(name), str):
                options[name] = Secret(options[name])
        return Endpoint(name="ks", type=type_, connection=ConnectionSpec(connection),
                        options=et.options(path=str(path), **options))

    def install(self, ep: Endpoint, bundle: CertificateBundle, *, alias: str | None = None, dry_run: bool = False,
                nodes: list[Any] | None = None, connection: Any = None) -> Any:
        with connection or LocalConnection() as conn:
            return self.registry.install(ep, conn, bundle, nodes or [], dry_run=dry_run, alias=alias)

    def discover(self, ep: Endpoint, connection: Any = None) -> list[Any]:
        with connection or LocalConnection() as conn:
            return self.registry.discover_nodes(ep, conn)


@pytest.fixture
def driver(registry: Registry) -> Driver:
    return Driver(registry)


@pytest.fixture
def p12_file(tmp_path: Path, leaf_a: Issued) -> Iterator[Path]:
    """A PKCS#12 written by openssl (modern defaults) with one entry, alias "alpha"."""
    leaf_a.write(tmp_path, "a")
    out = tmp_path / "store.p12"
    run_tool(
        ["openssl", "pkcs12", "-export", "-in", str(tmp_path / "a.crt"), "-inkey", str(tmp_path / "a.key"),
         "-certfile", str(tmp_path / "a.chain.crt"), "-name", "alpha", "-passout", "env:KS_TEST_PW",
         "-out", str(out)],
        "changeit",
    )
    yield out


def snapshot(path: Path) -> tuple[bytes, int, float]:
    st = path.stat()
    return path.read_bytes(), st.st_mode & 0o7777, st.st_mtime


def leftovers(directory: Path) -> list[str]:
    """Temporary files a failed atomic write might have left."""
    return [p.name for p in directory.iterdir() if p.name.startswith(".tlsgate-")]


@pytest.fixture(scope="session")
def kt() -> Any:
    """The helpers above, for test modules (importlib import mode cannot import conftest)."""
    import types

    return types.SimpleNamespace(
        bundle_of=bundle_of, run_tool=run_tool, openssl_info=openssl_info, keytool_list=keytool_list,
        snapshot=snapshot, leftovers=leftovers,
    )


#: The opt-in test kit (fixtures: test_ca, tlsgate_home, sshd, OpenBao, servers, WinRM peer).
pytest_plugins = ["tlsgate_testing"]
