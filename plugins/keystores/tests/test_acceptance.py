"""Acceptance cases found by driving the documented CLI (stdout piped, as a script runs it) over
keystores operators really have: files keytool wrote, one certificate under several aliases,
entries whose key password differs from the store password.

Each case goes through ``python -m tlsgate`` and is read back with keytool / openssl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tlsgate_testing.certs import Issued, TestCA

STORE_PW = "changeit"


def tg(home: Path, *args: str, stdin: str | None = None, expect: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TLSGATE_")}
    env["TLSGATE_HOME"] = str(home)
    proc = subprocess.run([sys.executable, "-m", "tlsgate", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=180, check=False)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == expect, (args, proc.stdout, proc.stderr)
    return proc


def keytool_jks_with_two_aliases(tmp_path: Path, old: Issued, kt: Any) -> Path:
    """A JKS written by keytool: the old certificate under ``tomcat`` (key password = store
    password) and ``tomcat-old`` (its own key password), plus a trusted CA entry."""
    pfx = tmp_path / "old.p12"
    pfx.write_bytes(old.pfx("pfx-pw", alias="tomcat"))
    jks = tmp_path / "server.jks"
    env = {"KS_TEST_PW": STORE_PW, "PFX_PW": "pfx-pw", "KEY_PW": "other-key-pw"}
    common = ["keytool", "-importkeystore", "-noprompt", "-srckeystore", str(pfx), "-srcstoretype", "PKCS12",
              "-srcstorepass:env", "PFX_PW", "-destkeystore", str(jks), "-deststoretype", "JKS",
              "-deststorepass:env", "KS_TEST_PW", "-srcalias", "tomcat"]
    for argv in ([*common, "-destkeypass:env", "KS_TEST_PW"],
                 [*common, "-destalias", "tomcat-old", "-destkeypass:env", "KEY_PW"]):
        proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
    ca = tmp_path / "ca.crt"
    ca.write_bytes(old.chain_pem)
    kt.run_tool(["keytool", "-importcert", "-noprompt", "-keystore", str(jks), "-storetype", "JKS",
                 "-storepass:env", "KS_TEST_PW", "-alias", "corp root", "-file", str(ca)], STORE_PW)
    return jks


def test_deploy_replaces_every_entry_of_one_keystore_that_served_the_old_certificate(
        tmp_path: Path, test_ca: TestCA, kt: Any) -> None:
    """`cert deploy --replaces OLD` goes to every node serving OLD: in a keystore that holds OLD
    under two aliases, both entries get the new certificate in one write (the install script runs
    once per alias), and the trusted entry is kept byte for byte."""
    import jks as pyjks

    old, new = test_ca.issue("app.example.org"), test_ca.issue("app.example.org")
    store = keytool_jks_with_two_aliases(tmp_path, old, kt)
    before = pyjks.KeyStore.load(str(store), STORE_PW, try_decrypt_keys=False)
    log = tmp_path / "script.log"
    script = tmp_path / "reload.sh"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {log}\n')
    script.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    tg(home, "tls", "add", "jks", "--name", "tc", "--connection_type", "local", "--path", str(store),
       "--store_password", "-", "--install_script", str(script), stdin=STORE_PW + "\n")
    tg(home, "org", "add", "Acme")
    tg(home, "tls", "delegate", "tc", "--org", "Acme")
    tg(home, "tls", "discover", "tc")
    crt, key, chain = new.write(tmp_path / "new", "new")
    out = tg(home, "cert", "deploy", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
             "--replaces", old.fingerprint, "--json")
    job = json.loads(out.stdout)
    assert [(i["endpoint"], i["state"], i["after"]) for i in job["items"]] == [("tc", "changed", new.fingerprint)]
    listed = kt.keytool_list(store, STORE_PW)
    assert {a: (e["type"], e["sha256"]) for a, e in listed.items()} == {
        "tomcat": ("PrivateKeyEntry", new.fingerprint),
        "tomcat-old": ("PrivateKeyEntry", new.fingerprint),
        "corp root": ("trustedCertEntry", listed["corp root"]["sha256"]),
    }
    after = pyjks.KeyStore.load(str(store), STORE_PW, try_decrypt_keys=False)
    assert after.entries["corp root"].cert == before.entries["corp root"].cert
    assert after.entries["corp root"].timestamp == before.entries["corp root"].timestamp
    assert sorted(log.read_text().split()) == ["tomcat", "tomcat-old"]
    nodes = json.loads(tg(home, "tls", "nodes", "tc", "--json").stdout)
    assert {n["name"]: n["fingerprint"] for n in nodes if n["state"] == "active"} == {
        "tomcat": new.fingerprint, "tomcat-old": new.fingerprint}
    expiring = json.loads(tg(home, "cert", "expiring", "--days", "3650", "--json").stdout)
    assert not [c for c in expiring if c["fingerprint"] == old.fingerprint and c["nodes"]]


def test_install_with_two_nodes_replaces_both_entries(tmp_path: Path, test_ca: TestCA, kt: Any) -> None:
    """`tls install --node A --node B` on a keystore replaces both entries (refusing it left the
    operator no way to renew a certificate kept under two aliases in one transaction)."""
    old, new = test_ca.issue("app.example.org"), test_ca.issue("app.example.org")
    store = keytool_jks_with_two_aliases(tmp_path, old, kt)
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    tg(home, "tls", "add", "jks", "--name", "tc", "--connection_type", "local", "--path", str(store),
       "--store_password", "-", stdin=STORE_PW + "\n")
    tg(home, "org", "add", "Acme")
    tg(home, "tls", "delegate", "tc", "--org", "Acme")
    tg(home, "tls", "discover", "tc")
    crt, key, chain = new.write(tmp_path / "new", "new")
    plan = tg(home, "tls", "install", "tc", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
              "--node", "tomcat", "--node", "tomcat-old", "--dry-run").stdout
    assert "alias tomcat " in plan and "alias tomcat-old " in plan, plan
    out = tg(home, "tls", "install", "tc", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
             "--node", "tomcat", "--node", "tomcat-old").stdout
    assert "replaced entry 'tomcat'" in out and "replaced entry 'tomcat-old'" in out, out
    listed = kt.keytool_list(store, STORE_PW)
    assert listed["tomcat"]["sha256"] == listed["tomcat-old"]["sha256"] == new.fingerprint
    assert listed["corp root"]["type"] == "trustedCertEntry"


def test_replacing_an_entry_with_its_own_key_password_says_the_key_password_changed(
        tmp_path: Path, test_ca: TestCA, kt: Any) -> None:
    """keytool lets an entry's key password differ from the store password (``-keypass``), and
    the application names it separately (Tomcat ``certificateKeyPassword``). The new entry's key
    is protected with the store password (as keytool's default), so the install says so instead of
    leaving the application to fail at its next start with "Cannot recover key"."""
    old, new = test_ca.issue("app.example.org"), test_ca.issue("app.example.org")
    store = keytool_jks_with_two_aliases(tmp_path, old, kt)
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    tg(home, "tls", "add", "jks", "--name", "tc", "--connection_type", "local", "--path", str(store),
       "--store_password", "-", stdin=STORE_PW + "\n")
    tg(home, "org", "add", "Acme")
    tg(home, "tls", "delegate", "tc", "--org", "Acme")
    tg(home, "tls", "discover", "tc")
    crt, key, chain = new.write(tmp_path / "new", "new")
    plain = tg(home, "tls", "install", "tc", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
               "--node", "tomcat").stdout
    assert "key password" not in plain, plain  # that entry's key already opened with the store password
    out = tg(home, "tls", "install", "tc", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
             "--node", "tomcat-old").stdout
    assert "'tomcat-old' had a key password of its own" in out and "store password" in out, out
    # the new key opens with the store password, as the message says
    pkcs12 = tmp_path / "check.p12"
    kt.run_tool(["keytool", "-importkeystore", "-noprompt", "-srckeystore", str(store), "-srcstorepass:env",
                 "KS_TEST_PW", "-srcalias", "tomcat-old", "-srckeypass:env", "KS_TEST_PW", "-destkeystore",
                 str(pkcs12), "-deststoretype", "PKCS12", "-deststorepass:env", "KS_TEST_PW"], STORE_PW)
