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
        return isinstance(other, Secret) and other._value == self._value

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
