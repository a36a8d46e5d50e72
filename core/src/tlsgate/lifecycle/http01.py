"""What every ``acme_http01`` implementation shares (exported through :mod:`tlsgate.plugin`)."""

from __future__ import annotations

import re
from collections.abc import Callable

from ..errors import OperationError, ValidationError
from ..transaction import Transaction

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_KEY_AUTH = re.compile(r"^[A-Za-z0-9_-]{1,256}\.[A-Za-z0-9_-]{1,256}$")


def http01_path(token: str, key_authorization: str) -> str:
    """The URL path of an http-01 answer, after checking that the CA's token and key
    authorization are base64url (RFC 8555 section 8.3), so they are safe to write into any
    server's configuration without quoting."""
    if not _TOKEN.match(token) or not _KEY_AUTH.match(key_authorization) or not key_authorization.startswith(
            token + "."):
        raise ValidationError("the CA's http-01 token or key authorization is not base64url; refusing to write it")
    return f"/.well-known/acme-challenge/{token}"


def undo_later(tx: Transaction, what: str) -> Callable[[], None]:
    """The cleanup an ``acme_http01`` hook returns: restore every file the transaction changed
    (byte for byte), run its rollback actions (reload), and raise if anything could not be
    restored."""

    def cleanup() -> None:
        tx.rollback()
        if tx.restore_errors:
            raise OperationError(f"removing {what}: " + "; ".join(tx.restore_errors))

    return cleanup
