"""Built-in credential stores, registered like any third-party store.

A credential store kind is a :class:`tlsgate.CredentialStoreType` whose ``factory(name, options)``
returns an object with:

* ``get(cred_id: str) -> dict[str, str]``: the secret at ``cred_id``; keys among ``user``,
  ``password``, ``ssh_key`` (private key text), ``ssh_key_password``. Raise
  :class:`tlsgate.OperationError` (unreachable, denied) or :class:`tlsgate.NotFoundError`.
* ``test() -> str``: connect and authenticate; return a one-line description of what answered.

Credentials are resolved at job time and never written to the inventory or logged.
"""

from __future__ import annotations

from ..models import CredentialStoreType
from ..plugin import impl


@impl
def tlsgate_credential_stores() -> list[CredentialStoreType]:
    from .local import LOCAL
    from .vault import VAULT

    return [LOCAL, VAULT]
