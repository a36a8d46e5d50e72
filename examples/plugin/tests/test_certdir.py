"""The example plugin's tests: the same fixtures a third-party author gets from tlsgate_testing,
driven through the documented CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tlsgate.registry import get_registry
from tlsgate_testing.contract import check_declaration


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tlsgate", *args], capture_output=True, text=True, input=stdin,
                          env=os.environ.copy())


def test_contract() -> None:
    reg = get_registry()
    assert check_declaration(reg, reg.endpoint_types["certdir"]) == []


def test_install_with_reload_and_rollback(tlsgate_home: Path, test_ca, tmp_path: Path) -> None:
    folder = tmp_path / "certs"
    folder.mkdir()
    reloads = tmp_path / "reloads.log"
    old = test_ca.issue("mail.example.org")
    (folder / "mail.crt").write_bytes(old.cert_pem)
    (folder / "mail.key").write_bytes(old.key_pem)
    new = test_ca.issue("mail.example.org")
    crt, key, chain = new.write(tmp_path / "new", "mail")

    reload_cmd = f"sh -c 'echo reload >> {reloads}'"
    assert cli("tls", "add", "certdir", "--name", "mail", "--connection_type", "local", "--dir", str(folder),
               "--reload_command", reload_cmd).returncode == 0
    assert cli("org", "add", "Acme").returncode == 0
    assert cli("tls", "delegate", "mail", "--org", "Acme").returncode == 0
    found = json.loads(cli("tls", "discover", "mail", "--json").stdout)
    assert [(n["name"], n["ssl"]) for n in found] == [("mail", "External")]

    done = cli("tls", "install", "mail", "--cert", str(crt), "--key", str(key), "--chain", str(chain), "--node", "mail",
               "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["nodes"] == ["mail"]
    assert (folder / "mail.crt").read_bytes().startswith(new.cert_pem)
    assert (folder / "mail.key").stat().st_mode & 0o777 == 0o600
    assert reloads.read_text() == "reload\n"
    nodes = json.loads(cli("tls", "nodes", "mail", "--json").stdout)
    assert nodes[0]["fingerprint"] == new.fingerprint and nodes[0]["ssl"] not in (None, "External")

    # a failing reload command restores both files byte for byte
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert cli("tls", "add", "certdir", "--name", "mail2", "--connection_type", "local", "--dir", str(folder),
               "--reload_command", "false").returncode == 0
    assert cli("tls", "delegate", "mail2", "--org", "Acme").returncode == 0
    newer = test_ca.issue("mail.example.org")
    crt2, key2, chain2 = newer.write(tmp_path / "newer", "mail")
    failed = cli("tls", "install", "mail2", "--cert", str(crt2), "--key", str(key2), "--chain", str(chain2),
                 "--node", "mail")
    assert failed.returncode == 1
    assert "restored" in failed.stderr and "Traceback" not in failed.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
