"""Installing a certificate into chosen server blocks, as one transaction.

Only the arguments of ``ssl_certificate`` / ``ssl_certificate_key`` change; every other byte of
every file stays. The new key and full chain go to *new* files named after the certificate
(``tlsgate-<name>-<fingerprint>.fullchain.pem`` / ``.key.pem``), never over files other blocks
may read.

A server block that inherits its certificate from ``http`` gets its own two directives (added
after its ``{``) rather than a change to the shared ones: changing the http-level pair would
change every other block that inherits it. A directive that several server blocks read (an
included snippet) is only changed when all of those blocks are chosen; otherwise the install is
refused, because adding a second ``ssl_certificate`` to a block would add a certificate pair, not
replace one.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tlsgate.plugin import (
    OperationError,
    Transaction,
    ValidationError,
    apply_edits,
    expect_fingerprints,
    expect_served,
    key_kind,
    key_matches,
    package_file_routes,
    read_certificate,
    refuse_pending,
    remove_superseded,
    require_names_covered,
    served_fingerprints,
)

from .control import describe_failure, find_control, master_running, wait_workers_retired, worker_pids
from .discovery import claimed_listens, default_servers, discover, handshake_target, resolve
from .lexer import quote

if TYPE_CHECKING:
    from tlsgate.plugin import CertificateBundle, Connection, Edit, Endpoint, InstallResult, Node, Target

    from .config import NginxConfig, ServerBlock
    from .control import NginxControl
    from .lexer import Directive


def _insertion(data: bytes, server: Directive, pairs: Sequence[tuple[str, str]]) -> Edit:
    """Where and what to add to a block that has no ssl_certificate of its own: ``pairs`` of
    (certificate, key) values, in order."""
    body = server.body
    eol = data.find(b"\n", body)
    rest = data[body : eol if eol >= 0 else len(data)]
    lines = [line for cert, key in pairs
             for line in (f"ssl_certificate {quote(cert)};", f"ssl_certificate_key {quote(key)};")]
    if eol >= 0 and (not rest.strip() or rest.strip().startswith(b"#")):
        indent = _indent_of_children(data, server)
        newline = "\r\n" if data[eol - 1 : eol] == b"\r" else "\n"  # keep the file's line endings
        text = "".join(f"{indent}{line}{newline}" for line in lines)
        return eol + 1, eol + 1, text.encode()
    return body, body, (" " + " ".join(lines)).encode()


def _indent_of_children(data: bytes, server: Directive) -> str:
    for child in server.block or ():
        line_start = data.rfind(b"\n", 0, child.start) + 1
        prefix = data[line_start : child.start]
        if not prefix.strip():
            return prefix.decode()
    line_start = data.rfind(b"\n", 0, server.start) + 1
    m = re.match(rb"[ \t]*", data[line_start : server.start])
    return (m.group(0) if m else b"").decode() + "    "


def _pair_for(config: NginxConfig, connection: Connection, server: ServerBlock, bundle: CertificateBundle) -> int:
    """Which certificate pair of the block to replace: the one whose key type matches."""
    certs_, keys = server.cert_directives, server.key_directives
    if len(certs_) != len(keys):
        raise OperationError(
            f"{config.where(server.directive)}: {len(certs_)} ssl_certificate but {len(keys)} "
            "ssl_certificate_key directives; fix the block first"
        )
    if len(certs_) == 1:
        return 0
    want = key_kind(bundle.key)
    for i, d in enumerate(certs_):
        if d.args and "$" not in d.args[0]:
            if read_certificate(connection, resolve(config, connection, d.args[0])).key_kind == want:
                return i
    return 0


def plan_edits(config: NginxConfig, connection: Connection, chosen: Sequence[ServerBlock], bundle: CertificateBundle,
               cert_path: str, key_path: str) -> dict[str, list[Edit]]:
    """Per file, the edits that point the chosen blocks at ``cert_path`` / ``key_path``."""
    users: dict[tuple[str, int], list[ServerBlock]] = defaultdict(list)
    for server in config.servers:
        if not server.inherited:
            for d in server.cert_directives + server.key_directives:
                users[(d.file, d.start)].append(server)
    chosen_ids = {id(s) for s in chosen}
    edits: dict[str, list[Edit]] = defaultdict(list)
    done: set[tuple[str, int]] = set()
    for server in chosen:
        if server.inherited or not server.cert_directives:
            data = config.files[server.file]
            pairs = [(cert_path, key_path)]
            if server.inherited and len(server.cert_directives) > 1:
                # A block's own ssl_certificate replaces every pair it inherited from http: keep
                # the inherited pairs of the other key types (an RSA + ECDSA http level) beside
                # the new one, as written (relative paths mean the same in any file).
                i = _pair_for(config, connection, server, bundle)
                pairs = [(cert_path, key_path) if j == i else (c.args[0], k.args[0])
                         for j, (c, k) in enumerate(zip(server.cert_directives, server.key_directives, strict=True))]
                if any("$" in v for pair in pairs for v in pair):
                    raise OperationError(f"{config.where(server.directive)}: an inherited ssl_certificate uses "
                                         "variables; give the block its own pairs first")
            edits[server.file].append(_insertion(data, server.directive, pairs))
            continue
        i = _pair_for(config, connection, server, bundle)
        for d, value in ((server.cert_directives[i], cert_path), (server.key_directives[i], key_path)):
            if "$" in " ".join(d.args):
                raise OperationError(
                    f"{config.where(d)}: {d.name} uses variables ({' '.join(d.args)}); tlsgate will not "
                    "replace a per-request certificate path"
                )
            others = [s for s in users[(d.file, d.start)] if id(s) not in chosen_ids]
            if others:
                names = ", ".join(f"{s.names[0] if s.names else '_'} ({s.locator})" for s in others[:3])
                raise OperationError(
                    f"{config.where(d)}: {d.name} is shared with server blocks not chosen: {names}; "
                    "choose them too or give each block its own directive"
                )
            if (d.file, d.start) in done:
                continue
            done.add((d.file, d.start))
            start, end = d.spans(config.files[d.file])[0]
            edits[d.file].append((start, end, quote(value).encode()))
    return dict(edits)


#: what an operator can do when the directive lives in a package's file tlsgate does not copy
PACKAGE_FIX = ("give the server block its own ssl_certificate / ssl_certificate_key instead of the packaged "
               "include, then install again")


def select_servers(
    pairs: Sequence[tuple[Node, ServerBlock]], wanted: Sequence[Node], bundle: CertificateBundle
) -> list[ServerBlock]:
    """The server blocks to change: those of the chosen nodes, else those whose names the
    certificate covers."""
    chosen: list[ServerBlock] = []
    if wanted:
        # indexes built once: a deploy passes every node that served the old certificate
        # (thousands), and a scan of every pair per wanted node was quadratic
        by_key: dict[str, list[tuple[Node, ServerBlock]]] = defaultdict(list)
        by_name: dict[str, list[tuple[Node, ServerBlock]]] = defaultdict(list)
        https_blocks: set[int] = set()
        for n, s in pairs:
            by_key[n.key].append((n, s))
            by_name[n.name].append((n, s))
            if n.protocol == "https":
                https_blocks.add(id(s))
        chosen_ids: set[int] = set()
        for want in wanted:
            match = by_key.get(want.key) or [
                (n, s) for n, s in by_name.get(want.name, ())
                if (want.port is None or n.port == want.port) and (want.ip is None or n.ip == want.ip)
            ]
            if not match:
                raise ValidationError(f"no such node on this endpoint: {want.name}", option="--node")
            # core passes every node the --node value names: a block that listens on plain http
            # too (listen 80; listen 443 ssl;) is chosen by its https listens; only a block
            # without any is refused
            for node, server in match:
                if id(server) not in https_blocks:
                    raise ValidationError(
                        f"{node.name} ({node.ip}:{node.port}) is plain http; add 'ssl' to its listen first",
                        option="--node",
                    )
                if id(server) not in chosen_ids:
                    chosen_ids.add(id(server))
                    chosen.append(server)
        return chosen
    taken: set[int] = set()
    for node, server in pairs:
        if node.protocol != "https" or id(server) in taken:
            continue
        names = [n for n in (node.name, *node.alias) if n not in ("_", "") and not n.startswith("~")]
        # ".example.org" (example.org and every name under it) is chosen by a certificate for example.org
        if any(bundle.covers(n[1:] if n.startswith(".") else n) for n in names):
            taken.add(id(server))
            chosen.append(server)
    if not chosen:
        https = sorted({n.name for n, _ in pairs if n.protocol == "https"})
        raise ValidationError(
            f"the certificate ({', '.join(bundle.names) or bundle.subject}) covers none of the https "
            f"nodes ({', '.join(https) or 'none'}); choose nodes with --node",
            option="--node",
        )
    return chosen


#: Test seam: called after the new files are written and before ``nginx -t`` (tests use it to
#: break a file honestly on disk). Production code never sets it.
after_write_hook: Callable[[Connection, str, str], None] | None = None


def check_bundle(bundle: CertificateBundle) -> None:
    """Refuse a key that does not belong to the leaf before anything is reloaded."""
    if not key_matches(bundle.leaf, bundle.key):
        raise OperationError("the private key does not match the certificate")


def install_bundle(endpoint: Endpoint, connection: Connection, bundle: CertificateBundle, nodes: Sequence[Node],
                   dry_run: bool, *, local: bool | None = None) -> InstallResult:
    """The ``install`` hook. ``local``: the endpoint runs on the gateway (default: its connection type is ``local``)."""
    if local is None:
        local = endpoint.connection.type == "local"
    options = endpoint.options
    config, pairs = discover(connection, options.nginx_config_path)
    chosen = select_servers(pairs, nodes, bundle)
    path = connection.path
    # the endpoint's own directory beside the configuration (Debian: /etc/nginx/tlsgate/)
    certs_dir = options.certs_dir or path.join(config.conf_dir, CERTS_SUBDIR)
    stem = f"tlsgate-{bundle.default_alias()}-{bundle.fingerprint[:12]}"
    cert_path = path.join(certs_dir, f"{stem}.fullchain.pem")
    key_path = path.join(certs_dir, f"{stem}.key.pem")
    edits = plan_edits(config, connection, chosen, bundle, cert_path, key_path)
    routes = package_file_routes(connection, edits, certs_dir, fix=PACKAGE_FIX)
    control = find_control(connection, config, service=options.nginx_service)

    defaults = default_servers(config)
    chosen_ids = {id(s) for s in chosen}
    changed_nodes = [n for n, s in pairs if id(s) in chosen_ids and n.protocol == "https"]
    require_names_covered(bundle, changed_nodes)
    # the files of the configuration as nginx reads them, against the master's start
    refuse_pending(connection, sorted(config.files), control.master_pid if control.running else None, "nginx")
    kind = key_kind(bundle.key)  # a block with an RSA and an ECDSA pair is checked for the pair replaced
    claimed = claimed_listens(n for n, _ in pairs)
    changed = list(dict.fromkeys(
        t for n, s in pairs if id(s) in chosen_ids and (t := handshake_target(n, s, defaults, endpoint, local, kind, claimed))))
    # Only the changed blocks are handshaked here (what they served, to wait for after a
    # restore) and after the reload (the new certificate). The others are not edited; the
    # core's discoveries before and after the install show any of them serving something else
    # (an install into 3,000 blocks handshaked every block before and after, one by one).
    before: dict[Target, str] = {}
    if not dry_run and control.running:
        before = {t: fp for t, fp in served_fingerprints(changed).items() if fp}
    reloaded = False

    def reload_restored() -> None:
        # After the files are restored: reload only if the failed attempt reached nginx, then wait
        # until the changed nodes serve what they served before.
        if not reloaded:
            return
        old_workers = worker_pids(connection, control.master_pid) if control.master_pid else None
        connection.check(connection.run(control.reload_argv(), privileged=True), "nginx reload of the restored files")
        wait_workers_retired(connection, old_workers, VERIFY_DEADLINE)
        expect_fingerprints(before, deadline=VERIFY_DEADLINE)

    label = f"nginx install on {endpoint.name}"
    verified = False
    with Transaction(connection, dry_run=dry_run, label=label) as tx:
        check_bundle(bundle)
        tx.makedirs(certs_dir)
        tx.write_pem(bundle, key=key_path, cert=cert_path)
        for file, file_edits in edits.items():
            lines = sorted({config.line_at(file, e[0]) for e in file_edits})
            detail = "ssl_certificate/ssl_certificate_key at line " + ", ".join(map(str, lines))
            route = routes.get(file)
            if route is not None:
                route.write(tx, apply_edits(config.files[file], file_edits), detail)
                continue
            tx.write(file, apply_edits(config.files[file], file_edits), detail=detail, base=config.files[file])
        if after_write_hook is not None and not dry_run:
            after_write_hook(connection, cert_path, key_path)
        _run(tx, control.test_argv(), "nginx -t")
        if control.running:
            tx.on_rollback(reload_restored, "reload nginx with the restored files")
            old_workers = worker_pids(connection, control.master_pid) if not dry_run and control.master_pid else None
            try:
                reloaded = _run(tx, control.reload_argv(), "nginx reload")
            except BaseException as exc:
                # Ctrl-C (or a kill) while the reload command ran: nginx may have the signal
                # already, so the rollback reloads the restored files; a reload that failed did not
                reloaded = not isinstance(exc, Exception)
                raise
            if reloaded and not wait_workers_retired(connection, old_workers, VERIFY_DEADLINE):
                tx.messages.append("old nginx workers still accept connections; the reload may not have applied")
            if tx.step("verify", ", ".join(map(str, changed)) or "nothing reachable", "TLS handshake"):
                expect_served(changed, bundle.fingerprint, deadline=VERIFY_DEADLINE)
                verified = bool(changed)
                if not changed:
                    tx.messages.append("no changed node is reachable by handshake; not verified")
        else:
            tx.messages.append(f"nginx is not running (no master in {control.pid_file}); files installed, not reloaded")
    if verified:
        fresh, _ = discover(connection, options.nginx_config_path)
        removed = remove_superseded(connection, certs_dir, fresh.files.values(), keep=(cert_path, key_path))
        if removed:
            tx.messages.append("removed superseded tlsgate files no configuration references: " + ", ".join(removed))
    return tx.result(nodes=tuple(n.name for n in changed_nodes), verified=verified)


#: where new pairs go unless the endpoint names a directory (--certs_dir): beside the main config
CERTS_SUBDIR = "tlsgate"

#: How long a reload may take to show in handshakes (nginx reloads asynchronously).
VERIFY_DEADLINE = 20.0


def _run(tx: Transaction, argv: list[str], what: str) -> bool:
    """Run a step; True when it ran and succeeded (False only in a dry run)."""
    return tx.run(argv, what=what, explain=describe_failure, privileged=True) is not None


def restart_nginx(connection: Connection, config: NginxConfig, control: NginxControl | None = None, *,
                  service: str | None = None) -> str:
    """``nginx -t`` then reload, or start an nginx that is not running (as ``tls restart`` of
    Apache and Tomcat starts a stopped server); raises OperationError with nginx's reason.
    Returns what ran, and ``started`` when nginx was started."""
    control = control or find_control(connection, config, service=service)
    test = connection.run(control.test_argv(), privileged=True)
    if not test.ok:
        raise OperationError(f"nginx -t failed, not reloaded: {describe_failure(test)}")
    if not control.running:
        return _start_nginx(connection, config, control, service)
    res = connection.run(control.reload_argv(), privileged=True)
    if not res.ok:
        raise OperationError(f"nginx reload failed: {describe_failure(res)}")
    return " ".join(control.reload_argv())


#: How long a started nginx may take to write its pid file.
START_DEADLINE = 15.0


def _start_nginx(connection: Connection, config: NginxConfig, control: NginxControl, service: str | None) -> str:
    """Start the nginx of ``config``: through the endpoint's systemd unit when it names one
    (``--nginx_service``), else the binary with the configuration (``nginx -c FILE``, which
    daemonizes). A configuration that says ``daemon off`` runs under a supervisor that tlsgate
    does not know: refused with that reason rather than left running in the foreground."""
    if control.pid_file is None:  # 'pid off': whether an nginx runs cannot be told, so none is started
        raise OperationError("nginx's configuration says 'pid off': tlsgate cannot tell whether it runs; "
                             "nothing reloaded or started")
    daemon = config.main_directive("daemon")
    if service is None and daemon is not None and daemon.args[:1] == ["off"]:
        raise OperationError(f"nginx is not running (no master in {control.pid_file}) and its configuration says "
                             "'daemon off' (a supervisor runs it in the foreground): start it there, or name its "
                             "systemd unit with --nginx_service")
    argv = ["systemctl", "start", service] if service else control.base()
    res = connection.run(argv, privileged=True)
    if not res.ok:
        raise OperationError(f"nginx was not running and did not start: {describe_failure(res)}")
    end = time.monotonic() + START_DEADLINE
    while not master_running(connection, control.pid_file):
        if time.monotonic() > end:
            raise OperationError(f"nginx was started ({' '.join(argv)}) but no master wrote {control.pid_file} "
                                 f"within {START_DEADLINE:.0f} s")
        time.sleep(0.1)
    return "started: " + " ".join(argv)
