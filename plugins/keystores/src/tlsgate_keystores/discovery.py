"""Discovery for p12, jks and pem endpoints: read the keystore through the connection and list
one node per entry (nothing is written)."""

from __future__ import annotations

import hashlib
import shlex
import threading
from collections import OrderedDict
from collections.abc import Callable

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


def load(endpoint: Endpoint, connection: Connection, store_password: str | None = None, *,
         authenticated: bytes | None = None) -> Loaded:
    """Read and decode the endpoint's file(s). Raises KeystoreError or OperationError.
    ``store_password``: the revealed ``--store_password`` when the caller has it already (each
    reveal decrypts the sealed secret again). ``authenticated``: bytes the caller has just opened
    with that password through cryptography's ``load_pkcs12`` (MAC verified); when the file still
    holds exactly them, a p12 decode does not compute the MAC again."""
    opts = endpoint.options
    data = connection.read_file(opts.path)
    if endpoint.type in ("p12", "jks"):
        if store_password is None:
            store_password = option_secret(opts, "store_password") or ""
        if endpoint.type == "p12":
            from . import p12_codec

            if authenticated is not None and authenticated == data:
                return Loaded(data, _decoded("p12", data, store_password,
                                             lambda d, p: p12_codec.load(d, p, authenticated=True)))
            return Loaded(data, _decoded("p12", data, store_password, p12_codec.load))
        from . import jks_codec

        return Loaded(data, _decoded("jks", data, store_password, jks_codec.load))
    return _load_pem(endpoint, connection, data)


# One install reads the keystore up to four times (discovery, the install itself, the read-back
# check, the re-discovery): twice the old bytes, twice the new. Decoding is the costly part (key
# derivations, ASN.1), so the last few decodings are kept, keyed on the exact bytes and password
# (a changed file is different bytes: it is decoded again). Every caller gets its own copy.
_DECODED: OrderedDict[tuple[str, bytes, bytes], Keystore] = OrderedDict()
_DECODED_LOCK = threading.Lock()
_DECODED_MAX = 32


def _decoded(kind: str, data: bytes, password: str, decode: Callable[[bytes, str], Keystore]) -> Keystore:
    key = (kind, hashlib.sha256(data).digest(), hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest())
    with _DECODED_LOCK:
        store = _DECODED.get(key)
        if store is not None:
            _DECODED.move_to_end(key)
    if store is None:
        store = decode(data, password)  # raises for a wrong password or a damaged file: not kept
        with _DECODED_LOCK:
            _DECODED[key] = store
            while len(_DECODED) > _DECODED_MAX:
                _DECODED.popitem(last=False)
    return Keystore(store.format, list(store.entries), list(store.extra), dict(store.layout))


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
