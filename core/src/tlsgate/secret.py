"""A string that never shows itself: ``repr``, ``str``, logs and JSON all see ``********``."""

from __future__ import annotations

from typing import Any

REDACTED = "********"


class Secret:
    """Holds a password or passphrase. Call :meth:`reveal` at the one place the value is used."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError("Secret holds a str")
        object.__setattr__(self, "_value", value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Secret is immutable")

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.reveal() == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not pickled")


def reveal(value: Secret | str | None) -> str | None:
    """The clear value of a Secret (or a plain str), for the one call that needs it."""
    if value is None:
        return None
    return value.reveal() if isinstance(value, Secret) else value


class SealedSecret(Secret):
    """A secret still sealed with the master key: shown as ``********`` like any Secret, and
    decrypted only when :meth:`reveal` is called (listing, showing or removing what holds it
    needs no key). A failure names ``owner`` (the endpoint or store it belongs to)."""

    __slots__ = ("_owner", "_token")

    def __init__(self, token: str, owner: str = "") -> None:
        object.__setattr__(self, "_token", token)
        object.__setattr__(self, "_owner", owner)

    @property
    def token(self) -> str:
        return self._token

    def reveal(self) -> str:
        from . import crypto
        from .errors import OperationError

        try:
            return crypto.decrypt(self._token)
        except OperationError as exc:
            raise OperationError(f"{self._owner}: {exc}" if self._owner else str(exc)) from None

    def __bool__(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SealedSecret) and other._token == self._token:
            return True
        return isinstance(other, Secret) and other.reveal() == self.reveal()

    def __hash__(self) -> int:
        return hash(("SealedSecret", self._token))
