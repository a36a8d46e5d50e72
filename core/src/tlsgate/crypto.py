"""Encryption of secrets at rest with the gateway's master key.

The key is ``TLSGATE_MASTER_KEY`` (a Fernet key, or any passphrase, stretched with scrypt), else
a random key in ``$TLSGATE_HOME/master.key`` created with mode 0600. Values are stored as
``enc:v1:<Fernet token>`` (AES-128-CBC + HMAC-SHA256, from ``cryptography``).
"""

from __future__ import annotations

import base64
import os
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .errors import OperationError
from .paths import home

PREFIX = "enc:v1:"
_SALT = b"tlsgate master key v1"  # fixed: the passphrase itself must carry the entropy


@lru_cache(maxsize=8)
def _fernet_for(env_key: str | None, key_file: str) -> Fernet:
    if env_key:
        try:
            return Fernet(env_key.encode())
        except ValueError:
            kdf = Scrypt(salt=_SALT, length=32, n=2**15, r=8, p=1)
            return Fernet(base64.urlsafe_b64encode(kdf.derive(env_key.encode())))
    path = Path(key_file)
    if not path.exists():
        key = Fernet.generate_key()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
    try:
        return Fernet(path.read_bytes().strip())
    except ValueError:
        raise OperationError(f"{path}: not a valid master key file") from None


def fernet() -> Fernet:
    return _fernet_for(os.environ.get("TLSGATE_MASTER_KEY"), str(home() / "master.key"))


def encrypt(value: str | bytes) -> str:
    data = value.encode() if isinstance(value, str) else value
    return PREFIX + fernet().encrypt(data).decode()


def decrypt_bytes(token: str) -> bytes:
    if not token.startswith(PREFIX):
        raise OperationError("stored secret is not in the expected encrypted form")
    try:
        return fernet().decrypt(token[len(PREFIX):].encode())
    except InvalidToken:
        raise OperationError(
            "cannot decrypt a stored secret: the master key (TLSGATE_MASTER_KEY or "
            "$TLSGATE_HOME/master.key) is not the one it was stored with"
        ) from None


def decrypt(token: str) -> str:
    return decrypt_bytes(token).decode()
