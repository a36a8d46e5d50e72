"""Why a keystore could not be read, so the driver can name the right option."""

from __future__ import annotations


class KeystoreError(ValueError):
    """``kind``: "format" (not this kind of file), "password" (wrong store password), "key_password" (PEM key),
    "unsupported" (a feature this reader cannot rewrite faithfully). Never carries a secret."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)

    @property
    def option(self) -> str:
        return {"password": "--store_password", "key_password": "--key_password"}.get(self.kind, "--path")
