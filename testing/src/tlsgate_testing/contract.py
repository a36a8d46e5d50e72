"""The endpoint-type contract suite: checks every installed endpoint type (or one a plugin author
names) against what the core relies on.

Declarations (the core's ``tests/core/test_contract.py`` runs these over every installed type)::

    from tlsgate_testing.contract import check_declaration, option_values, remote_connection_type

Behaviour, on the plugin's own endpoints (a real peer or a :class:`~tlsgate_testing.fake.FakeConnection`)::

    from tlsgate_testing.contract import Case, check_behaviour, tree_snapshot

    case = Case(endpoint, connection, bundle, snapshot=lambda: tree_snapshot(site_dir))
    check_behaviour(case)

:func:`check_behaviour` runs the three promises every driver makes: discovery is read-only, a dry
run changes nothing (and says what it would do), and a failed install restores every file byte
for byte (the kit makes the install fail itself: the write after the first one raises). Each
check is also callable on its own.

A driver that changes its endpoint through an API rather than file writes (F5 over iControl
REST, IIS through PowerShell) gives the failure to its own loopback peer instead: ``inject``
arms one failure at a documented step of the peer and returns a function that says whether it
fired; the snapshot is then the peer's state (device objects, bindings and stores)::

    def fail_the_profile_patch():
        fault = device.fail("PATCH", r"/ltm/profile/client-ssl/", 400, "01070734:3: ...")
        return lambda: fault.times == 0

    check_behaviour(Case(endpoint, session, bundle, snapshot=device.snapshot, inject=fail_the_profile_patch))
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
from hypothesis import strategies as st
from tlsgate.models import EndpointType
from tlsgate.options import OptionSpec, option_specs
from tlsgate.plugin import (
    CertificateBundle,
    CommandResult,
    Connection,
    Endpoint,
    FileStat,
    InstallResult,
    Node,
    OperationError,
)
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


# -- behaviour ------------------------------------------------------------------------------------


@attrs.frozen
class Case:
    """One endpoint to check: how to reach it, a bundle its install accepts (for the nodes given,
    or the nodes it covers), and ``snapshot``: the state that must not change (files under the
    server's directories: :func:`tree_snapshot`; a FakeConnection: ``conn.snapshot``)."""

    endpoint: Endpoint
    connection: Connection
    bundle: CertificateBundle
    snapshot: Callable[[], object]
    nodes: Sequence[Node] = ()
    alias: str | None = None
    #: Arms one failure in the endpoint's own (loopback) peer, to fire during the next install,
    #: and returns a function telling whether it fired. None: the kit wraps the connection
    #: (:class:`FailAfterFirstWrite`), which suits drivers that change files.
    inject: Callable[[], Callable[[], bool]] | None = None


def tree_snapshot(*roots: str | Path, dirs: bool = False) -> dict[str, tuple[str, bytes, int]]:
    """Every file and symlink under ``roots`` (and, with ``dirs``, every directory): kind,
    content (link target) and mode. The contract promises files byte for byte; a directory an
    install created may stay behind (pass ``dirs=True`` to hold a driver to more)."""
    out: dict[str, tuple[str, bytes, int]] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                if os.path.islink(path):
                    out[path] = ("link", os.readlink(path).encode(), 0)
                elif os.path.isdir(path):
                    if dirs:
                        out[path] = ("dir", b"", st.st_mode & 0o7777)
                else:
                    with open(path, "rb") as fh:
                        out[path] = ("file", fh.read(), st.st_mode & 0o7777)
    return out


def local_connection() -> Connection:
    """The core's local transport, as the gateway opens it for ``--connection_type local``."""
    from .connections import LocalConnection

    return LocalConnection()


def _registry(registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    from tlsgate.registry import get_registry

    return get_registry()


def check_discovery_is_read_only(case: Case, registry: Registry | None = None) -> list[Node]:
    """Discover twice; nothing changes, both answers are equal. Returns the nodes."""
    reg = _registry(registry)
    before = case.snapshot()
    first = reg.discover_nodes(case.endpoint, case.connection)
    second = reg.discover_nodes(case.endpoint, case.connection)
    _same(before, case.snapshot(), "discovery changed the endpoint")
    assert [n.to_json() for n in first] == [n.to_json() for n in second], "two discoveries disagree"
    return first


def check_dry_run_changes_nothing(case: Case, registry: Registry | None = None) -> InstallResult:
    """A dry run returns a plan (``dry_run=True``, at least one step) and changes nothing."""
    reg = _registry(registry)
    before = case.snapshot()
    result = reg.install(case.endpoint, case.connection, case.bundle, list(case.nodes), True, case.alias)
    _same(before, case.snapshot(), "a dry run changed the endpoint")
    assert result.dry_run, "a dry run's result says dry_run=False"
    assert result.plan, "a dry run returned an empty plan"
    assert not result.files_written, f"a dry run reports files written: {result.files_written}"
    return result


def check_failed_install_restores(case: Case, registry: Registry | None = None) -> OperationError:
    """Make the install fail after its first write (the next read, write or rename raises, or
    the next command fails, whichever the driver does first; or, with ``case.inject``, at the step
    of the peer it arms) and check it raised OperationError with ``rolled_back=True`` and restored
    every file (the whole snapshot) exactly."""
    reg = _registry(registry)
    before = case.snapshot()
    if case.inject is not None:
        connection = case.connection
        fired = case.inject()
        missed = "the install succeeded although the peer failed the injected step"
        unarmed = "the install never reached the step the peer was told to fail"
    else:
        connection = broken = FailAfterFirstWrite(case.connection)
        fired = lambda: broken.failed  # noqa: E731
        missed = "the install succeeded although a write after the first one failed"
        unarmed = "the install wrote nothing, so no failure could be injected"
    try:
        reg.install(case.endpoint, connection, case.bundle, list(case.nodes), False, case.alias)
    except OperationError as exc:
        assert fired(), f"the install failed before the injected failure: {exc}"
        assert exc.rolled_back, f"the install failed without rolling back: {exc}"
        _same(before, case.snapshot(), "a failed install did not restore every file")
        return exc
    raise AssertionError(missed if fired() else unarmed)


def check_behaviour(case: Case, registry: Registry | None = None) -> None:
    """The three behavioural promises, in order: read-only discovery, dry run, restore on failure."""
    check_discovery_is_read_only(case, registry)
    check_dry_run_changes_nothing(case, registry)
    check_failed_install_restores(case, registry)


def _same(before: object, after: object, what: str) -> None:
    if before == after:
        return
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        changed = sorted(k for k in {*before, *after} if before.get(k) != after.get(k))
        raise AssertionError(f"{what}: {', '.join(map(str, changed[:10]))}")
    raise AssertionError(what)


class FailAfterFirstWrite(Connection):
    """Wraps a connection; after the first successful ``write_file``, the next ``read_file``,
    ``write_file`` or ``rename`` raises, or, if a command comes first, that command fails (exit
    1). Only once: the driver's restore then runs on a working connection."""

    def __init__(self, inner: Connection) -> None:
        self.inner = inner
        self.platform = inner.platform
        self.host = inner.host
        self.insecure = inner.insecure
        self.wrote = False
        self.failed = False

    def _trip(self) -> bool:
        if self.wrote and not self.failed:
            self.failed = True
            return True
        return False

    def run(self, argv: Sequence[str], **kwargs: Any) -> CommandResult:
        if self._trip():
            return CommandResult(tuple(argv), 1, "", "injected failure (tlsgate_testing.contract)")
        return self.inner.run(argv, **kwargs)

    def run_powershell(self, template: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> CommandResult:
        if self._trip():
            return CommandResult(("powershell",), 1, "", "injected failure (tlsgate_testing.contract)")
        return self.inner.run_powershell(template, params, **kwargs)

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        if self._trip():
            raise OperationError(f"{self.host}: {path}: injected write failure (tlsgate_testing.contract)")
        self.inner.write_file(path, data, mode=mode)
        self.wrote = True

    def write_file_if(self, path: str, data: bytes, *, mode: int = 0o644, expect: bytes | None) -> None:
        if self._trip():
            raise OperationError(f"{self.host}: {path}: injected write failure (tlsgate_testing.contract)")
        self.inner.write_file_if(path, data, mode=mode, expect=expect)
        self.wrote = True

    def realpath(self, path: str) -> str:
        return self.inner.realpath(path)

    def rename(self, src: str, dst: str) -> None:
        if self._trip():
            raise OperationError(f"{self.host}: {dst}: injected rename failure (tlsgate_testing.contract)")
        self.inner.rename(src, dst)

    def read_file(self, path: str) -> bytes:
        if self._trip():
            raise OperationError(f"{self.host}: {path}: injected read failure (tlsgate_testing.contract)")
        return self.inner.read_file(path)

    def stat(self, path: str) -> FileStat | None:
        return self.inner.stat(path)

    def remove(self, path: str) -> None:
        self.inner.remove(path)

    def listdir(self, path: str) -> list[str]:
        return self.inner.listdir(path)

    def makedirs(self, path: str, *, mode: int = 0o755) -> None:
        self.inner.makedirs(path, mode=mode)

    def chown_like(self, path: str, reference: str) -> None:
        self.inner.chown_like(path, reference)

    def set_mtime(self, path: str, mtime: float) -> None:
        self.inner.set_mtime(path, mtime)

    def glob(self, pattern: str) -> list[str]:
        return self.inner.glob(pattern)

    def which(self, program: str) -> str | None:
        return self.inner.which(program)

    def is_admin(self) -> bool:
        return self.inner.is_admin()

    def systemd_running(self) -> bool:
        return self.inner.systemd_running()

    @property
    def path(self) -> ModuleType:
        return self.inner.path

    def close(self) -> None:
        """The wrapped connection belongs to the caller."""
