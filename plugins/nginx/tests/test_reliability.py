"""nginx under stress, through the real ``tlsgate`` command: concurrent installs on two server
blocks of one file, symlinked sites (local and over sshd, install and rollback), and a
``tlsgate`` process killed by SIGKILL at each stage of an install (before the first write,
mid-write, during ``nginx -t``, during the reload), then found and restored."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from nginx_peer import NginxServer, nginx_binary, nginx_site
from tlsgate.probe import try_served_fingerprint
from tlsgate_testing.certs import TestCA
from tlsgate_testing.cli import settle
from tlsgate_testing.fixtures_core import free_port
from tlsgate_testing.interrupt import PauseBinary, die_at_env, tlsgate_cli

pytestmark = pytest.mark.slow


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(".tlsgate-*")]


def _setup(cli, conf: Path, name: str = "web") -> None:
    for args in (("tls", "add", "nginx", "--name", name, "--connection_type", "local", "--nginx_config_path", str(conf)),
                 ("org", "add", "acme"), ("tls", "delegate", name, "--org", "acme"), ("tls", "discover", name)):
        res = cli(*args)
        assert res.returncode == 0 or "already exists" in res.stderr, (args, res.stderr)


def _two_blocks(root: Path, ca: TestCA) -> tuple[Path, int, dict[str, object]]:
    """One file, two server blocks (a.test, b.test) on one TLS port."""
    for d in ("logs", "certs", *(f"temp/{t}" for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))):
        (root / d).mkdir(parents=True, exist_ok=True)
    port = free_port()
    issued = {n: ca.issue(n) for n in ("a.test", "b.test")}
    for n, c in issued.items():
        (root / "certs" / f"{n}.crt").write_bytes(c.cert_pem + c.chain_pem)
        (root / "certs" / f"{n}.key").write_bytes(c.key_pem)
    temps = "".join(f"    {d}_temp_path {root}/temp/{d};\n" for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    blocks = "".join(f"""    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {n};
        ssl_certificate certs/{n}.crt;
        ssl_certificate_key certs/{n}.key;
    }}
""" for n in issued)
    conf = root / "nginx.conf"
    conf.write_text(f"""worker_processes 1;
pid {root}/logs/nginx.pid;
error_log {root}/logs/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
{temps}{blocks}}}
""")
    return conf, port, issued  # type: ignore[return-value]


@pytest.fixture
def cli(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    return tlsgate_cli(home)


def test_concurrent_installs_on_two_blocks_of_one_file(tmp_path: Path, test_ca: TestCA, cli) -> None:
    """Four tlsgate processes at once, two per server block of one file: every run that says
    it installed is served and in the file; every run that failed left no edit behind; the
    audit log agrees with the exit statuses; the file still passes nginx -t."""
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    root = tmp_path / "nginx"
    conf, port, _old = _two_blocks(root, test_ca)
    server = NginxServer(root, conf, root / "logs" / "nginx.pid", [port])
    server.start()
    try:
        _setup(cli, conf)
        jobs = []
        for i, node in enumerate(["a.test", "b.test", "a.test", "b.test"]):
            new = test_ca.issue(node)
            crt, key, chain = new.write(tmp_path / f"in{i}", "n")
            jobs.append((node, new, cli.spawn("tls", "install", "web", "--cert", str(crt), "--key", str(key),
                                              "--chain", str(chain), "--node", node)))
        results = []
        for node, new, proc in jobs:
            out, err = proc.communicate(timeout=300)
            results.append((node, new, proc.returncode, out + err))
        text = conf.read_text()
        for _node, _new, rc, output in results:
            assert rc in (0, 1), output
            assert "Traceback" not in output
        served = {n: try_served_fingerprint("127.0.0.1", port, n) for n in ("a.test", "b.test")}
        for node in ("a.test", "b.test"):
            winners = [new for n, new, rc, _ in results if n == node and rc == 0]
            # the last successful install of a block is what it serves and what the file names
            if winners:
                assert served[node] in {w.fingerprint for w in winners}, (node, results)
                assert f"-{served[node][:12]}." in text
            for n, new, rc, output in results:
                if n == node and rc != 0 and "RESTORE INCOMPLETE" not in output:
                    assert new.fingerprint[:12] not in text, output  # "restored" means restored
        audit = json.loads(cli("log", "--json").stdout)
        ok = [e for e in audit if e["action"] == "tls install" and e["result"] == "ok"]
        assert len(ok) == sum(1 for *_, rc, _o in results if rc == 0)
        check = subprocess.run(server.argv("-t"), capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr
        assert not _temporaries(root)
    finally:
        server.stop()


def test_symlinked_site_stays_a_link_local_install_and_rollback(tmp_path: Path, nginx_server, test_ca, cli) -> None:
    """Debian's layout: sites-enabled/x.conf -> ../sites-available/x.conf. The install edits the
    target, the link stays a link; a failed install restores the target, link still a link."""
    site, _server = nginx_server
    enabled, target = _link_layout(site)
    original = target.read_bytes()
    _setup(cli, site.config)
    new = test_ca.issue("gamma.test")
    crt, key, chain = new.write(tmp_path / "in", "g")
    # --apply-pending: the layout (and below, the broken file) are written after nginx started and
    # are meant to be applied; without it, a slow machine (over a second between the write and
    # the install) makes the pending-change check refuse first, which is not what this tests
    done = cli("tls", "install", "web", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
               "--node", "gamma.test", "--apply-pending")
    assert done.returncode == 0, done.stderr
    assert enabled.is_symlink() and os.readlink(enabled) == "../sites-available/gamma.conf"
    assert target.read_bytes() != original and new.fingerprint[:12].encode() in target.read_bytes()
    assert try_served_fingerprint("127.0.0.1", site.tls_port, "gamma.test") == new.fingerprint

    edited = target.read_bytes()
    (site.prefix / "conf.d" / "30-broken.conf").write_text("no_such_directive on;\n")
    newer = test_ca.issue("gamma.test")
    crt2, key2, chain2 = newer.write(tmp_path / "in2", "g")
    # the broken file is a pending change: applied on purpose, nginx -t catches it
    failed = cli("tls", "install", "web", "--cert", str(crt2), "--key", str(key2), "--chain", str(chain2),
                 "--node", "gamma.test", "--apply-pending")
    assert failed.returncode == 1 and "restored" in failed.stderr, failed.stderr
    assert enabled.is_symlink() and target.read_bytes() == edited


@pytest.fixture
def full_disk(tmp_path: Path):
    """A directory on a tmpfs of 8 KiB that is already full (needs root, as the suite runs)."""
    where = tmp_path / "full"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        with contextlib.suppress(OSError):
            (where / "filler").write_bytes(b"x" * 65536)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_disk_full_under_certs_dir_names_the_file_and_restores(tmp_path: Path, test_ca: TestCA, cli,
                                                                full_disk: Path) -> None:
    """--certs_dir on a full file system: the install fails, its error names the file it could
    not write and why (as a read error does), everything is restored, nothing is left behind."""
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    root = tmp_path / "nginx"
    conf, port, old = _two_blocks(root, test_ca)
    server = NginxServer(root, conf, root / "logs" / "nginx.pid", [port])
    server.start()
    try:
        assert cli("tls", "add", "nginx", "--name", "web", "--connection_type", "local", "--nginx_config_path",
                   str(conf), "--certs_dir", str(full_disk)).returncode == 0
        _setup(cli, conf)
        before = conf.read_bytes()
        crt, key, chain = test_ca.issue("a.test").write(tmp_path / "in", "a")
        failed = cli("tls", "install", "web", "--cert", str(crt), "--key", str(key), "--chain", str(chain))
        assert failed.returncode == 1, failed.stderr
        assert "every change was restored" in failed.stderr
        assert f"localhost: {full_disk}/tlsgate-a.test-" in failed.stderr, failed.stderr
        assert "no space left on device" in failed.stderr.lower()
        assert "OSError" not in failed.stderr and "Errno" not in failed.stderr, failed.stderr
        assert conf.read_bytes() == before
        assert _temporaries(root) == [] and sorted(p.name for p in full_disk.iterdir()) == ["filler"]
        assert try_served_fingerprint("127.0.0.1", port, "a.test") == old["a.test"].fingerprint  # type: ignore[attr-defined]
    finally:
        server.stop()


def _link_layout(site) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    enabled = site.prefix / "sites enabled" / "gamma.conf"
    (site.prefix / "sites-available").mkdir()
    target = site.prefix / "sites-available" / "gamma.conf"
    target.write_bytes(enabled.read_bytes())
    enabled.unlink()
    enabled.symlink_to(Path("..") / "sites-available" / "gamma.conf")
    return enabled, target


def test_symlinked_site_over_ssh(nginx_server, sshd, tlsgate_home: Path, tmp_path: Path, test_ca: TestCA,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The same layout over a real sshd (SFTP): install and rollback keep the link a link."""
    from tlsgate import CertificateBundle, ConnectionSpec, Credentials, Endpoint, OperationError
    from tlsgate.policy import InstallPolicy, policy
    from tlsgate_nginx import plugin
    from tlsgate_nginx.plugin import NginxOptions
    from tlsgate_testing.connections import ssh

    site, _server = nginx_server
    monkeypatch.setenv("HOME", str(tmp_path))  # never the real ~/.ssh/known_hosts
    ssh.trust_host_key(sshd.host, sshd.port, sshd.host_key_public)
    enabled, target = _link_layout(site)
    ep = Endpoint(name="nginx-ssh", type="nginx",
                  connection=ConnectionSpec(type="ssh", host=sshd.host, port=sshd.port, user="root"),
                  options=NginxOptions(nginx_config_path=str(site.config)))
    with ssh.connect_ssh(ep, Credentials(ssh_key_path=str(sshd.root_key.path))) as conn:
        gamma = [n for n in plugin.discover_nodes(ep, conn) if n.name == "gamma.test"]
        new = test_ca.issue("gamma.test")
        with policy(InstallPolicy(apply_pending=True)):  # the layout was written after nginx started
            plugin.install(ep, conn, CertificateBundle.from_pem(new.cert_pem, new.key_pem, new.chain_pem), gamma,
                           False)
        assert enabled.is_symlink() and new.fingerprint[:12].encode() in target.read_bytes()
        assert try_served_fingerprint("127.0.0.1", site.tls_port, "gamma.test") == new.fingerprint
        edited = target.read_bytes()
        (site.prefix / "conf.d" / "30-broken.conf").write_text("no_such_directive on;\n")
        newer = test_ca.issue("gamma.test")
        with pytest.raises(OperationError, match="restored"), policy(InstallPolicy(apply_pending=True)):
            plugin.install(ep, conn, CertificateBundle.from_pem(newer.cert_pem, newer.key_pem, newer.chain_pem),
                           gamma, False)
        assert enabled.is_symlink() and target.read_bytes() == edited


STAGES = {
    # stage: how to stop there, whether files changed by then
    "before-first-write": ("die", ("open", 1), False),
    "mid-write": ("die", ("rename", 3), True),  # key and certificate in place, config not yet
    "config-test": ("pause", "test", True),
    "reload": ("pause", "reload", True),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_killed_install_is_found_and_restored(stage: str, tmp_path: Path, test_ca: TestCA, cli) -> None:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    how, arg, changes = STAGES[stage]
    wrapper = PauseBinary(tmp_path / "wrap", nginx_binary() or "nginx",
                          {"test": ("-t", False), "reload": ("-s reload", True)})
    site = nginx_site(tmp_path / "nginx", test_ca)
    server = NginxServer(site.prefix, site.config, site.pid_file, [site.http_port, site.tls_port, site.tls_port2])
    server.binary = str(wrapper.path)
    server.start()
    try:
        _setup(cli, site.config)
        before = site.snapshot()
        old_fp = site.certs["beta.test"].fingerprint
        new = test_ca.issue("beta.test")
        crt, key, chain = new.write(tmp_path / "in", "new")
        args = ("tls", "install", "web", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
                "--node", "beta.test")
        if how == "die":
            proc = cli.spawn(*args, env=die_at_env(tmp_path / "die", *arg))
            proc.communicate(timeout=180)
        else:
            wrapper.pause(arg)
            proc = cli.spawn(*args)
            wrapper.wait_at(arg, proc)
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
            wrapper.release(arg)
        assert proc.returncode == -signal.SIGKILL

        sets = json.loads(cli("backup", "list", "--json").stdout)
        assert [s["state"] for s in sets] == ["unfinished"], sets
        backup_id = sets[0]["id"]
        journal = [e for e in json.loads(cli("log", "--json").stdout) if e["action"] == "tls install"]
        assert [e["result"] for e in journal] == ["started"] and journal[0]["details"]["backup"] == backup_id

        if not changes:
            # nothing was changed: the next job closes the set, and goes on
            again = cli(*args)
            assert again.returncode == 0, again.stderr
            assert try_served_fingerprint("127.0.0.1", site.tls_port, "beta.test") == new.fingerprint
            results = [e["result"] for e in json.loads(cli("log", "--json").stdout) if e["action"] == "tls install"]
            assert results == ["started", "interrupted", "started", "ok"]
            assert not _temporaries(site.prefix)
            return

        # the next job on the endpoint refuses, naming the set and the command
        refused = cli("tls", "restart", "web")
        assert refused.returncode == 1 and f"tlsgate backup restore {backup_id}" in refused.stderr, refused.stderr
        restored = cli("backup", "restore", backup_id)
        assert restored.returncode == 0, restored.stderr
        assert site.snapshot() == before  # every file as it was, new files gone
        assert not _temporaries(site.prefix)
        assert cli("tls", "restart", "web").returncode == 0
        server.reload()
        assert try_served_fingerprint("127.0.0.1", site.tls_port, "beta.test") == old_fp
        assert json.loads(cli("backup", "list", "--json").stdout)[0]["state"] == "restored"
        # and the endpoint works again
        again = cli(*args)
        assert again.returncode == 0, again.stderr
        assert try_served_fingerprint("127.0.0.1", site.tls_port, "beta.test") == new.fingerprint
    finally:
        for s in ("test", "reload"):
            wrapper.release(s)
        server.stop()


def test_ctrl_c_after_the_reload_reloads_the_restored_files(tmp_path: Path, test_ca: TestCA, cli) -> None:
    """Ctrl-C while ``nginx -s reload`` runs (nginx has the signal, tlsgate waits for the command):
    the files are restored, and nginx is reloaded again with them, so it serves the old certificate
    (not the new one from files that no longer exist), and the next install works."""
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    wrapper = PauseBinary(tmp_path / "wrap", nginx_binary() or "nginx", {"reload": ("-s reload", True)})
    site = nginx_site(tmp_path / "nginx", test_ca)
    server = NginxServer(site.prefix, site.config, site.pid_file, [site.http_port, site.tls_port, site.tls_port2])
    server.binary = str(wrapper.path)
    server.start()
    try:
        _setup(cli, site.config)
        before = site.snapshot()
        old_fp = site.certs["beta.test"].fingerprint
        new = test_ca.issue("beta.test")
        crt, key, chain = new.write(tmp_path / "in", "new")
        args = ("tls", "install", "web", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
                "--node", "beta.test")
        wrapper.pause("reload")
        proc = cli.spawn(*args)
        wrapper.wait_at("reload", proc)
        (wrapper.dir / "pause-reload").unlink()  # the rollback's own reload does not stop
        os.kill(proc.pid, signal.SIGINT)
        proc.communicate(timeout=60)
        assert proc.returncode in (130, -signal.SIGINT)
        assert site.snapshot() == before
        assert try_served_fingerprint("127.0.0.1", site.tls_port, "beta.test") == old_fp
        again = cli(*args)
        assert again.returncode == 0, again.stderr
        assert try_served_fingerprint("127.0.0.1", site.tls_port, "beta.test") == new.fingerprint
    finally:
        wrapper.release("reload")
        server.stop()


def test_ctrl_c_in_a_reinstall_of_the_served_certificate_leaves_nothing_pending(
        tmp_path: Path, test_ca: TestCA, cli) -> None:
    """Installing again the certificate a block already serves from tlsgate's files writes the
    same bytes (same file names, same config); Ctrl-C before the reload rolls it back, and the
    next install is not refused for changes nginx "has not loaded" (the files' old mtimes are back)."""
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    wrapper = PauseBinary(tmp_path / "wrap", nginx_binary() or "nginx", {"test": ("-t", False)})
    site = nginx_site(tmp_path / "nginx", test_ca)
    server = NginxServer(site.prefix, site.config, site.pid_file, [site.http_port, site.tls_port, site.tls_port2])
    server.binary = str(wrapper.path)
    server.start()
    try:
        _setup(cli, site.config)
        crt, key, chain = test_ca.issue("beta.test").write(tmp_path / "in", "new")
        args = ("tls", "install", "web", "--cert", str(crt), "--key", str(key), "--chain", str(chain),
                "--node", "beta.test")
        done = cli(*args)
        assert done.returncode == 0, done.stderr
        server.reload()  # nginx has loaded everything: nothing is pending
        settle()
        before = {p: (data, round(p.stat().st_mtime, 3)) for p, data in site.snapshot().items()}
        wrapper.pause("test")
        proc = cli.spawn(*args)
        wrapper.wait_at("test", proc)
        (wrapper.dir / "pause-test").unlink()
        os.kill(proc.pid, signal.SIGINT)
        proc.communicate(timeout=60)
        wrapper.release("test")
        assert proc.returncode in (130, -signal.SIGINT)
        assert {p: (data, round(p.stat().st_mtime, 3)) for p, data in site.snapshot().items()} == before
        other = test_ca.issue("beta.test")
        crt2, key2, chain2 = other.write(tmp_path / "in2", "new")
        again = cli("tls", "install", "web", "--cert", str(crt2), "--key", str(key2), "--chain", str(chain2),
                    "--node", "beta.test")
        assert again.returncode == 0, again.stderr
        assert try_served_fingerprint("127.0.0.1", site.tls_port, "beta.test") == other.fingerprint
    finally:
        wrapper.release("test")
        server.stop()


def test_restart_starts_an_nginx_that_is_not_running(tmp_path: Path, test_ca: TestCA, cli) -> None:
    # tls restart of a stopped nginx was "nginx is not running ...; nothing to reload" (exit 1),
    # where Apache and Tomcat start a stopped server
    conf, port, issued = _two_blocks(tmp_path / "n", test_ca)
    server = NginxServer(tmp_path / "n", conf, tmp_path / "n" / "logs" / "nginx.pid", [port])
    _setup(cli, conf)
    try:
        res = cli("tls", "restart", "web")
        assert res.returncode == 0, res.stderr
        assert "was not running" in res.stdout and "started" in res.stdout, res.stdout
        assert server.pid is not None
        assert try_served_fingerprint("127.0.0.1", port, "a.test") == issued["a.test"].fingerprint  # type: ignore[attr-defined]
        # running now: the next restart reloads it
        again = cli("tls", "restart", "web")
        assert again.returncode == 0 and "reloaded" in again.stdout, again.stdout + again.stderr
    finally:
        server.stop()
    # a configuration its supervisor runs in the foreground is not started behind its back
    conf.write_text(conf.read_text().replace("worker_processes 1;", "worker_processes 1;\ndaemon off;"))
    refused = cli("tls", "restart", "web")
    assert refused.returncode == 1 and "'daemon off'" in refused.stderr, refused.stderr
    assert try_served_fingerprint("127.0.0.1", port, "a.test") is None  # nothing listens: not started
    # without a pid file whether an nginx runs cannot be told: none is started beside it
    conf.write_text(conf.read_text().replace("daemon off;", "").replace(f"pid {tmp_path / 'n'}/logs/nginx.pid;", "pid off;"))
    assert "pid off;" in conf.read_text()
    refused = cli("tls", "restart", "web")
    assert refused.returncode == 1 and "'pid off'" in refused.stderr, refused.stderr
    assert try_served_fingerprint("127.0.0.1", port, "a.test") is None
