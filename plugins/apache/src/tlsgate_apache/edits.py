"""Planning in-place edits: only the arguments of ``SSLCertificateFile``,
``SSLCertificateKeyFile`` and (where the vhost already has one, and a single pair)
``SSLCertificateChainFile``.

A vhost that inherits its pair from the server level gets its own two directives, added on the
line after its ``<VirtualHost>`` tag, rather than a change to the server-level pair (which every
other inheriting vhost reads). A directive that several vhosts read (an included snippet) is only
changed when all of those vhosts are chosen.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

import attrs
from tlsgate.plugin import CertificateBundle, Connection, Edit, OperationError, key_kind, read_certificate

from .config import ApacheConfig, VHostSection
from .lexer import Directive, quote


@attrs.frozen
class Paths:
    cert: str
    key: str
    chain: str


def _pair_index(config: ApacheConfig, connection: Connection, certs_: list[Directive], bundle: CertificateBundle) -> int:
    """Which of several certificate pairs (RSA + ECDSA) to replace: the one of the same key type."""
    if len(certs_) == 1:
        return 0
    want = key_kind(bundle.key)
    for i, d in enumerate(certs_):
        path = config.resolve(connection, d.args[0]) if d.args else None
        if path and read_certificate(connection, path).key_kind == want:
            return i
    return 0


def _line_indent(data: bytes, offset: int) -> bytes:
    line_start = data.rfind(b"\n", 0, offset) + 1
    m = re.match(rb"[ \t]*", data[line_start:offset])
    return m.group(0) if m else b""


def _newline(data: bytes) -> bytes:
    return b"\r\n" if b"\r\n" in data[:4096] else b"\n"


def _after_line(data: bytes, offset: int) -> int:
    eol = data.find(b"\n", offset)
    return len(data) if eol < 0 else eol + 1


def _argument(d: Directive, value: str, data: bytes) -> Edit:
    if "${" in " ".join(d.args):
        raise OperationError(
            f"{d.where()}: {d.name} uses a variable ({' '.join(d.args)}); tlsgate replaces only a path written "
            "out (a Define or environment variable may name other files too): write this one out, then install again"
        )
    if not d.spans:
        raise OperationError(f"{d.where()}: {d.name} has no argument")
    start, end = d.spans[0]
    old = data[start:end]
    text = quote(value)
    q = old[:1].decode()
    if q in ("'", '"') and q not in value and "\\" not in value:
        text = q + value + q  # keep the operator's quoting style
    return start, end, text.encode()


def plan_edits(
    config: ApacheConfig,
    connection: Connection,
    chosen: Sequence[VHostSection],
    bundle: CertificateBundle,
    paths: Paths,
) -> dict[str, list[Edit]]:
    """Per file, the edits that point the chosen vhosts at the new files."""
    users: dict[tuple[str, int], list[VHostSection]] = defaultdict(list)
    for section in config.vhosts.values():
        for d in section.directives:
            users[(d.file, d.start)].append(section)
    chosen_ids = {id(s) for s in chosen}
    edits: dict[str, list[Edit]] = defaultdict(list)
    done: set[tuple[str, int]] = set()

    def edit(d: Directive, value: str) -> None:
        others = [s for s in users[(d.file, d.start)] if id(s) not in chosen_ids]
        if others:
            where = ", ".join(s.locator for s in others[:3])
            raise OperationError(
                f"{d.where()}: {d.name} is shared with vhosts not chosen ({where}); choose them too "
                "or give each vhost its own directive"
            )
        if (d.file, d.start) not in done:
            done.add((d.file, d.start))
            edits[d.file].append(_argument(d, value, config.files[d.file]))

    for section in chosen:
        certs_ = section.named("sslcertificatefile")
        keys = section.named("sslcertificatekeyfile")
        if not certs_:
            data = config.files[section.file]
            tag = section.directive
            indent = _line_indent(data, tag.start) + b"    "
            nl = _newline(data)
            text = (
                indent + b"SSLCertificateFile " + quote(paths.cert).encode() + nl
                + indent + b"SSLCertificateKeyFile " + quote(paths.key).encode() + nl
            )
            at = _after_line(data, tag.end)
            if at == len(data) and not data.endswith(b"\n"):
                text = nl + text
            edits[section.file].append((at, at, text))
            continue
        if keys and len(keys) != len(certs_):
            raise OperationError(
                f"{section.locator}: {len(certs_)} SSLCertificateFile but {len(keys)} SSLCertificateKeyFile "
                "directives; fix the vhost first"
            )
        i = _pair_index(config, connection, certs_, bundle)
        edit(certs_[i], paths.cert)
        if keys:
            edit(keys[i], paths.key)
        else:  # the key lived inside the certificate file: give the vhost its own key directive
            d = certs_[i]
            data = config.files[d.file]
            nl = _newline(data)
            at = _after_line(data, d.end)
            text = _line_indent(data, d.start) + b"SSLCertificateKeyFile " + quote(paths.key).encode() + nl
            if at == len(data) and not data.endswith(b"\n"):
                text = nl + text
            edits[d.file].append((at, at, text))
        if len(certs_) > 1:
            # One chain file for several pairs (RSA + ECDSA, often from different intermediates):
            # pointing it at this pair's chain would break the other pair's. The new certificate
            # file holds its own chain, which OpenSSL sends for that pair instead of the shared one.
            continue
        for chain in section.named("sslcertificatechainfile"):
            edit(chain, paths.chain)
    return dict(edits)


def uses_chain_file(chosen: Sequence[VHostSection]) -> bool:
    """Whether a chosen vhost gets the chain as a file of its own (one with a single pair that
    names an SSLCertificateChainFile; see :func:`plan_edits`)."""
    return any(s.named("sslcertificatechainfile") for s in chosen if len(s.named("sslcertificatefile")) == 1)
