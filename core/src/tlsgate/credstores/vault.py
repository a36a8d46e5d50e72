"""HashiCorp Vault / OpenBao KV v2 credential store (hvac): token or AppRole auth."""

from __future__ import annotations

import attrs

from ..models import CredentialStoreType
from ..options import option
from ..secret import Secret


@attrs.frozen
class VaultOptions:
    url: str = option(help="Vault/OpenBao address, e.g. https://vault.example:8200.", required=True,
                      min_len=1, max_len=2048)
    token: Secret | None = option(help="Token (or '-' to read it from standard input).", secret=True)
    role_id: str | None = option(help="AppRole role ID.", max_len=256)
    secret_id: Secret | None = option(help="AppRole secret ID (or '-' for standard input).", secret=True)
    mount: str = option(help="KV v2 mount point.", default="secret", min_len=1, max_len=256)
    ca_bundle: str | None = option(help="CA bundle that signs the server's certificate.", max_len=4096)


class VaultStore:
    def __init__(self, name: str, options: VaultOptions) -> None:
        self.name = name
        self.options = options

    def get(self, cred_id: str) -> dict[str, str]:
        raise NotImplementedError("filled in by the transports issue")

    def test(self) -> str:
        raise NotImplementedError("filled in by the transports issue")


VAULT = CredentialStoreType(
    name="vault",
    description="HashiCorp Vault / OpenBao KV v2 (token or AppRole).",
    options=VaultOptions,
    factory=VaultStore,
)
