"""The ssh transport's --ssh_key_path cache: a key file is parsed once per process while it stays
the same file with the same content, and loaded again as soon as it changes in any way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from tlsgate import ConnectionFailed, Credentials, Secret
from tlsgate.transports import ssh


def write_key(path: Path, key: object, passphrase: bytes | None = None) -> None:
    enc = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, enc)  # type: ignore[attr-defined]
    with open(path, "wb") as fh:  # in place: the same inode, as an editor or `cat >` would leave it
        fh.write(data)


def public(pkey: object) -> str:
    return pkey.get_base64()  # type: ignore[attr-defined, no-any-return]


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    ssh._KEY_FILES.clear()


def test_the_same_file_is_parsed_once(tmp_path: Path) -> None:
    path = tmp_path / "id_ed25519"
    write_key(path, ed25519.Ed25519PrivateKey.generate())
    creds = Credentials(ssh_key_path=str(path))
    first = ssh._client_key(creds)
    assert ssh._client_key(creds) is first


def test_a_rewritten_or_replaced_key_file_is_loaded_again(tmp_path: Path) -> None:
    path = tmp_path / "id_ed25519"
    write_key(path, ed25519.Ed25519PrivateKey.generate())
    creds = Credentials(ssh_key_path=str(path))
    first = public(ssh._client_key(creds))
    # rewritten in place with another key of the same type: same inode, same size
    size = path.stat().st_size
    write_key(path, ed25519.Ed25519PrivateKey.generate())
    assert path.stat().st_size == size
    second = public(ssh._client_key(creds))
    assert second != first
    # even with its old mtime put back (ctime still changes)
    st = path.stat()
    write_key(path, ed25519.Ed25519PrivateKey.generate())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    third = public(ssh._client_key(creds))
    assert third not in (first, second)
    # replaced by rename (another inode), another key type
    new = tmp_path / "new"
    write_key(new, ec.generate_private_key(ec.SECP256R1()))
    new.replace(path)
    fourth = ssh._client_key(creds)
    assert fourth.get_name() == "ecdsa-sha2-nistp256"  # type: ignore[union-attr]
    assert len(ssh._KEY_FILES) == 1  # the file's earlier versions are not kept


def test_passphrase_and_missing_file_are_checked_every_time(tmp_path: Path) -> None:
    path = tmp_path / "id_ed25519"
    write_key(path, ed25519.Ed25519PrivateKey.generate(), b"right one")
    good = Credentials(ssh_key_path=str(path), ssh_key_password=Secret("right one"))
    assert ssh._client_key(good) is not None
    with pytest.raises(ConnectionFailed, match="wrong passphrase"):
        ssh._client_key(Credentials(ssh_key_path=str(path), ssh_key_password=Secret("not it")))
    with pytest.raises(ConnectionFailed, match="encrypted: give its passphrase"):
        ssh._client_key(Credentials(ssh_key_path=str(path)))
    path.unlink()
    with pytest.raises(ConnectionFailed, match="no such file"):
        ssh._client_key(good)
