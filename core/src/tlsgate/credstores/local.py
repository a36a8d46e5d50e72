"""The ``local`` credential store: secrets encrypted with the master key in the inventory."""

from __future__ import annotations

import attrs

from ..models import CredentialStoreType


@attrs.frozen
class LocalStoreOptions:
    pass


class LocalStore:
    def __init__(self, name: str, options: LocalStoreOptions) -> None:
        self.name = name

    def get(self, cred_id: str) -> dict[str, str]:
        from ..inventory import open_inventory

        return open_inventory().get_store_secret(self.name, cred_id)

    def test(self) -> str:
        return f"local store {self.name!r}: secrets kept encrypted in the inventory"


LOCAL = CredentialStoreType(
    name="local",
    description="Secrets kept encrypted (master key) in the tlsgate inventory.",
    options=LocalStoreOptions,
    factory=LocalStore,
    writable=True,
)
