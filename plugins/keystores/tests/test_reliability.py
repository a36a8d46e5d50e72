"""p12 keystores under stress, through the real ``tlsgate`` command: many installs at once on
one keystore; a keystore path that is a symlink (local and over sshd, install and rollback); a
process killed mid-write and during the install script; a failing install script; honest
output and audit; aliases that scripts would read as options."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from tlsgate import ConnectionSpec, Credentials, Endpoint, OperationError, Secret, Transaction
from tlsgate_keystores import p12_codec
from tlsgate_testing.certs import Issued, TestCA
from tlsgate_testing.connections import ssh
from tlsgate_testing.interrupt import die_at_env, tlsgate_cli
from tlsgate_testing.sshd import SshdServer

pytestmark = pytest.mark.slow
PW = "changeit"


@pytest.fixture
def cli(tmp_path: Path) -> Any:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    return tlsgate_cli(home)


def _aliases(path: Path) -> dict[str, str]:
    """alias -> leaf fingerprint, read with the codec (and cryptography's reader as a check)."""
    from cryptography.hazmat.primitives.serialization import pkcs12
    from tlsgate import certs

    data = path.read_bytes()
    pkcs12.load_pkcs12(data, PW.encode())
    store = p12_codec.load(data, PW)
    return {e.alias: certs.fingerprint(e.leaf) for e in store.entries}


def _endpoint(cli: Any, path: Path, *extra: str, name: str = "ks") -> None:
    add = cli("tls", "add", "p12", "--name", name, "--connection_type", "local", "--path", str(path),
              "--store_password", PW, "--is_legacy", "true", *extra)
    assert add.returncode == 0, add.stderr
    assert cli("org", "add", "acme").returncode in (0, 2)
    assert cli("tls", "delegate", name, "--org", "acme").returncode == 0


def _inputs(issued: Issued, directory: Path) -> list[str]:
    crt, key, chain = issued.write(directory, "in")
    return ["--cert", str(crt), "--key", str(key), "--chain", str(chain)]


def test_many_installs_at_once_on_one_keystore(tmp_path: Path, test_ca: TestCA, leaf_a: Issued, cli: Any) -> None:
    """Eight tlsgate processes install eight aliases into one p12 at once. Every run that
    exits 0 has its entry in the file; every run that does not left no entry; the audit log,
    the certificates and the nodes agree with the file; no temporary is left."""
    store = tmp_path / "shared.p12"
    store.write_bytes(leaf_a.pfx(PW))
    _endpoint(cli, store)
    issued = [test_ca.issue(f"c{i}.example") for i in range(8)]
    procs = [cli.spawn("tls", "install", "ks", *_inputs(c, tmp_path / f"in{i}"), "--alias", f"a{i}")
             for i, c in enumerate(issued)]
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        outcomes.append((proc.returncode, out + err))
    entries = _aliases(store)
    for i, (rc, output) in enumerate(outcomes):
        assert "Traceback" not in output
        if rc == 0:
            assert entries.get(f"a{i}") == issued[i].fingerprint, (i, output, entries)
        else:  # a failure says what it left: restored (no entry) or RESTORE INCOMPLETE
            assert rc == 1, (i, output)
            assert f"a{i}" not in entries or "RESTORE INCOMPLETE" in output, (i, output, entries)
    assert any(rc == 0 for rc, _ in outcomes)
    audit = json.loads(cli("log", "--json").stdout)
    ok = [e for e in audit if e["action"] == "tls install" and e["result"] == "ok"]
    assert sorted(e["after"] for e in ok) == sorted(issued[i].fingerprint for i, (rc, _) in enumerate(outcomes) if rc == 0)
    cert_fps = {c["fingerprint"] for c in json.loads(cli("cert", "list", "--json").stdout)}
    assert {e["after"] for e in ok} <= cert_fps
    nodes = {n["name"]: n["fingerprint"] for n in json.loads(cli("tls", "nodes", "ks", "--json").stdout)}
    last = max(ok, key=lambda e: e["id"])
    # the nodes were stored by the last successful run's re-discovery: a subset of the file
    assert {k: v for k, v in nodes.items()}.items() <= entries.items() and last["after"] in nodes.values()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tlsgate-")]


def test_keystore_symlink_stays_a_link_local(tmp_path: Path, leaf_a: Issued, leaf_b: Issued, cli: Any) -> None:
    real = tmp_path / "real"
    real.mkdir()
    target = real / "app.p12"
    target.write_bytes(leaf_a.pfx(PW))
    link = tmp_path / "app.p12"
    link.symlink_to(target)
    _endpoint(cli, link)
    done = cli("tls", "install", "ks", *_inputs(leaf_b, tmp_path / "in"), "--alias", "web")
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert _aliases(target)["web"] == leaf_b.fingerprint


def test_transaction_rollback_through_a_link_local(tmp_path: Path) -> None:
    from tlsgate_testing.connections import LocalConnection

    target = tmp_path / "t.p12"
    target.write_bytes(b"original")
    link = tmp_path / "l.p12"
    link.symlink_to(target)
    with pytest.raises(OperationError, match="restored"), Transaction(LocalConnection()) as tx:
        tx.write(str(link), b"new")
        assert target.read_bytes() == b"new" and link.is_symlink()
        raise RuntimeError("verification failed")
    assert link.is_symlink() and target.read_bytes() == b"original"


def test_keystore_symlink_over_ssh_install_and_rollback(registry: Any, sshd: SshdServer, tlsgate_home: Path,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        leaf_a: Issued, leaf_b: Issued, kt: Any) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    ssh.trust_host_key(sshd.host, sshd.port, sshd.host_key_public)
    base = Path(sshd.user_path(f"links-{tmp_path.name[:30]}"))
    (base / "real").mkdir(parents=True)
    target = base / "real" / "app.p12"
    target.write_bytes(leaf_a.pfx(PW))
    link = base / "app.p12"
    link.symlink_to(Path("real") / "app.p12")
    for p in (base, base / "real", target):
        os.chown(p, sshd.uid, sshd.gid)
    os.lchown(link, sshd.uid, sshd.gid)
    et = registry.endpoint_types["p12"]
    ep = Endpoint(name="remote", type="p12", connection=ConnectionSpec("ssh", host=sshd.host, port=sshd.port,
                  user=sshd.user), options=et.options(path=str(link), store_password=Secret(PW), is_legacy=True))
    try:
        with ssh.connect_ssh(ep, Credentials(user=sshd.user, password=Secret(sshd.password))) as conn:
            registry.install(ep, conn, kt.bundle_of(leaf_b), [], dry_run=False, alias="web")
            assert link.is_symlink() and _aliases(target)["web"] == leaf_b.fingerprint
            installed = target.read_bytes()
            with pytest.raises(OperationError, match="restored"), Transaction(conn) as tx:
                tx.write(str(link), b"half")
                raise RuntimeError("verification failed")
            assert link.is_symlink() and target.read_bytes() == installed
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_killed_mid_write_leaves_no_temporary_after_next_job(tmp_path: Path, leaf_a: Issued, leaf_b: Issued,
                                                             cli: Any) -> None:
    """SIGKILL with the new keystore complete in its temporary, before the rename: the target is
    untouched; the next job removes the temporary (a full copy of the new keystore), closes the
    journal as interrupted, and installs."""
    store = tmp_path / "app.p12"
    store.write_bytes(leaf_a.pfx(PW))
    before = store.read_bytes()
    _endpoint(cli, store)
    args = ("tls", "install", "ks", *_inputs(leaf_b, tmp_path / "in"), "--alias", "web")
    proc = cli.spawn(*args, env=die_at_env(tmp_path / "die", "rename", 1))
    proc.communicate(timeout=180)
    assert proc.returncode == -signal.SIGKILL
    assert store.read_bytes() == before
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".tlsgate-")]
    assert len(left) == 1 and left[0].stat().st_size > 0
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tlsgate-")]
    results = [e["result"] for e in json.loads(cli("log", "--json").stdout) if e["action"] == "tls install"]
    assert results == ["started", "interrupted", "started", "ok"]


def _slow_script(tmp_path: Path, flag: Path | None = None) -> tuple[Path, Path]:
    """An install script that writes its pid to a marker and sleeps (only while ``flag``
    exists, when given): a tlsgate process can be killed while it runs. (script, marker)"""
    marker = tmp_path / "script-running"
    script = tmp_path / "slow.sh"
    body = f"echo $$ > {marker}.tmp; mv {marker}.tmp {marker}; sleep 120"
    script.write_text(f"#!/bin/sh\nif [ -e {flag} ]; then {body}; fi\nexit 0\n" if flag else f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return script, marker


def _kill_in_script(proc: subprocess.Popen[str], marker: Path) -> None:
    """SIGKILL ``proc`` once its install script runs, then the script's sleep (which we made)."""
    end = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < end, proc.communicate()
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    os.kill(int(marker.read_text()), signal.SIGKILL)


def _install_killed_in_script(tmp_path: Path, leaf_a: Issued, leaf_b: Issued, cli: Any) -> tuple[Path, bytes]:
    """A p12 endpoint whose ``tls install`` was SIGKILLed in its install script (the keystore
    already written); returns the keystore's path and its bytes before the install."""
    store = tmp_path / "app.p12"
    store.write_bytes(leaf_a.pfx(PW))
    before = store.read_bytes()
    script, marker = _slow_script(tmp_path)
    _endpoint(cli, store, "--install_script", str(script))
    _kill_in_script(cli.spawn("tls", "install", "ks", *_inputs(leaf_b, tmp_path / "in"), "--alias", "web"), marker)
    return store, before


def test_killed_during_install_script_is_found_and_restored(tmp_path: Path, leaf_a: Issued, leaf_b: Issued,
                                                            cli: Any) -> None:
    store, before = _install_killed_in_script(tmp_path, leaf_a, leaf_b, cli)
    sets = json.loads(cli("backup", "list", "--json").stdout)
    assert [s["state"] for s in sets] == ["unfinished"]
    refused = cli("tls", "install", "ks", *_inputs(leaf_b, tmp_path / "in"), "--alias", "web")
    assert refused.returncode == 1 and f"backup restore {sets[0]['id']}" in refused.stderr, refused.stderr
    restored = cli("backup", "restore", sets[0]["id"], "--json")
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["restored"] == [str(store)]
    assert store.read_bytes() == before


def test_failing_install_script_keeps_the_install_recorded(tmp_path: Path, leaf_a: Issued, leaf_b: Issued,
                                                           cli: Any) -> None:
    store = tmp_path / "app.p12"
    store.write_bytes(leaf_a.pfx(PW))
    script = tmp_path / "fail.sh"
    script.write_text("#!/bin/sh\necho 'reload refused: boom' >&2\nexit 3\n")
    script.chmod(0o755)
    _endpoint(cli, store, "--install_script", str(script))
    res = cli("tls", "install", "ks", *_inputs(leaf_b, tmp_path / "in"), "--alias", "web")
    assert res.returncode == 1
    assert "Installed certificate" in res.stdout
    assert "warning:" in res.stderr and "exited 3" in res.stderr and "boom" in res.stderr
    assert _aliases(store)["web"] == leaf_b.fingerprint
    assert leaf_b.fingerprint in {c["fingerprint"] for c in json.loads(cli("cert", "list", "--json").stdout)}
    nodes = {n["name"]: n["fingerprint"] for n in json.loads(cli("tls", "nodes", "ks", "--json").stdout)}
    assert nodes.get("web") == leaf_b.fingerprint
    entry = [e for e in json.loads(cli("log", "--json").stdout) if e["action"] == "tls install"][-1]
    assert entry["result"] == "script failed" and entry["after"] == leaf_b.fingerprint


def test_keystore_output_says_what_was_verified_and_audit_has_before(tmp_path: Path, test_ca: TestCA,
                                                                     leaf_a: Issued, cli: Any) -> None:
    store = tmp_path / "app.p12"
    store.write_bytes(leaf_a.pfx(PW))
    _endpoint(cli, store)
    assert cli("tls", "discover", "ks").returncode == 0
    alias = json.loads(cli("tls", "nodes", "ks", "--json").stdout)[0]["name"]
    new = test_ca.issue("a.example.org")
    res = cli("tls", "install", "ks", *_inputs(new, tmp_path / "in"), "--alias", alias)
    assert res.returncode == 0, res.stderr
    assert "TLS handshake" not in res.stdout and f"entry {alias!r} holds the new certificate" in res.stdout
    entry = [e for e in json.loads(cli("log", "--json").stdout) if e["action"] == "tls install"][-1]
    assert entry["before"] == leaf_a.fingerprint and entry["after"] == new.fingerprint


@pytest.mark.parametrize("alias", ["-rf", "--help", "   "])
def test_aliases_scripts_would_misread_are_refused(tmp_path: Path, leaf_a: Issued, leaf_b: Issued, cli: Any,
                                                   alias: str) -> None:
    store = tmp_path / "app.p12"
    store.write_bytes(leaf_a.pfx(PW))
    before = store.read_bytes()
    _endpoint(cli, store)
    res = cli("tls", "install", "ks", *_inputs(leaf_b, tmp_path / "in"), f"--alias={alias}")
    assert res.returncode == 2 and res.stderr.startswith("error: --alias: "), res.stderr
    assert store.read_bytes() == before


def test_a_retried_job_restores_its_own_dead_attempt_another_job_refuses(tmp_path: Path, leaf_a: Issued,
                                                                          leaf_b: Issued, test_ca: TestCA,
                                                                          cli: Any) -> None:
    """A ``cert deploy`` killed (SIGKILL) in the install script, the keystore already written. Its
    unfinished backup set is foreign to a lone ``tls install`` and to another deploy (both refuse,
    naming the set); ``job retry`` of the same job owns it: the originals go back first, then one
    install runs to its end."""
    store = tmp_path / "app.p12"
    store.write_bytes(leaf_a.pfx(PW))
    flag = tmp_path / "slow"
    flag.touch()
    script, marker = _slow_script(tmp_path, flag)
    _endpoint(cli, store, "--install_script", str(script))
    inputs = _inputs(leaf_b, tmp_path / "in")
    _kill_in_script(cli.spawn("cert", "deploy", *inputs, "--endpoint", "ks"), marker)
    flag.unlink()
    written = store.read_bytes()
    assert _aliases(store)  # whole: the new keystore, never a half-written one
    (job,) = json.loads(cli("job", "list", "--json").stdout)
    assert job["state"] == "interrupted"
    (unfinished,) = json.loads(cli("backup", "list", "--json").stdout)
    assert unfinished["state"] == "unfinished"

    lone = cli("tls", "install", "ks", *inputs)
    other = cli("cert", "deploy", *_inputs(test_ca.issue("c.example.org"), tmp_path / "c"), "--endpoint", "ks")
    for res in (lone, other):
        assert res.returncode == 1 and f"backup restore {unfinished['id']}" in res.stdout + res.stderr, res
    assert store.read_bytes() == written  # refused before anything was touched

    retried = cli("job", "retry", str(job["id"]), "--json")
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["state"] == "done"
    assert leaf_b.fingerprint in _aliases(store).values()
    log = json.loads(cli("log", "--json").stdout)
    assert [e["result"] for e in log if e["action"] == "tls install" and e["result"] != "started"][-1:] == ["ok"]
    restore = [e for e in log if e["action"] == "backup restore"]
    assert [(e["result"], e["details"]["retry_of"], e["details"]["restored"]) for e in restore] == [
        ("restored", job["id"], [str(store)])]
    assert {s["state"] for s in json.loads(cli("backup", "list", "--json").stdout)} == {"restored", "ok"}


def test_a_failed_restore_leaves_the_set_unfinished(tmp_path: Path, leaf_a: Issued, leaf_b: Issued,
                                                    cli: Any) -> None:
    """``backup restore`` that cannot put a file back (here the keystore's path became a
    directory) fails and the set stays ``unfinished``: the next job still refuses, and a later
    restore, once the cause is gone, completes."""
    store, before = _install_killed_in_script(tmp_path, leaf_a, leaf_b, cli)
    (backup,) = json.loads(cli("backup", "list", "--json").stdout)
    written = store.read_bytes()
    store.unlink()
    store.mkdir()
    failed = cli("backup", "restore", backup["id"])
    assert failed.returncode == 1, failed.stderr
    assert [s["state"] for s in json.loads(cli("backup", "list", "--json").stdout)] == ["unfinished"]
    store.rmdir()
    store.write_bytes(written)
    refused = cli("tls", "install", "ks", *_inputs(leaf_b, tmp_path / "in"), "--alias", "web")
    assert refused.returncode == 1 and f"backup restore {backup['id']}" in refused.stderr, refused.stderr
    assert cli("backup", "restore", backup["id"]).returncode == 0
    assert store.read_bytes() == before
    assert [s["state"] for s in json.loads(cli("backup", "list", "--json").stdout)] == ["restored"]
