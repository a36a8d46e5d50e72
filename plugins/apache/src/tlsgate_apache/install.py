"""Installing a certificate into chosen vhosts, as one transaction, and the graceful restart.

The order protects a running httpd (protocols.md section 0): ``apachectl -t`` passes a key that
does not match its certificate, and a graceful restart with that pair makes the parent exit. So,
after writing, the driver reads the written files back and checks key, certificate and chain
itself before ``apachectl -t`` and ``-k graceful``; after the graceful it watches both the
handshakes and the parent process. On any failure the files are restored and httpd gets a
graceful restart with them, or is started again if the failed attempt killed it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tlsgate.plugin import (
    OperationError,
    Transaction,
    ValidationError,
    apply_edits,
    key_kind,
    key_matches,
    package_file_routes,
    refuse_pending,
    remove_superseded,
    require_names_covered,
    served_fingerprints,
)

from .config import load
from .control import ApacheControl, describe_failure
from .discovery import claimed_addresses, discover, handshake_target
from .edits import Paths, plan_edits, uses_chain_file

if TYPE_CHECKING:
    from tlsgate.plugin import CertificateBundle, Connection, Endpoint, InstallResult, Node, Target

    from .config import ApacheConfig, VHostSection
    from .control import RunConfig
    from .discovery import VHostNode

#: How long a graceful restart may take to show in handshakes, and a restart to come up.
VERIFY_DEADLINE = 20.0

#: Test seam: called after the new files are written and before the driver's own checks (tests
#: use it to break a file honestly on disk). Production code never sets it.
after_write_hook: Callable[[Connection, Paths], None] | None = None


def select_sections(vnodes: Sequence[VHostNode], wanted: Sequence[Node], bundle: CertificateBundle) -> list[VHostSection]:
    """The vhosts to change: those of the chosen nodes, else those whose names the certificate covers."""
    chosen: list[VHostSection] = []
    taken: set[int] = set()
    if wanted:
        # indexes built once: a deploy passes every node that served the old certificate
        # (thousands), and a scan of every vhost per wanted node was quadratic
        by_key: dict[str, list[VHostNode]] = {}
        by_name: dict[str, list[VHostNode]] = {}
        for vn in vnodes:
            by_key.setdefault(vn.node.key, []).append(vn)
            by_name.setdefault(vn.node.name, []).append(vn)
        for want in wanted:
            match = by_key.get(want.key) or [
                vn for vn in by_name.get(want.name, ())
                if (want.port is None or vn.node.port == want.port) and (want.ip is None or vn.node.ip == want.ip)
            ]
            if not match:
                raise ValidationError(f"no such node on this endpoint: {want.name}", option="--node")
            for vn in match:
                if not vn.ssl:
                    raise ValidationError(
                        f"{vn.node.name} ({vn.node.ip}:{vn.node.port}) is plain http; enable SSLEngine in its "
                        "vhost first",
                        option="--node",
                    )
                if vn.section is None:
                    raise OperationError(f"{vn.node.locator}: the <VirtualHost> section could not be read")
                if id(vn.section) not in taken:
                    taken.add(id(vn.section))
                    chosen.append(vn.section)
        return chosen
    for vn in vnodes:
        if not vn.ssl or vn.section is None or id(vn.section) in taken:
            continue
        if any(bundle.covers(n) for n in (vn.node.name, *vn.node.alias) if n):
            taken.add(id(vn.section))
            chosen.append(vn.section)
    if not chosen:
        https = sorted({vn.node.name for vn in vnodes if vn.ssl})
        raise ValidationError(
            f"the certificate ({', '.join(bundle.names) or bundle.subject}) covers none of the https "
            f"nodes ({', '.join(https) or 'none'}); choose nodes with --node",
            option="--node",
        )
    return chosen


def check_bundle(bundle: CertificateBundle) -> None:
    """Refuse a key that does not belong to the leaf before anything is written."""
    if not key_matches(bundle.leaf, bundle.key):
        raise OperationError("the private key does not match the certificate")


def check_written(connection: Connection, paths: Paths, bundle: CertificateBundle) -> None:
    """Read the written files back and check them as httpd will load them: the first certificate
    of the certificate file is the new leaf, the key file's key belongs to it, and the chain
    parses. ``apachectl -t`` checks none of this, and a graceful restart with a mismatch kills
    httpd."""
    try:
        found = x509.load_pem_x509_certificates(connection.read_file(paths.cert))
    except ValueError as exc:
        raise OperationError(f"{paths.cert}: not a PEM certificate file ({exc})") from None
    if not found or found[0] != bundle.leaf:
        raise OperationError(f"{paths.cert}: does not start with the certificate being installed")
    try:
        key = serialization.load_pem_private_key(connection.read_file(paths.key), password=None)
    except (ValueError, TypeError) as exc:
        raise OperationError(f"{paths.key}: not an unencrypted PEM private key ({exc})") from None
    if not key_matches(found[0], key):
        raise OperationError(f"{paths.key}: the private key does not match the certificate {paths.cert}")
    if paths.chain != paths.cert:
        try:
            x509.load_pem_x509_certificates(connection.read_file(paths.chain))
        except ValueError as exc:
            raise OperationError(f"{paths.chain}: not a PEM chain file ({exc})") from None


def wait_serving(
    control: ApacheControl, run: RunConfig, expected: dict[Target, str], *, deadline: float, restart_dead: bool = False
) -> None:
    """Wait until each target serves its expected fingerprint while httpd is alive.

    With ``restart_dead`` a parent that has exited is started again (``-k start``); without it, a
    dead parent is an immediate failure naming httpd's last error.
    """
    end = time.monotonic() + deadline
    delay = 0.05
    started = False
    last: dict[Target, str | None] = {}
    while True:
        pid = control.running_pid(run)
        if pid is None:
            if not restart_dead:
                log = control.error_log_tail(run)
                raise OperationError("httpd exited during the graceful restart" + (f": {log}" if log else ""))
            if not started:
                started = True
                res = control.start(run)
                if not res.ok:
                    raise OperationError(f"httpd could not be started again: {describe_failure(res)}")
        else:
            # only what has not served its certificate yet, each round (in probe_many's pool)
            last.update(served_fingerprints([t for t, fp in expected.items() if last.get(t) != fp]))
            if all(last.get(t) == fp for t, fp in expected.items()):
                return
        if time.monotonic() >= end:
            if pid is None:
                raise OperationError("httpd is not running after a start")
            failing = [(t, fp) for t, fp in expected.items() if last.get(t) != fp]
            bad = "; ".join(
                f"{t}: {'no TLS answer' if last.get(t) is None else 'serves ' + str(last[t])[:16] + '...'}, "
                f"expected {fp[:16]}..."
                for t, fp in failing[:20]
            ) + (f"; and {len(failing) - 20} more" if len(failing) > 20 else "")  # one readable line
            raise OperationError(f"verification by TLS handshake failed: {bad}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _file_paths(connection: Connection, certs_dir: str, bundle: CertificateBundle, chain: bool) -> Paths:
    stem = f"tlsgate-{bundle.default_alias()}-{bundle.fingerprint[:12]}"
    join = connection.path.join
    cert = join(certs_dir, f"{stem}.crt")
    return Paths(cert=cert, key=join(certs_dir, f"{stem}.key"),
                 chain=join(certs_dir, f"{stem}.chain.crt") if chain and bundle.chain else cert)


def default_certs_dir(connection: Connection, server_root: str) -> str:
    """This server's own directory for tlsgate's files: ``tlsgate/`` in its ServerRoot
    (Debian: /etc/apache2/tlsgate/), never a directory every endpoint on the host shares."""
    return connection.path.join(server_root or "/etc/apache2", CERTS_SUBDIR)


CERTS_SUBDIR = "tlsgate"


def install_bundle(endpoint: Endpoint, connection: Connection, bundle: CertificateBundle, nodes: Sequence[Node],
                   dry_run: bool, *, local: bool | None = None) -> InstallResult:
    """The ``install`` hook. ``local``: the endpoint runs on the gateway (default: its connection type is ``local``)."""
    if local is None:
        local = endpoint.connection.type == "local"
    options = endpoint.options
    control = ApacheControl.find(connection, options.apachectl_path)
    config, vnodes = discover(connection, control)
    chosen = select_sections(vnodes, nodes, bundle)
    certs_dir = options.certs_dir or default_certs_dir(connection, config.run.server_root)
    paths = _file_paths(connection, certs_dir, bundle, uses_chain_file(chosen))
    edits = plan_edits(config, connection, chosen, bundle, paths)
    routes = package_file_routes(connection, edits, certs_dir, fix=PACKAGE_FIX)

    chosen_ids = {id(s) for s in chosen}
    changed_nodes = [vn for vn in vnodes if vn.section is not None and id(vn.section) in chosen_ids]
    kind = key_kind(bundle.key)  # a vhost with an RSA and an ECDSA pair is checked for the pair replaced
    claimed = claimed_addresses(vnodes)
    changed = list(dict.fromkeys(t for vn in changed_nodes
                                 if (t := handshake_target(vn, endpoint, local, kind, claimed))))
    require_names_covered(bundle, [vn.node for vn in changed_nodes if vn.ssl])
    pid_before = control.running_pid(config.run)  # read-only: a dry run plans what would happen
    # httpd's own list of its configuration files (DUMP_INCLUDES) against the master's start
    refuse_pending(connection, sorted(config.run.includes), pid_before, "httpd")
    # Only the changed vhosts are handshaked here (what they served, for a restore to wait for)
    # and after the graceful restart; the core's discoveries before and after the install show
    # any other vhost serving something else.
    before = {t: fp for t, fp in served_fingerprints(changed).items() if fp} if pid_before and not dry_run else {}
    signalled = False

    def recover() -> None:
        # The files are restored by now. If httpd was signalled it reads them again (graceful),
        # or, if the failed attempt killed it, is started again; then the old certificates must
        # be served once more.
        if not signalled:
            if pid_before is not None and not control.alive(pid_before):
                wait_serving(control, config.run, before, deadline=VERIFY_DEADLINE, restart_dead=True)
            return
        if control.running_pid(config.run) is not None:
            res = connection.run(control.argv("-k", "graceful"), privileged=True)
            if not res.ok:
                raise OperationError(f"graceful restart with the restored files failed: {describe_failure(res)}")
        wait_serving(control, config.run, before, deadline=VERIFY_DEADLINE, restart_dead=True)

    label = f"apache install on {endpoint.name}"
    verified = False
    with Transaction(connection, dry_run=dry_run, label=label) as tx:
        check_bundle(bundle)
        tx.makedirs(certs_dir)
        tx.write_pem(bundle, key=paths.key, cert=paths.cert, chain=paths.chain if paths.chain != paths.cert else None)
        for file, file_edits in edits.items():
            lines = sorted({config.line_at(file, e[0]) for e in file_edits})
            detail = "SSLCertificate* at line " + ", ".join(map(str, lines))
            route = routes.get(file)
            if route is not None:  # Debian's default-ssl.conf: an own copy, a2ensite's link repointed
                route.write(tx, apply_edits(config.files[file], file_edits), detail)
                continue
            real = control.realpath(file)
            where = "" if real == file else f" (through {file})"
            tx.write(real, apply_edits(config.files[file], file_edits), base=config.files[file], detail=detail + where)
        if not dry_run:
            if after_write_hook is not None:
                after_write_hook(connection, paths)
            check_written(connection, paths, bundle)
        else:
            tx.step("check", paths.key, "key matches the certificate; chain parses")
        _run(tx, control.argv("-t"), "apachectl -t")
        if pid_before is not None:
            tx.on_rollback(recover, "graceful restart (or start) with the restored files")
            try:
                signalled = _run(tx, control.argv("-k", "graceful"), "apachectl -k graceful")
            except BaseException as exc:
                # Ctrl-C (or a kill) while apachectl ran: httpd may have its signal already, so the
                # rollback restarts it with the restored files; a graceful that failed did not
                signalled = not isinstance(exc, Exception)
                raise
            if tx.step("verify", ", ".join(map(str, changed)) or "nothing reachable", "TLS handshake"):
                wait_serving(control, config.run, dict.fromkeys(changed, bundle.fingerprint),
                             deadline=VERIFY_DEADLINE)
                verified = bool(changed)
                tx.messages.append("httpd restarted gracefully (apachectl -k graceful)")
                if not changed:
                    tx.messages.append("no changed vhost is reachable by handshake; not verified")
        else:
            tx.messages.append("httpd is not running; files installed, not started (run tls restart)")
    if verified:
        fresh = load(connection, control.dump())
        keep = {paths.cert, paths.key, paths.chain}
        removed = remove_superseded(connection, certs_dir, fresh.files.values(), keep=keep)
        if removed:
            tx.messages.append("removed superseded tlsgate files no configuration references: " + ", ".join(removed))
    return tx.result(nodes=tuple(dict.fromkeys(vn.node.name for vn in changed_nodes)), verified=verified)


#: what an operator can do when the directive lives in a package's file reached other than by a link
PACKAGE_FIX = ("give the vhost a file of its own (a site in sites-available enabled with a2ensite, or a "
               "conf.d file no package ships) with its own SSLCertificateFile / SSLCertificateKeyFile, then "
               "install again")


def _run(tx: Transaction, argv: list[str], what: str) -> bool:
    """Run a step; True when it ran and succeeded (False only in a dry run)."""
    return tx.run(argv, what=what, explain=describe_failure, privileged=True) is not None


def check_configured_pairs(config: ApacheConfig, connection: Connection, vnodes: Sequence[VHostNode]) -> None:
    """Before a graceful restart: every https vhost's key must match its certificate."""
    from .discovery import certificate_directives

    seen: set[tuple[str, str]] = set()
    for vn in vnodes:
        if not vn.ssl or vn.section is None:
            continue
        certs_ = certificate_directives(config, vn.section)
        keys = vn.section.named("sslcertificatekeyfile") if vn.section.named("sslcertificatefile") else (
            config.server_named("sslcertificatekeyfile")
        )
        for i, cd in enumerate(certs_):
            cert_path = config.resolve(connection, cd.args[0]) if cd.args else None
            key_arg = keys[i].args[0] if i < len(keys) and keys[i].args else (cd.args[0] if cd.args else "")
            key_path = config.resolve(connection, key_arg)
            if cert_path is None or key_path is None or (cert_path, key_path) in seen:
                continue
            seen.add((cert_path, key_path))
            try:
                cert = x509.load_pem_x509_certificates(connection.read_file(cert_path))[0]
                key = serialization.load_pem_private_key(connection.read_file(key_path), password=None)
            except (ValueError, TypeError, IndexError, OperationError):
                continue  # unreadable or encrypted: apachectl -t (or the passphrase dialog) decides
            if not key_matches(cert, key):
                raise OperationError(
                    f"{vn.node.locator}: {key_path} does not match {cert_path}; a graceful restart would "
                    "stop httpd, so it was not sent"
                )


def restart_apache(endpoint: Endpoint, connection: Connection) -> str:
    """``apachectl -t``, our own key/certificate check, then ``-k graceful`` (which starts httpd
    when it is not running); waits until the parent is alive."""
    control = ApacheControl.find(connection, endpoint.options.apachectl_path)
    test = connection.run(control.argv("-t"), privileged=True)
    if not test.ok:
        raise OperationError(f"apachectl -t failed, not restarted: {describe_failure(test)}")
    config, vnodes = discover(connection, control)
    check_configured_pairs(config, connection, vnodes)
    was = control.running_pid(config.run)
    res = connection.run(control.argv("-k", "graceful"), privileged=True) if was else control.start(config.run)
    if not res.ok:
        raise OperationError(f"apachectl -k {'graceful' if was else 'start'} failed: {describe_failure(res)}")
    # The parent reads the configuration again after the signal and may exit on what -t cannot
    # see (a port in use, a module failing); watch it for a moment.
    end = time.monotonic() + VERIFY_DEADLINE
    settled = time.monotonic() + 1.0
    while True:
        alive = control.running_pid(config.run) is not None
        if alive and time.monotonic() >= settled:
            break
        if not alive and (was or time.monotonic() > end):
            log = control.error_log_tail(config.run)
            raise OperationError("httpd is not running after the restart" + (f": {log}" if log else ""))
        time.sleep(0.1)
    return "graceful restart" if was else "started"
