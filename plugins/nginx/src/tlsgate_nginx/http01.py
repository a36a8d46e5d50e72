"""Answering an ACME http-01 challenge from the nginx endpoint itself.

Every server block that serves the domain over plain HTTP on the CA's port gets, right after its
``{``, one exact-match location (``location = /.well-known/acme-challenge/<token>``, which
nginx prefers over every prefix and regex location) returning the key authorization. The edit is
a :class:`tlsgate.plugin.Transaction`: ``nginx -t``, reload, the answer checked over HTTP, and on
any failure every file is restored. The cleanup restores the files byte for byte and reloads again.
"""

from __future__ import annotations

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

from .config import NginxConfig, ServerBlock, load
from .control import describe_failure, find_control, wait_workers_retired, worker_pids
from .install import VERIFY_DEADLINE, _indent_of_children


def name_matches(pattern: str, domain: str) -> bool:
    """nginx ``server_name`` matching for exact and wildcard names (regex names are skipped)."""
    pattern = pattern.lower().rstrip(".")
    if not pattern or pattern.startswith("~"):
        return False
    if pattern.startswith("*."):
        return domain.endswith(pattern[1:]) and domain != pattern[2:]
    if pattern.startswith("."):
        return domain == pattern[1:] or domain.endswith(pattern)
    if pattern.endswith(".*"):
        return domain.startswith(pattern[:-1])
    return pattern == domain


def plain_http_servers(config: NginxConfig, domain: str, port: int) -> list[ServerBlock]:
    return [s for s in config.servers
            if any(listen.port == port and not listen.ssl and not listen.quic for listen in s.listens)
            and any(name_matches(n, domain) for n in s.names)]


def answer_http01(endpoint: Endpoint, connection: Connection, domain: str, token: str, key_authorization: str,
                  http_port: int) -> Callable[[], None]:
    url_path = http01_path(token, key_authorization)
    config = load(connection, endpoint.options.nginx_config_path)
    servers = plain_http_servers(config, domain, http_port)
    if not servers:
        raise OperationError(f"http-01 for {domain}: no server block on {endpoint.name!r} serves it over plain "
                             f"HTTP on port {http_port} (add one, or give --http_port)")
    control = find_control(connection, config, service=endpoint.options.nginx_service)
    if not control.running:
        raise OperationError(f"http-01 for {domain}: nginx on {endpoint.name!r} is not running "
                             f"(no master in {control.pid_file})")
    edits: dict[str, list[tuple[int, int, bytes]]] = {}
    for server in servers:
        data = config.files[server.file]
        body = server.directive.body
        newline = "\r\n" if b"\r\n" in data else "\n"
        indent = _indent_of_children(data, server.directive)
        # the comment on a line of its own: what follows '{' on the same line (a block written
        # on one line, its '}' included) must not become part of it
        text = (f"{newline}{indent}# tlsgate: temporary ACME http-01 answer{newline}{indent}location = {url_path} "
                f'{{ default_type text/plain; return 200 "{key_authorization}"; }}')
        edits.setdefault(server.file, []).append((body, body, text.encode()))

    def reload(what: str) -> None:
        old = worker_pids(connection, control.master_pid) if control.master_pid else None
        result = connection.run(control.reload_argv(), privileged=True)
        if not result.ok:
            raise OperationError(f"{what} failed: {describe_failure(result)}")
        wait_workers_retired(connection, old, VERIFY_DEADLINE)

    tx = Transaction(connection, label=f"nginx http-01 answer for {domain} on {endpoint.name}")
    with tx:
        for file, file_edits in edits.items():
            tx.write(file, apply_edits(config.files[file], file_edits))
        test = connection.run(control.test_argv(), privileged=True)
        if not test.ok:
            raise OperationError(f"nginx -t failed: {describe_failure(test)}")
        tx.on_rollback(lambda: reload("nginx reload of the restored files"), "reload nginx with the restored files")
        reload("nginx reload")
        listen = next(li for li in servers[0].listens if li.port == http_port and not li.ssl)
        expect_http_answer(probe_host(listen.ip, endpoint.connection.host, endpoint.connection.type == "local"),
                           http_port, domain, url_path, key_authorization)

    return undo_later(tx, f"the http-01 answer for {domain} from {endpoint.name!r}")
