"""Declaring an endpoint type's own command-line options.

A plugin describes its options as an attrs class whose fields are made with :func:`option`::

    @attrs.frozen
    class NginxOptions:
        nginx_config_path: str = option(help="The path to the Nginx config file.",
                                        min_len=1, max_len=4096, required=True)
        certs_dir: str | None = option(help="Where new certificate files go.")

The core turns that class into the ``tlsgate tls add <type>`` flags (``--nginx_config_path``,
the seed CLI's underscore spelling), validates values against the declared limits, stores them
(secret ones encrypted) and hands the driver an instance of the class as ``endpoint.options``.
Plugins never import typer or click.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .declarations import join_repeated
from .errors import ValidationError
from .secret import Secret

_META_KEY = "tlsgate"

#: Value types an option may have. ``Secret`` options are encrypted at rest and redacted everywhere.
OPTION_TYPES = (str, int, bool, Secret)


@attrs.frozen
class OptionSpec:
    """One declared option, as the CLI, the validator and the inventory see it."""

    name: str
    type: type
    help: str
    required: bool = False
    default: Any = None
    secret: bool = False
    min_len: int | None = None
    max_len: int | None = None
    min: int | None = None
    max: int | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    #: The flag may be given several times; the values are joined with this separator into the
    #: one stored string (so ``--x a --x b`` is ``--x a,b``, and the joined form keeps working).
    repeat: str | None = None

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    def joined(self, values: str | Sequence[str] | None) -> str | None:
        """The stored value of a repeatable flag's values (None when it was not given)."""
        return join_repeated(self.repeat, values)

    def check(self, value: Any) -> Any:
        """Return the value converted to the declared type, or raise ValidationError naming the flag."""
        if value is None:
            if self.required:
                raise ValidationError("is required", option=self.flag)
            return self.default
        if self.type is bool:
            value = parse_bool(value, self.flag)
        elif self.type is int:
            if isinstance(value, bool):
                raise ValidationError("must be an integer", option=self.flag)
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise ValidationError("must be an integer", option=self.flag) from None
            if (self.min is not None and value < self.min) or (
                self.max is not None and value > self.max
            ):
                raise ValidationError(
                    f"must be an integer between {self.min} and {self.max}", option=self.flag
                )
        elif self.type is Secret:
            value = Secret(value) if not isinstance(value, Secret) else value
            _check_len(value.reveal(), self, secret=True)
        else:
            if not isinstance(value, str):
                raise ValidationError("must be a string", option=self.flag)
            _check_len(value, self, secret=False)
            if "\x00" in value:
                raise ValidationError("must not contain a NUL character", option=self.flag)
        if self.choices is not None and str(value) not in self.choices:
            raise ValidationError(f"must be one of: {', '.join(self.choices)}", option=self.flag)
        return value


def _check_len(value: str, spec: OptionSpec, *, secret: bool) -> None:
    lo, hi = spec.min_len, spec.max_len
    n = len(value)
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        if lo is not None and hi is not None:
            rule = f"must be between {lo} and {hi} characters"
        elif lo is not None:
            rule = f"must be at least {lo} character{'s' if lo != 1 else ''} long"
        else:
            rule = f"must be at most {hi} characters"
        raise ValidationError(rule, option=spec.flag)


def parse_bool(value: Any, flag: str = "value") -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise ValidationError("must be true or false", option=flag)


def option(
    *,
    help: str,
    required: bool = False,
    default: Any = None,
    secret: bool = False,
    min_len: int | None = None,
    max_len: int | None = None,
    min: int | None = None,
    max: int | None = None,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    repeat: str | None = None,
) -> Any:
    """An attrs field that declares a command-line option of an endpoint type."""
    meta = {
        "help": help,
        "required": required,
        "default": default,
        "secret": secret,
        "min_len": min_len,
        "max_len": max_len,
        "min": min,
        "max": max,
        "choices": choices,
        "metavar": metavar,
        "repeat": repeat,
    }
    return attrs.field(default=default, metadata={_META_KEY: meta}, kw_only=True)


def option_specs(options_class: type | None) -> tuple[OptionSpec, ...]:
    """The declared options of an options class, in declaration order."""
    if options_class is None:
        return ()
    specs = []
    for field in attrs.fields(options_class):
        meta = field.metadata.get(_META_KEY)
        if meta is None:
            continue
        specs.append(OptionSpec(name=field.name, type=_field_type(field, meta), **meta))
    return tuple(specs)


def _field_type(field: attrs.Attribute, meta: Mapping[str, Any]) -> type:
    if meta.get("secret"):
        return Secret
    annotation = field.type
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    text = str(text)
    for name, typ in (("bool", bool), ("int", int), ("Secret", Secret)):
        if text == name or text.startswith(name + " ") or text.startswith(name + "|"):
            return typ
    if annotation in OPTION_TYPES:
        return annotation  # type: ignore[return-value]
    return str


def build_options(options_class: type | None, values: Mapping[str, Any]) -> Any:
    """Validate ``values`` against the declared options and build the options instance.

    Unknown keys are an error naming the flag, so an option the type does not have is refused.
    """
    specs = {spec.name: spec for spec in option_specs(options_class)}
    unknown = [key for key, value in values.items() if key not in specs and value is not None]
    if unknown:
        raise ValidationError("is not an option of this endpoint type", option=f"--{unknown[0]}")
    if options_class is None:
        return None
    checked = {name: spec.check(values.get(name)) for name, spec in specs.items()}
    return options_class(**checked)


def options_to_dict(options: Any) -> dict[str, Any]:
    """The options instance as a plain dict (Secrets left as Secret objects)."""
    if options is None:
        return {}
    return attrs.asdict(options, recurse=False)
