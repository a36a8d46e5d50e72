"""SSH as operators run it, against the real sshd fixtures and the real Debian sudo: a non-root
account with sudo (NOPASSWD and password rules written by the test under /etc/sudoers.d and
removed after), bastions (a second sshd in front, the endpoint on 127.0.0.2), an ssh-agent, and
~/.ssh/config host aliases."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlsgate import ConnectionFailed, ConnectionSpec, Credentials, Endpoint, HostKeyError, OperationError, Secret
from tlsgate.transports import ssh
from tlsgate.transports.ssh_route import Hop, format_jump, parse_hop, parse_jump
from tlsgate.transports.ssh_sudo import classify, sudo_argv, sudo_command_line
from tlsgate_testing.sshd import SshdServer, readme_commands, sudo_commands, sudoers_rule

from .conftest import ssh_endpoint

pytestmark = pytest.mark.slow



def sudo_conn(server: SshdServer, *, password: str | None = None, sudo: bool = True) -> ssh.SSHConnection:
    extra: dict[str, object] = {"sudo": sudo}
    if password is not None:
        extra["sudo_password"] = Secret(password)
    creds = Credentials(ssh_key_path=str(server.keys["ecdsa"].path))
    return ssh.connect_ssh(ssh_endpoint(server, **extra), creds)


@pytest.fixture
def root_dir() -> Iterator[Path]:
    """A directory only root may write (as /etc/nginx), with a root-owned file of group 4 (adm)."""
    directory = Path(tempfile.mkdtemp(prefix="tlsgate-rootdir-"))
    directory.chmod(0o755)
    existing = directory / "site.conf"
    existing.write_bytes(b"old\n")
    os.chown(existing, 0, 4)
    existing.chmod(0o640)
    secret = directory / "server.key"
    secret.write_bytes(b"\x00\xffroot only\n")
    secret.chmod(0o600)
    yield directory
    subprocess.run(["rm", "-rf", "--", str(directory)], check=False)


def leftovers(*dirs: Path) -> list[str]:
    return [p.name for d in dirs for p in d.iterdir() if p.name.startswith(".tlsgate-")]


# -- sudo: NOPASSWD rule limited to the needed commands ------------------------------------------
def test_nopasswd_rule_runs_privileged_commands_and_refuses_others(trusted: SshdServer) -> None:
    with sudoers_rule(f"{trusted.user} ALL=(root) NOPASSWD: {sudo_commands('id')}"), sudo_conn(trusted) as conn:
        assert conn.escalation == "sudo"
        assert conn.run(["id", "-u"]).stdout.strip() == str(trusted.uid)  # unmarked: as the account
        assert conn.run(["id", "-u"], privileged=True).stdout.strip() == "0"
        with pytest.raises(OperationError) as excinfo:
            conn.run(["whoami"], privileged=True)
        assert str(excinfo.value) == (f"sudo: a password is required for `whoami` on {trusted.host} "
                                      "(give --sudo_password or a NOPASSWD rule)")
        assert conn.sudo_allows(["id", "-u"]) is True
        assert conn.sudo_allows(["whoami"]) is False


def test_writes_and_reads_through_sudo_keep_owner_group_and_mode(trusted: SshdServer, root_dir: Path) -> None:
    rule = f"{trusted.user} ALL=(root) NOPASSWD: {sudo_commands('install', 'mv', 'rm', 'cat')}"
    existing, secret, new = root_dir / "site.conf", root_dir / "server.key", root_dir / "new.pem"
    with sudoers_rule(rule), sudo_conn(trusted) as conn:
        assert conn.write_needs_privilege(str(existing)) and conn.write_needs_privilege(str(new))
        conn.write_file(str(existing), b"new content\n", mode=0o640)
        conn.write_file(str(new), b"-----BEGIN X-----\n", mode=0o600)
        assert conn.read_file(str(secret)) == b"\x00\xffroot only\n"  # plain read refused: sudo cat
        conn.remove(str(new))
    assert existing.read_bytes() == b"new content\n"
    st_existing = existing.stat()
    assert (st_existing.st_uid, st_existing.st_gid, st_existing.st_mode & 0o7777) == (0, 4, 0o640)
    assert not new.exists()
    assert leftovers(root_dir, trusted.home) == []


def test_new_file_through_sudo_belongs_to_root_with_the_given_mode(trusted: SshdServer, root_dir: Path) -> None:
    rule = f"{trusted.user} ALL=(root) NOPASSWD: {sudo_commands('install', 'mv')}"
    new = root_dir / "fresh.key"
    with sudoers_rule(rule), sudo_conn(trusted) as conn:
        conn.write_file(str(new), b"key\n", mode=0o600)
    st_new = new.stat()
    assert (st_new.st_uid, st_new.st_gid, st_new.st_mode & 0o7777) == (0, 0, 0o600)


def test_write_outside_the_rule_fails_clearly_and_changes_nothing(trusted: SshdServer, root_dir: Path) -> None:
    rule = f"{trusted.user} ALL=(root) NOPASSWD: {sudo_commands('install', 'rm')}"  # no mv
    before = {p.name: p.read_bytes() for p in root_dir.iterdir()}
    with sudoers_rule(rule), sudo_conn(trusted) as conn, pytest.raises(OperationError) as excinfo:
        conn.write_file(str(root_dir / "site.conf"), b"new\n", mode=0o640)
    assert "sudo: a password is required for `mv -f --" in str(excinfo.value)
    assert {p.name: p.read_bytes() for p in root_dir.iterdir()} == before  # the install temp is gone too
    assert leftovers(trusted.home) == []


def test_without_sudo_the_permission_error_names_the_file_and_the_fix(trusted: SshdServer, root_dir: Path) -> None:
    target = root_dir / "site.conf"
    before = {p.name: p.read_bytes() for p in root_dir.iterdir()}
    with sudo_conn(trusted, sudo=False) as conn:
        assert conn.escalation is None
        with pytest.raises(OperationError) as excinfo:
            conn.write_file(str(target), b"new\n")
        assert str(excinfo.value) == (f"{trusted.host}: permission denied writing {target} as {trusted.user} "
                                      "(use --sudo, or give the group write permission)")
        with pytest.raises(OperationError, match=r"permission denied reading .*server\.key as tlsgate-test \(use --sudo"):
            conn.read_file(str(root_dir / "server.key"))
        # a command marked privileged runs as the account when there is no --sudo
        assert conn.run(["id", "-u"], privileged=True).stdout.strip() == str(trusted.uid)
    assert {p.name: p.read_bytes() for p in root_dir.iterdir()} == before


# -- sudo with a password ------------------------------------------------------------------------
class ArgvSampler:
    """Reads every process's /proc/<pid>/cmdline in a loop while a test runs."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if entry.name.isdigit():
                    try:
                        with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                            self.seen.add(fh.read())
                    except OSError:
                        pass
            self.samples += 1

    def __enter__(self) -> ArgvSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_password_sudo_works_and_the_password_is_in_no_argv(trusted: SshdServer, root_dir: Path) -> None:
    rule = f"{trusted.user} ALL=(root) {sudo_commands('id', 'install', 'mv', 'cat')}"  # a password is asked
    with sudoers_rule(rule), ArgvSampler() as sampler:
        with sudo_conn(trusted, sudo=True) as conn, pytest.raises(OperationError, match="password is required"):
            conn.run(["id", "-u"], privileged=True)
        with sudo_conn(trusted, password=trusted.password) as conn:
            for _ in range(3):
                assert conn.run(["id", "-u"], privileged=True).stdout.strip() == "0"
            conn.write_file(str(root_dir / "site.conf"), b"via password\n", mode=0o640)
            assert conn.read_file(str(root_dir / "server.key")) == b"\x00\xffroot only\n"
            # a command that reads its standard input gets exactly the caller's bytes, not the password
            assert conn.run(["cat"], stdin=b"payload", privileged=True).stdout == "payload"
        with sudo_conn(trusted, password="wrong " + trusted.password) as conn, \
                pytest.raises(OperationError, match=r"sudo: the password was refused for `id -u`"):
            conn.run(["id", "-u"], privileged=True)
    assert (root_dir / "site.conf").read_bytes() == b"via password\n"
    assert sampler.samples > 10
    assert not [c for c in sampler.seen if trusted.password.encode() in c]


# -- bastions ------------------------------------------------------------------------------------
def test_bastion_forwards_to_the_inner_host_and_each_host_key_is_checked(
        bastion_pair: tuple[SshdServer, SshdServer], isolated_home: Path) -> None:
    bastion, inner = bastion_pair
    jump = f"{bastion.user}@{bastion.host}:{bastion.port}"
    endpoint = Endpoint(name="inner", type="pem", connection=ConnectionSpec(
        type="ssh", host=inner.host, port=inner.port, user=inner.user, extra={"ssh_jump": jump}))
    creds = Credentials(password=Secret(inner.password))  # the same account on both hosts
    ssh.trust_host_key(inner.host, inner.port, inner.host_key_public)
    with pytest.raises(HostKeyError) as excinfo:
        ssh.connect_ssh(endpoint, creds)
    assert f"bastion 1 {bastion.host}:{bastion.port}: unknown SSH host key" in str(excinfo.value)
    assert "tlsgate tls trust inner" in str(excinfo.value)

    route = ssh.target_route(endpoint)
    _type, _fp, key, host, port = ssh.path_host_key(endpoint, creds, route)  # tls trust: the first unknown hop
    assert (host, port) == (bastion.host, bastion.port)
    assert f"{key.get_name()} {key.get_base64()}" == bastion.host_key_public
    ssh.trust_host_key(host, port, key)
    with ssh.connect_ssh(endpoint, creds) as conn:
        assert conn.run(["sh", "-c", 'echo "$SSH_CONNECTION"']).stdout.split()[2] == "127.0.0.2"
        conn.write_file(inner.user_path("through-bastion.txt"), b"hop\n")
    assert (inner.workdir / "through-bastion.txt").read_bytes() == b"hop\n"
    assert f"target {inner.host} port {inner.port}" in bastion.log.read_text()  # it went through the bastion


def test_unknown_inner_key_behind_a_trusted_bastion_is_refused(
        bastion_pair: tuple[SshdServer, SshdServer], isolated_home: Path) -> None:
    bastion, inner = bastion_pair
    ssh.trust_host_key(bastion.host, bastion.port, bastion.host_key_public)
    endpoint = Endpoint(name="inner2", type="pem", connection=ConnectionSpec(
        type="ssh", host=inner.host, port=inner.port, user=inner.user,
        extra={"ssh_jump": f"{bastion.host}:{bastion.port}"}))
    creds = Credentials(password=Secret(inner.password))
    with pytest.raises(HostKeyError, match=rf"^{inner.host}:{inner.port}: unknown SSH host key"):
        ssh.connect_ssh(endpoint, creds)
    _t, _fp, key, host, port = ssh.path_host_key(endpoint, creds, ssh.target_route(endpoint))
    assert (host, port) == (inner.host, inner.port)  # read through the bastion
    assert f"{key.get_name()} {key.get_base64()}" == inner.host_key_public


# -- ssh-agent and ~/.ssh/config -----------------------------------------------------------------
@pytest.fixture
def agent(trusted: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real ssh-agent (foreground, killed by its pid at the end) holding the test user's key."""
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", str(trusted.keys["ecdsa"].path)], env=env, check=True, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield str(sock)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def tg(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tlsgate", *args], capture_output=True, text=True,
                          input=stdin, env=dict(os.environ), timeout=180)


def ok(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    res = tg(*args, stdin=stdin)
    assert res.returncode == 0, f"tlsgate {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def remote_pem(server: SshdServer, demo: Path, name: str) -> Path:
    target = server.workdir / f"{name}.pem"
    target.write_bytes((demo / "keystores" / "app.pem").read_bytes())
    os.chown(target, server.uid, server.gid)
    return target


def test_install_with_only_an_ssh_agent(agent: str, trusted: SshdServer, demo: Path) -> None:
    target = remote_pem(trusted, demo, "agent")
    ok("tls", "add", "pem", "--name", "agent", "--connection_type", "ssh", "--host", trusted.host,
       "--port", str(trusted.port), "--user", trusted.user, "--path", str(target))
    ok("org", "add", "Acme")
    ok("tls", "delegate", "agent", "--org", "Acme")
    new = demo / "new"
    ok("tls", "install", "agent", "--cert", str(new / "app.crt"), "--key", str(new / "app.key"),
       "--chain", str(new / "chain.crt"))
    assert (new / "app.crt").read_bytes().strip() in target.read_bytes()
    os.environ.pop("SSH_AUTH_SOCK")  # monkeypatch restores it; without the agent there is no credential
    refused = tg("tls", "test", "agent")
    assert refused.returncode == 1 and "no SSH credential" in refused.stdout + refused.stderr


def test_host_alias_from_ssh_config(trusted: SshdServer, demo: Path, monkeypatch: pytest.MonkeyPatch,
                                    isolated_home: Path) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    ssh_dir = Path(os.environ["HOME"]) / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "config").write_text(
        f"Host web-alias\n    HostName {trusted.host}\n    Port {trusted.port}\n    User {trusted.user}\n"
        f"    IdentityFile {trusted.keys['ecdsa'].path}\n")
    target = remote_pem(trusted, demo, "alias")
    ok("tls", "add", "pem", "--name", "alias", "--connection_type", "ssh", "--host", "web-alias",
       "--path", str(target))
    report = ok("tls", "test", "alias", "--json").stdout
    assert '"ok": true' in report and trusted.host in report


# -- property tests ------------------------------------------------------------------------------
hostile = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)


@settings(max_examples=60, deadline=None)
@given(st.lists(hostile, min_size=1, max_size=5), st.booleans())
def test_sudo_command_line_reaches_sudo_as_exactly_the_argv(argv: list[str], with_password: bool) -> None:
    line = sudo_command_line(argv, with_password=with_password)
    # a real POSIX shell runs the line with `sudo` replaced by a function printing its arguments
    out = subprocess.run(["sh", "-c", 'sudo() { printf "%s\\0" "$@"; }; ' + line], capture_output=True, check=True)
    assert out.stdout.split(b"\x00")[:-1] == [a.encode() for a in sudo_argv(argv, with_password=with_password)[1:]]
    assert shlex.split(line)[1:] == sudo_argv(argv, with_password=with_password)
    assert sudo_argv(argv)[:3] == ["sudo", "-n", "--"] and sudo_argv(argv, with_password=True)[:5] == [
        "sudo", "-S", "-p", "", "--"]


hop_host = st.one_of(
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._%-]{0,20}", fullmatch=True),
    st.ip_addresses(v=6).map(str),
)
hops = st.builds(Hop, host=hop_host, port=st.integers(1, 65535),
                 user=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9._@$-]{1,12}", fullmatch=True)))


@settings(max_examples=200, deadline=None)
@given(st.lists(hops, min_size=1, max_size=4))
def test_jump_spec_round_trips(chain: list[Hop]) -> None:
    assert parse_jump(format_jump(tuple(chain))) == tuple(chain)


@settings(max_examples=300, deadline=None)
@given(hostile)
def test_hostile_jump_specs_are_refused_or_parsed_into_safe_hops(text: str) -> None:
    try:
        parsed = parse_jump(text)
    except ValueError:
        return
    for hop in parsed:
        assert not any(ch.isspace() or ord(ch) < 32 or ch in ",/" for ch in hop.host)
        assert not hop.host.startswith("-") and 1 <= hop.port <= 65535
        assert parse_hop(str(hop)) == hop


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(hostile, st.lists(hops, min_size=1, max_size=2).map(lambda c: format_jump(tuple(c)))),
                min_size=1, max_size=4))
def test_repeated_jump_flags_parse_as_their_hops_in_order(values: list[str]) -> None:
    """``--ssh_jump`` given once per value: the stored spec holds every hop of every value, in
    order, or is refused when any value is refused (or names no hop)."""
    from tlsgate.options import option_specs

    spec = next(s for s in option_specs(ssh.SSHOptions) if s.name == "ssh_jump")
    joined = spec.joined(values)
    assert joined is not None and joined.split(",") == ",".join(values).split(",")
    try:
        parts = [parse_jump(v) for v in values]
    except ValueError:
        parts = None
    if len(values) > 1 and parts is not None and all(parts):
        assert parse_jump(joined) == tuple(h for part in parts for h in part)
    elif len(values) > 1:  # a refused value, or one that names no hop ("" or "none")
        with pytest.raises(ValueError):
            parse_jump(joined)


def test_jump_spec_examples() -> None:
    assert parse_jump("admin@bastion.example:2222,10.0.0.5") == (
        Hop("bastion.example", 2222, "admin"), Hop("10.0.0.5", 22, None))
    assert parse_jump("[::1]:2200") == (Hop("::1", 2200, None),)
    assert parse_jump("") == () and parse_jump("none") == ()
    with pytest.raises(ValueError, match="stands alone"):
        parse_jump("bastion,none")
    for bad in ("host:0", "host:70000", "-oProxyCommand=x", "a b", "@host", "host,", "[host]:22", "h:2x"):
        with pytest.raises(ValueError):
            parse_jump(bad)


def test_sudo_refusals_are_recognised_and_command_output_is_not() -> None:
    assert classify(1, "sudo: a password is required\n") == "password"
    assert classify(1, "Sorry, try again.\nsudo: no password was provided\nsudo: 1 incorrect password attempt\n") == "refused"
    assert classify(1, "Sorry, user deploy is not allowed to execute '/usr/bin/id' as root on web3.\n") == "denied"
    assert classify(1, "nginx: [emerg] unknown directive\n") is None
    assert classify(0, "sudo: a password is required\n") is None


# -- OpenSSH user certificates -------------------------------------------------------------------
def test_user_certificate_beside_the_key_is_offered(tmp_path: Path, isolated_home: Path) -> None:
    """An sshd that trusts a user CA and lists no key of ours: the key alone is refused, the key
    with its ``-cert.pub`` (signed by ``ssh-keygen -s``) logs in."""
    from tlsgate_testing.sshd import start_sshd, stop_sshd

    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("ca", "id_ed25519"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
    subprocess.run(["ssh-keygen", "-q", "-s", str(keys / "ca"), "-I", "tlsgate-test-cert", "-n", "tlsgate-test",
                    str(keys / "id_ed25519.pub")], check=True, capture_output=True)
    assert (keys / "id_ed25519-cert.pub").is_file()
    base = Path(tempfile.mkdtemp(prefix="tlsgate-sshd-ca-"))
    ca_pub = base / "user_ca.pub"
    ca_pub.write_text((keys / "ca.pub").read_text())
    ca_pub.chmod(0o644)
    server = start_sshd(base / "sshd", extra_config=f"TrustedUserCAKeys {ca_pub}\n")
    try:
        ssh.trust_host_key(server.host, server.port, server.host_key_public)
        endpoint = ssh_endpoint(server)
        with ssh.connect_ssh(endpoint, Credentials(ssh_key_path=str(keys / "id_ed25519"))) as conn:
            assert conn.run(["id", "-un"]).stdout.strip() == "tlsgate-test"
        (keys / "id_ed25519-cert.pub").unlink()
        with pytest.raises(ConnectionFailed, match="authentication failed"):
            ssh.connect_ssh(endpoint, Credentials(ssh_key_path=str(keys / "id_ed25519")))
    finally:
        stop_sshd(server)
        subprocess.run(["rm", "-rf", "--", str(base)], check=False)


def test_cli_trusts_each_hop_in_turn_then_installs_through_the_bastion(
        bastion_pair: tuple[SshdServer, SshdServer], demo: Path, isolated_home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``--ssh_jump A --ssh_jump B`` (two real hops: the bastion, then the bastion again reached
    from itself), ``tls trust`` once per untrusted host on the way, then an install."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    bastion, inner = bastion_pair
    hop = f"{bastion.user}@{bastion.host}:{bastion.port}"
    target = remote_pem(inner, demo, "behind")
    ok("tls", "add", "pem", "--name", "behind", "--connection_type", "ssh", "--host", inner.host,
       "--port", str(inner.port), "--user", inner.user, "--password", "-",
       "--ssh_jump", hop, "--ssh_jump", hop, "--path", str(target), stdin=inner.password + "\n")
    assert f'"ssh_jump": "{hop},{hop}"' in ok("tls", "show", "behind", "--json").stdout
    refused = tg("tls", "test", "behind")
    assert refused.returncode == 1 and f"bastion 1 {bastion.host}:{bastion.port}: unknown SSH host key" in refused.stdout
    first = ok("tls", "trust", "behind", "--yes").stdout  # the bastion: both hops
    second = ok("tls", "trust", "behind", "--yes").stdout
    assert f"{bastion.host}:{bastion.port} presents" in first and f"{inner.host}:{inner.port} presents" in second
    log_before = len(bastion.log.read_text())
    report = ok("tls", "test", "behind").stdout
    assert f"through {hop},{hop}" in report
    forwarded = bastion.log.read_text()[log_before:]
    assert f"target {bastion.host} port {bastion.port}" in forwarded  # hop 1 -> hop 2 (itself)
    assert f"target {inner.host} port {inner.port}" in forwarded  # hop 2 -> the endpoint
    ok("tls", "set", "behind", "--ssh_jump", hop)
    ok("tls", "set", "behind", "--ssh_jump", f"{hop},{hop}")  # the comma form: the same two hops
    ok("tls", "set", "behind", "--ssh_jump", hop, "--ssh_jump", hop)
    assert f'"ssh_jump": "{hop},{hop}"' in ok("tls", "show", "behind", "--json").stdout
    bad = tg("tls", "set", "behind", "--ssh_jump", hop, "--ssh_jump", "-oProxyCommand=x")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --ssh_jump: '-oProxyCommand=x': "), bad.stderr
    ok("org", "add", "Acme")
    ok("tls", "delegate", "behind", "--org", "Acme")
    new = demo / "new"
    ok("tls", "install", "behind", "--cert", str(new / "app.crt"), "--key", str(new / "app.key"),
       "--chain", str(new / "chain.crt"))
    assert (new / "app.crt").read_bytes().strip() in target.read_bytes()


def test_bastion_with_its_own_credentials_from_the_store(
        bastion_pair: tuple[SshdServer, SshdServer], openbao, demo: Path, isolated_home: Path,  # type: ignore[no-untyped-def]
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The endpoint's key is not accepted by the bastion; the bastion's own key, from OpenBao
    through --ssh_jump_store_cred_id, is."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    bastion, inner = bastion_pair
    ssh.trust_host_key(bastion.host, bastion.port, bastion.host_key_public)
    ssh.trust_host_key(inner.host, inner.port, inner.host_key_public)
    openbao.put("ssh/inner", {"user": inner.user, "ssh_key": inner.keys["ecdsa"].text})
    openbao.put("ssh/bastion", {"user": bastion.user, "ssh_key": bastion.keys["ecdsa"].text})
    ok("store", "add", "vault", "--name", "corp-vault", "--url", openbao.url, "--token", "-",
       "--ca_bundle", openbao.ca_bundle, stdin=openbao.reader_token + "\n")
    target = remote_pem(inner, demo, "vaulted")
    common = ["--connection_type", "ssh", "--host", inner.host, "--port", str(inner.port), "--store", "corp-vault",
              "--store_cred_id", "ssh/inner", "--ssh_jump", f"{bastion.host}:{bastion.port}", "--path", str(target)]
    ok("tls", "add", "pem", "--name", "same-creds", *common)
    refused = tg("tls", "test", "same-creds")
    assert refused.returncode == 1
    assert f"bastion 1 {bastion.user}@{bastion.host}:{bastion.port}: authentication failed" in refused.stdout
    ok("tls", "add", "pem", "--name", "own-creds", *common, "--ssh_jump_store_cred_id", "ssh/bastion")
    assert ok("tls", "test", "own-creds", "--json").stdout.count('"ok": true') >= 2


def test_proxyjump_and_identity_file_from_ssh_config(bastion_pair: tuple[SshdServer, SshdServer],
                                                     isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    bastion, inner = bastion_pair
    ssh.trust_host_key(bastion.host, bastion.port, bastion.host_key_public)
    ssh.trust_host_key(inner.host, inner.port, inner.host_key_public)
    ssh_dir = Path(os.environ["HOME"]) / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "config").write_text(
        f"Host inner-alias\n    HostName {inner.host}\n    Port {inner.port}\n    User {inner.user}\n"
        f"    IdentityFile {inner.keys['ecdsa'].path}\n"
        f"    ProxyJump {bastion.user}@{bastion.host}:{bastion.port}\n")
    endpoint = Endpoint(name="aliased", type="pem", connection=ConnectionSpec(type="ssh", host="inner-alias", port=22))
    route = ssh.target_route(endpoint)
    assert (route.host, route.port, route.user) == (inner.host, inner.port, inner.user)
    assert route.jump == (Hop(bastion.host, bastion.port, bastion.user),)
    # the bastion gets the same credential (the IdentityFile), which it does not accept ...
    with pytest.raises(ConnectionFailed, match=r"^bastion 1 .*: authentication failed \(private key refused\)"):
        ssh.connect_ssh(endpoint, Credentials())
    # ... and with its own from the store-shaped hop credentials it goes through
    creds = Credentials(hops=(Credentials(ssh_key=Secret(bastion.keys["ecdsa"].text)),))
    with ssh.connect_ssh(endpoint, creds) as conn:
        assert conn.run(["sh", "-c", 'echo "$SSH_CONNECTION"']).stdout.split()[2] == inner.host


def test_keystore_in_a_root_only_directory_with_its_script_through_sudo(
        trusted: SshdServer, demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pem keystore root owns (0600, in a directory only root may write), installed by the
    non-root account with --sudo; its install script runs as root with --script_sudo true."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    directory = Path(tempfile.mkdtemp(prefix="tlsgate-ks-root-"))
    try:
        directory.chmod(0o755)
        target = directory / "app.pem"
        target.write_bytes((demo / "keystores" / "app.pem").read_bytes())
        target.chmod(0o600)
        script, out = directory / "after-install.sh", directory / "ran-as"
        script.write_text(f'#!/bin/sh\nid -u > {out}\n')
        script.chmod(0o755)
        rule = f"{trusted.user} ALL=(root) NOPASSWD: {readme_commands('p12')}, {script}"  # the README's rule + the script
        ok("tls", "add", "pem", "--name", "ks", "--connection_type", "ssh", "--host", trusted.host,
           "--port", str(trusted.port), "--user", trusted.user, "--ssh_key_path", str(trusted.keys["ecdsa"].path),
           "--sudo", "--path", str(target), "--install_script", str(script), "--script_sudo", "true")
        ok("org", "add", "Acme")
        ok("tls", "delegate", "ks", "--org", "Acme")
        new = demo / "new"
        with sudoers_rule(rule):
            ok("tls", "install", "ks", "--cert", str(new / "app.crt"), "--key", str(new / "app.key"),
               "--chain", str(new / "chain.crt"))
        assert (new / "app.crt").read_bytes().strip() in target.read_bytes()
        st_target = target.stat()
        assert (st_target.st_uid, st_target.st_gid, st_target.st_mode & 0o7777) == (0, 0, 0o600)
        assert out.read_text().strip() == "0"
    finally:
        subprocess.run(["rm", "-rf", "--", str(directory)], check=False)
