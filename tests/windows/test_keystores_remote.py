"""p12, jks and pem endpoints installed on a Windows host over winrm_http, winrm_https,
winrm_https_insecure and ssh_windows, through the registry facade, with no change to the keystores
plugin. What lands on the host is read back with the real openssl and keytool."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from tlsgate import CertificateBundle, ConnectionSpec, Endpoint, OperationError, Secret, Transaction
from tlsgate.registry import get_registry
from tlsgate_testing.certs import Issued, TestCA
from tlsgate_testing.winrm_fixtures import WINRM_PASSWORD, WINRM_USER, winrm_credentials

pytest.importorskip("tlsgate_keystores")

PW = "store pw;$(calc) 'q'"
DIR = r"C:\ProgramData\App Certs"
PATHS = {"p12": DIR + r"\store.p12", "jks": DIR + r"\store.jks", "pem": DIR + r"\server.pem"}
TRANSPORTS = ["winrm_http", "winrm_https", "winrm_https_insecure", "ssh_windows"]
TOOLS_ENV = {"LC_ALL": "C.utf8", "LANG": "C.utf8"}


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    from tlsgate_keystores import p12_codec

    monkeypatch.setattr(p12_codec, "MODERN_KDF_ROUNDS", 2048)  # 600,000 in production: ~0.3 s a bag


def tool(argv: list[str]) -> str:
    env = {**os.environ, **TOOLS_ENV, "KS_TEST_PW": PW}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, f"{argv[0]} failed: {proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def keytool_aliases(path: Path) -> dict[str, str]:
    """alias -> SHA-256 (lower hex) of the entry's first certificate."""
    out = tool(["keytool", "-list", "-v", "-keystore", str(path), "-storepass:env", "KS_TEST_PW"])
    found = {}
    for block in out.split("Alias name: ")[1:]:
        sha = re.search(r"SHA256: ([0-9A-F:]+)", block)
        found[block.splitlines()[0].strip()] = sha.group(1).replace(":", "").lower() if sha else ""
    return found


def initial_store(kind: str, leaf: Issued, tmp: Path) -> bytes:
    """An existing keystore with one entry "alpha" (p12 from openssl, jks from keytool)."""
    crt, key, chain = leaf.write(tmp, "alpha")
    p12 = tmp / "alpha.p12"
    tool(["openssl", "pkcs12", "-export", "-in", str(crt), "-inkey", str(key), "-certfile", str(chain),
          "-name", "alpha", "-passout", "env:KS_TEST_PW", "-out", str(p12)])
    if kind == "p12":
        return p12.read_bytes()
    if kind == "jks":
        jks = tmp / "alpha.jks"
        tool(["keytool", "-importkeystore", "-srckeystore", str(p12), "-srcstoretype", "PKCS12",
              "-srcstorepass:env", "KS_TEST_PW", "-destkeystore", str(jks), "-deststoretype", "JKS",
              "-deststorepass:env", "KS_TEST_PW", "-noprompt"])
        return jks.read_bytes()
    return leaf.cert_pem + leaf.chain_pem + leaf.key_pem


def keystore_endpoint(kind: str, spec: ConnectionSpec) -> Endpoint:
    et = get_registry().endpoint_types[kind]
    opts = {"path": PATHS[kind]}
    if kind != "pem":
        opts["store_password"] = Secret(PW)
    return Endpoint(name=f"win-{kind}", type=kind, connection=spec, options=et.options(**opts))


@pytest.fixture
def windows_target(request: pytest.FixtureRequest, winrm_peer_factory: Callable[..., Any], winrm_tls: Any,
                   tlsgate_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """(connection spec, credentials, seed(path, data), read(path), exists(path), links) for one
    transport; ``links.make(path, target, kind)`` makes an NTFS link, ``links.info(path)`` is its
    (LinkType, Target) or None."""
    kind = request.param
    if kind == "ssh_windows":
        from tlsgate.transports import ssh

        host = request.getfixturevalue("ssh_windows_host")
        monkeypatch.setenv("HOME", str(tmp_path))
        ssh.trust_host_key(host.host, host.port, host.host_key_public)
        spec = ConnectionSpec("ssh_windows", host=host.host, port=host.port, user=host.user)
        # the session-scoped host keeps files between tests: start from an empty directory
        for name in ("store.p12", "store.jks", "server.pem"):
            path = DIR + "\\" + name
            if host.exists(path):
                host.winhost().fs.remove(path)
        links = SimpleNamespace(make=host.link, info=lambda path: host.winhost().fs.link(path))
        yield spec, host.credentials(), host.seed, host.read, host.exists, links
        return
    peer = winrm_peer_factory({"winrm_http": "http", "winrm_https": "https",
                               "winrm_https_insecure": "https_untrusted"}[kind])
    extra: dict[str, Any] = {"winrm_auth": "ntlm"}
    if kind == "winrm_https":
        extra["ca_bundle"] = str(winrm_tls.ca_bundle)
    spec = ConnectionSpec(kind, host="127.0.0.1", port=peer.port, user=WINRM_USER,
                          password=Secret(WINRM_PASSWORD), extra=extra)
    links = SimpleNamespace(make=peer.host.link, info=peer.host.fs.link)
    yield spec, winrm_credentials(), peer.host.seed, peer.host.read, peer.host.exists, links


@pytest.mark.parametrize("windows_target", TRANSPORTS, indirect=True)
@pytest.mark.parametrize("kind", ["p12", "jks", "pem"])
def test_install_over_windows_transport(kind: str, windows_target: Any, test_ca: TestCA, tmp_path: Path) -> None:
    spec, credentials, seed, read, _exists, _links = windows_target
    old, new = test_ca.issue("old.example.org"), test_ca.issue("new.example.org")
    seed(PATHS[kind], initial_store(kind, old, tmp_path))
    endpoint = keystore_endpoint(kind, spec)
    registry = get_registry()
    assert registry.validate(endpoint) == []
    bundle = CertificateBundle.from_pem(new.cert_pem, new.key_pem, new.chain_pem)
    with registry.connect(endpoint, credentials) as conn:
        assert conn.platform == "windows"
        assert conn.insecure is (spec.type == "winrm_https_insecure")
        before = registry.discover_nodes(endpoint, conn)
        assert old.fingerprint in {n.fingerprint for n in before}
        result = registry.install(endpoint, conn, bundle, [], dry_run=False, alias=None)
        assert result.verified and not result.rolled_back
        after = registry.discover_nodes(endpoint, conn)
        assert new.fingerprint in {n.fingerprint for n in after}

    local = tmp_path / f"readback.{kind}"
    local.write_bytes(read(PATHS[kind]))
    if kind == "pem":
        text = local.read_text()
        assert new.cert_pem.decode() in text and old.cert_pem.decode() not in text
        key = serialization.load_pem_private_key(read(PATHS[kind]), None)
        assert key.public_key().public_numbers() == new.key.public_key().public_numbers()  # type: ignore[attr-defined]
        tool(["openssl", "x509", "-in", str(local), "-noout"])
    else:
        aliases = keytool_aliases(local)
        assert aliases["alpha"] == old.fingerprint  # the other entry is kept
        assert new.fingerprint in aliases.values()
        if kind == "p12":
            assert "friendlyName" in tool(["openssl", "pkcs12", "-info", "-in", str(local), "-nokeys",
                                           "-passin", "env:KS_TEST_PW"])


@pytest.mark.parametrize("windows_target", ["winrm_http", "ssh_windows"], indirect=True)
def test_dry_run_changes_nothing_remotely(windows_target: Any, test_ca: TestCA, tmp_path: Path) -> None:
    spec, credentials, seed, read, _exists, _links = windows_target
    old, new = test_ca.issue("old.example.org"), test_ca.issue("new.example.org")
    original = initial_store("p12", old, tmp_path)
    seed(PATHS["p12"], original)
    endpoint = keystore_endpoint("p12", spec)
    bundle = CertificateBundle.from_pem(new.cert_pem, new.key_pem, new.chain_pem)
    with get_registry().connect(endpoint, credentials) as conn:
        result = get_registry().install(endpoint, conn, bundle, [], dry_run=True, alias=None)
    assert result.dry_run and result.plan
    assert read(PATHS["p12"]) == original


LINK_LAYOUTS = {
    # layout: (the link, its stored target, LinkType, the --path given, the file written)
    "symlink": ("{d}\\live.p12", "C:\\Certs\\{u}\\real.p12", "SymbolicLink", "{d}\\live.p12",
                "C:\\Certs\\{u}\\real.p12"),
    "relative-symlink": ("{d}\\live\\store.p12", "..\\real\\store.p12", "SymbolicLink",
                         "{d}\\live\\store.p12", "{d}\\real\\store.p12"),
    "junction": ("{d}\\current", "C:\\Certs\\{u}\\v2", "Junction", "{d}\\current\\store.p12",
                 "C:\\Certs\\{u}\\v2\\store.p12"),
}


@pytest.mark.parametrize("windows_target", TRANSPORTS, indirect=True)
@pytest.mark.parametrize("layout", list(LINK_LAYOUTS))
def test_keystore_path_through_an_ntfs_link_install_and_rollback(layout: str, windows_target: Any, test_ca: TestCA,
                                                                   tmp_path: Path) -> None:
    """A --path that is an NTFS symbolic link (absolute or relative target) or lies under a
    junction: the install writes the file the link names and the link stays a link with the same
    target; a failed transaction restores the target, the link still a link."""
    spec, credentials, seed, read, _exists, links = windows_target
    unique = tmp_path.name[-24:]
    fmt = {"d": f"{DIR}\\{unique}", "u": unique}
    link, stored, kind, path, real = (v.format(**fmt) for v in LINK_LAYOUTS[layout])
    old, new = test_ca.issue("old.example.org"), test_ca.issue("new.example.org")
    original = initial_store("p12", old, tmp_path)
    seed(real, original)
    links.make(link, stored, kind)
    assert links.info(link) == (kind, stored) and read(path) == original
    et = get_registry().endpoint_types["p12"]
    endpoint = Endpoint(name="win-linked", type="p12", connection=spec,
                        options=et.options(path=path, store_password=Secret(PW)))
    bundle = CertificateBundle.from_pem(new.cert_pem, new.key_pem, new.chain_pem)
    registry = get_registry()
    with registry.connect(endpoint, credentials) as conn:
        result = registry.install(endpoint, conn, bundle, [], dry_run=False, alias=None)
        assert result.verified and not result.rolled_back
        assert links.info(link) == (kind, stored)  # still a link, same target
        # a link as the last component is resolved; a junction on the way Windows follows itself
        assert conn.realpath(path) == (path if kind == "Junction" else real)
        installed = read(real)
        local = tmp_path / "readback.p12"
        local.write_bytes(installed)
        assert new.fingerprint in keytool_aliases(local).values()
        with pytest.raises(OperationError, match="restored"), Transaction(conn) as tx:
            tx.write(path, b"half")
            assert read(real) == b"half"
            raise RuntimeError("verification failed")
        assert links.info(link) == (kind, stored) and read(real) == installed


def test_cli_install_through_an_ntfs_symlink_over_ssh_windows(winssh: Any, test_ca: TestCA, tmp_path: Path) -> None:
    """The same through the ``tlsgate`` command: ``tls add p12 --path <a symbolic link>`` over
    ssh_windows, ``tls install``; the link is still a link and its target holds the new entry."""
    import json
    import sys

    unique = tmp_path.name[-20:]
    real, link = f"C:\\Certs\\{unique}\\real.p12", f"{DIR}\\cli-{unique}\\live.p12"
    old, new = test_ca.issue("old.example.org"), test_ca.issue("new.example.org")
    winssh.seed(real, initial_store("p12", old, tmp_path))
    winssh.link(link, real)
    exe = str(Path(sys.executable).with_name("tlsgate"))

    def tg(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args], input=stdin, capture_output=True, text=True, env=dict(os.environ),
                              timeout=300, check=False)

    auth = ["--ssh_key_path", str(winssh.key_path)] if winssh.key_path else ["--password", "-"]
    added = tg("tls", "add", "p12", "--name", "winlink", "--connection_type", "ssh_windows", "--host", winssh.host,
               "--port", str(winssh.port), "--user", winssh.user, *auth, "--path", link, "--store_password", PW,
               stdin=None if winssh.key_path else winssh.password + "\n")
    assert added.returncode == 0, added.stderr
    assert tg("org", "add", "acme").returncode == 0
    assert tg("tls", "delegate", "winlink", "--org", "acme").returncode == 0
    crt, key, chain = new.write(tmp_path / "in", "new")
    done = tg("tls", "install", "winlink", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
              "--alias", "beta", "--json")
    assert done.returncode == 0, done.stderr
    assert winssh.winhost().fs.link(link) == ("SymbolicLink", real)
    local = tmp_path / "readback.p12"
    local.write_bytes(winssh.read(real))
    aliases = keytool_aliases(local)
    assert aliases["alpha"] == old.fingerprint and aliases["beta"] == new.fingerprint
    entry = [e for e in json.loads(tg("log", "--json").stdout) if e["action"] == "tls install"][-1]
    assert entry["result"] == "ok" and entry["after"] == new.fingerprint
