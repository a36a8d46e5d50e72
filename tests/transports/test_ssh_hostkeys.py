"""known_hosts bookkeeping (no server): trusting replaces exactly one host's keys and keeps every
other entry, comments and hashed entries included; fingerprints match ssh-keygen's."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import paramiko
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tlsgate.transports import ssh


def make_key() -> paramiko.PKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    text = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    return ssh.load_private_key(text, None)


HOSTS = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
PORTS = st.one_of(st.just(22), st.integers(1, 65535))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(targets=st.lists(st.tuples(HOSTS, PORTS), min_size=1, max_size=6))
def test_trust_replaces_only_that_host(isolated_home: Path, targets: list[tuple[str, int]]) -> None:
    known = isolated_home / "known_hosts"
    known.unlink(missing_ok=True)
    hashed_key = make_key()
    hashed_name = paramiko.HostKeys.hash_host("hashed.example")
    known.write_text(f"# a comment kept as is\n{hashed_name} {hashed_key.get_name()} {hashed_key.get_base64()}\n")
    expected: dict[tuple[str, int], paramiko.PKey] = {}
    for host, port in targets + targets[:1]:  # the first one is trusted twice: its key is replaced
        key = make_key()
        ssh.trust_host_key(host, port, key)
        expected[(host, port)] = key
    for (host, port), key in expected.items():
        assert ssh.known_host_keys(host, port) == {"ssh-ed25519": key}
    assert ssh.known_host_keys("hashed.example", 22) == {"ssh-ed25519": hashed_key}
    lines = known.read_text().splitlines()
    assert lines[0] == "# a comment kept as is"
    assert len(lines) == 2 + len(expected)
    assert stat.S_IMODE(known.stat().st_mode) == 0o600


def test_trusting_a_hashed_host_replaces_the_hashed_entry(isolated_home: Path) -> None:
    known = isolated_home / "known_hosts"
    old, new = make_key(), make_key()
    known.write_text(f"{paramiko.HostKeys.hash_host('[db.example]:2222')} ssh-ed25519 {old.get_base64()}\n"
                     f"web.example,[db.example]:2222 ssh-ed25519 {old.get_base64()}\n")
    ssh.trust_host_key("db.example", 2222, new)
    assert known.read_text().splitlines() == [
        f"web.example ssh-ed25519 {old.get_base64()}",
        f"[db.example]:2222 ssh-ed25519 {new.get_base64()}",
    ]


def test_known_hosts_name() -> None:
    assert ssh.known_hosts_name("h", 22) == "h"
    assert ssh.known_hosts_name("h", 2222) == "[h]:2222"


def test_fingerprint_matches_ssh_keygen(isolated_home: Path, tmp_path: Path) -> None:
    import subprocess

    key = make_key()
    pub = tmp_path / "k.pub"
    pub.write_text(f"{key.get_name()} {key.get_base64()}\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout
    assert out.split()[1] == ssh.fingerprint(key)


def test_known_hosts_are_read_on_every_look_up(isolated_home: Path) -> None:
    """The parse of a known_hosts file is reused only for the same text: a key replaced in place
    (same length, same inode, written back within the same clock tick), a removed entry and a
    removed file are all seen by the next look-up."""
    known = isolated_home / "known_hosts"
    first, second = make_key(), make_key()
    known.write_text(f"h.example ssh-ed25519 {first.get_base64()}\n")
    assert ssh.known_host_keys("h.example", 22) == {"ssh-ed25519": first}
    assert ssh.known_host_keys("h.example", 22) == {"ssh-ed25519": first}  # (from the parse kept)
    before = known.stat()
    with known.open("r+") as fh:  # the same size, in place
        fh.write(f"h.example ssh-ed25519 {second.get_base64()}\n")
    os.utime(known, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert ssh.known_host_keys("h.example", 22) == {"ssh-ed25519": second}
    known.write_text("# nothing trusted\n")
    assert ssh.known_host_keys("h.example", 22) == {}
    known.unlink()
    assert ssh.known_host_keys("h.example", 22) == {}
