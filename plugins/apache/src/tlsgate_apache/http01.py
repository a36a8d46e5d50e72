"""Answering an ACME http-01 challenge from the apache endpoint itself.

Every ``<VirtualHost>`` serving the domain over plain HTTP on the CA's port gets, on the line
after its tag, an exact-match ``AliasMatch "^/\\.well-known/acme-challenge/<token>$"`` to a
file holding the key authorization (in a ``tlsgate-acme-challenge`` folder under the endpoint's
``--certs_dir``, which httpd's worker user must be able to traverse and read) with a ``<Directory>`` granting access to it.
mod_alias is loaded in every stock httpd; httpd has no directive that answers a fixed body.
All of it is a :class:`tlsgate.plugin.Transaction`: ``apachectl -t``, graceful restart, the
answer checked over HTTP, every file restored on failure; the cleanup restores every file byte
for byte, removes the folder it made and restarts gracefully again.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from tlsgate.plugin import (
    Connection,
    Endpoint,
    OperationError,
    Transaction,
    apply_edits,
    expect_http_answer,
    http01_path,
    probe_host,
    undo_later,
)

from .config import ApacheConfig, VHostSection
from .control import ApacheControl, VHostEntry, describe_failure
from .discovery import is_ssl
from .lexer import quote

CHALLENGE_DIR = "tlsgate-acme-challenge"


def name_matches(pattern: str, domain: str) -> bool:
    """ServerName / ServerAlias matching (``*`` and ``?`` wildcards, case-insensitive)."""
    import fnmatch

    return fnmatch.fnmatchcase(domain, pattern.lower().rstrip("."))


def plain_http_vhosts(config: ApacheConfig, domain: str, port: int) -> list[tuple[VHostEntry, VHostSection]]:
    out: list[tuple[VHostEntry, VHostSection]] = []
    for entry in config.run.vhosts:
        section = config.vhosts.get((entry.file, entry.line))
        if section is None or entry.port != port or is_ssl(config, section):
            continue
        if any(name_matches(n, domain) for n in (entry.name, *entry.aliases)) and all(
                s is not section for _, s in out):
            out.append((entry, section))
    return out


def answer_http01(endpoint: Endpoint, connection: Connection, domain: str, token: str, key_authorization: str,
                  http_port: int) -> Callable[[], None]:
    url_path = http01_path(token, key_authorization)
    pattern = "^" + re.escape(url_path) + "$"  # AliasMatch: a regex, anchored = an exact match
    from .discovery import discover

    control = ApacheControl.find(connection, endpoint.options.apachectl_path)
    config, _vnodes = discover(connection, control)
    vhosts = plain_http_vhosts(config, domain, http_port)
    if not vhosts:
        raise OperationError(f"http-01 for {domain}: no <VirtualHost> on {endpoint.name!r} serves it over plain "
                             f"HTTP on port {http_port} (add one, or give --http_port)")
    if control.running_pid(config.run) is None:
        raise OperationError(f"http-01 for {domain}: httpd on {endpoint.name!r} is not running")
    path = connection.path
    folder = path.join(endpoint.options.certs_dir, CHALLENGE_DIR)
    answer = path.join(folder, token)
    edits: dict[str, list[tuple[int, int, bytes]]] = {}
    for _entry, section in vhosts:
        data = config.files[section.file]
        tag_end = section.directive.end
        newline = "\r\n" if b"\r\n" in data else "\n"
        lines = [f"# tlsgate: temporary ACME http-01 answer for {domain}",
                 f"AliasMatch {quote(pattern)} {quote(answer)}",
                 f"<Directory {quote(folder)}>", "    Require all granted", "</Directory>"]
        text = "".join(f"{newline}    {line}" for line in lines)
        edits.setdefault(section.file, []).append((tag_end, tag_end, text.encode()))
    made: list[str] = []  # the folders this answer creates (outermost first), removed again
    probe = folder
    while not connection.exists(probe):
        made.insert(0, probe)
        parent = path.dirname(probe)
        if parent == probe:
            break
        probe = parent

    def graceful(what: str) -> None:
        result = connection.run(control.argv("-k", "graceful"), privileged=True)
        if not result.ok:
            raise OperationError(f"{what} failed: {describe_failure(result)}")

    def remove_folders() -> None:
        for d in reversed(made):
            connection.run(["rm", "-d", "--", d], privileged=True)  # rm: in the sudoers rule already

    tx = Transaction(connection, label=f"apache http-01 answer for {domain} on {endpoint.name}")
    with tx:
        if made:
            connection.makedirs(folder)
            tx.undo(remove_folders, f"remove {made[0]}")
        tx.write(answer, key_authorization.encode(), mode=0o644)
        for file, file_edits in edits.items():
            tx.write(control.realpath(file), apply_edits(config.files[file], file_edits))
        test = connection.run(control.argv("-t"), privileged=True)
        if not test.ok:
            raise OperationError(f"apachectl -t failed: {describe_failure(test)}")
        tx.on_rollback(lambda: graceful("graceful restart with the restored files"), "graceful restart")
        graceful("apachectl -k graceful")
        entry = vhosts[0][0]
        ip = "*" if entry.ip == "_default_" else entry.ip
        local = endpoint.connection.type == "local"
        expect_http_answer(probe_host(ip, endpoint.connection.host, local), http_port, domain,
                           url_path, key_authorization)

    return undo_later(tx, f"the http-01 answer for {domain} from {endpoint.name!r}")
