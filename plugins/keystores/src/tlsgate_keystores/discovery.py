"""Discovery for p12, jks and pem endpoints: read the keystore through the connection and list
one node per entry (nothing is written)."""

from __future__ import annotations

import shlex

import attrs
from tlsgate.plugin import Connection, Endpoint, Node, OperationError, reveal

from .entries import KeyEntry, Keystore, TrustedEntry, entry_nodes
from .errors import KeystoreError


@attrs.frozen
class Loaded:
    data: bytes
    store: Keystore
    key_data: bytes | None = None  # PEM: the separate key file's bytes, when it exists


def option_secret(options: object, name: str) -> str | None:
    return reveal(getattr(options, name, None))


def load(endpoint: Endpoint, connection: Connection) -> Loaded:
    """Read and decode the endpoint's file(s). Raises KeystoreError or OperationError."""
    opts = endpoint.options
    data = connection.read_file(opts.path)
    if endpoint.type == "p12":
        from . import p12_codec

        return Loaded(data, p12_codec.load(data, option_secret(opts, "store_password") or ""))
    if endpoint.type == "jks":
        from . import jks_codec

        return Loaded(data, jks_codec.load(data, option_secret(opts, "store_password") or ""))
    return _load_pem(endpoint, connection, data)


def _load_pem(endpoint: Endpoint, connection: Connection, data: bytes) -> Loaded:
    from . import pem_codec

    opts = endpoint.options
    key_data = None
    if opts.key_path and connection.exists(opts.key_path):
        key_data = connection.read_file(opts.key_path)
    content = pem_codec.parse(data, key_data)
    entries: list[KeyEntry | TrustedEntry] = []
    chain = pem_codec.ordered(content, option_secret(opts, "key_password"))
    if chain:
        entries.append(KeyEntry(connection.path.basename(opts.path), chain))
    return Loaded(data, Keystore("pem", entries, layout={"content": content}), key_data)


def failure(endpoint: Endpoint, connection: Connection, exc: KeystoreError) -> OperationError:
    where = f"{connection.host}: {endpoint.options.path}"
    if exc.kind in ("password", "key_password"):
        command = shlex.join(["tlsgate", "tls", "set", endpoint.name, exc.option, "-"])
        return OperationError(f"{where}: {exc}; set the right one with: {command}", host=connection.host)
    return OperationError(f"{where}: {exc}", host=connection.host)


def discover(endpoint: Endpoint, connection: Connection) -> list[Node]:
    try:
        loaded = load(endpoint, connection)
    except KeystoreError as exc:
        raise failure(endpoint, connection, exc) from None
    return entry_nodes(loaded.store, endpoint.type)
