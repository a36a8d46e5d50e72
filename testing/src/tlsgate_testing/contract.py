"""The endpoint-type contract suite: checks every installed endpoint type (or one a plugin author
names) against what the core relies on. Use it from a plugin's tests::

    from tlsgate_testing.contract import check_declaration, option_values, remote_connection_type

The core's own ``tests/core/test_contract.py`` runs it over every installed type.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import strategies as st
from tlsgate.models import EndpointType
from tlsgate.options import OptionSpec, option_specs
from tlsgate.registry import Registry

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def check_declaration(registry: Registry, etype: EndpointType) -> list[str]:
    """Problems with a type's declaration (empty when it is fine)."""
    problems = []
    if not _NAME.match(etype.name):
        problems.append(f"type name {etype.name!r} is not a lower-case identifier")
    if not etype.connection_types:
        problems.append("declares no connection types")
    for ct in etype.connection_types:
        if ct not in registry.connection_types:
            problems.append(f"connection type {ct!r} is provided by no installed plugin")
    if "local" in etype.connection_types and not etype.local_platforms:
        problems.append("allows local but names no gateway platform for it")
    if "docker" in etype.local_platforms:
        problems.append("allows local on a Docker gateway")
    for spec in option_specs(etype.options):
        if not _NAME.match(spec.name):
            problems.append(f"option {spec.name!r} is not a lower-case identifier (flags use --seed_spelling)")
        if not spec.help:
            problems.append(f"option --{spec.name} has no help text")
        if spec.name in ("name", "connection_type", "host", "port", "user", "password", "ssh_key_path",
                         "ssh_key_password", "store", "store_cred_id", "json"):
            problems.append(f"option --{spec.name} collides with a core flag")
    return problems


def remote_connection_type(registry: Registry, etype: EndpointType) -> str | None:
    for ct in etype.connection_types:
        info = registry.connection_types.get(ct)
        if info is not None and info.remote:
            return ct
    return None


_SAFE_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40
).filter(lambda s: not s.startswith("-") and s.strip() == s)


def value_strategy(spec: OptionSpec) -> st.SearchStrategy[str]:
    """argv-ready values that satisfy the option's declared limits."""
    if spec.choices:
        return st.sampled_from(spec.choices)
    if spec.type is bool:
        return st.sampled_from(["true", "false"])
    if spec.type is int:
        return st.integers(spec.min if spec.min is not None else 0, spec.max if spec.max is not None else 10**6).map(str)
    lo = max(spec.min_len or 1, 1)
    hi = min(spec.max_len or 40, 40)
    text = _SAFE_TEXT
    if _looks_like_path(spec.name):  # drivers may insist on absolute paths; give them one
        text = _SAFE_TEXT.map(lambda s: "/" + s.replace("\\", "/").lstrip("/"))
    return text.filter(lambda s: lo <= len(s) <= hi)


def _looks_like_path(name: str) -> bool:
    return any(part in name for part in ("path", "dir", "script", "file", "bundle"))


def option_values(etype: EndpointType) -> st.SearchStrategy[dict[str, Any]]:
    """A dict of option name -> argv value; required options always present."""
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for spec in option_specs(etype.options):
        strategy = value_strategy(spec)
        parts[spec.name] = strategy if spec.required else st.one_of(st.none(), strategy)
    return st.fixed_dictionaries(parts)
