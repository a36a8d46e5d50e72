"""Installing a certificate on HAProxy, as one transaction.

HAProxy reads a certificate, its chain and its key from one PEM file, named by ``crt`` (a file,
or a directory of them) or by a line of a ``crt-list``. So an install rewrites the file that
serves the chosen nodes, in place, as leaf + chain + key (mode 0600), and changes no
configuration. Every node served by that file changes with it: the install refuses when one of
them is a name the new certificate does not cover. Then ``haproxy -c`` checks the whole
configuration with the new file, HAProxy is reloaded, and a TLS handshake for every changed
node must return the new certificate; on any failure the files are restored, HAProxy is reloaded
again and the old certificates are checked by handshake.
"""

from __future__ import annotations

from collections.abc import Sequence

from tlsgate.plugin import (
    CertificateBundle,
    Connection,
    Endpoint,
    InstallResult,
    Node,
    OperationError,
    RestartResult,
    Target,
    Transaction,
    ValidationError,
    expect_served,
    key_kind,
    key_matches,
)

from .control import Control, describe_failure, find_control
from .discovery import Slot, load_config, probe_host, slots, sni_of

#: How long a reload may take to show in handshakes.
VERIFY_DEADLINE = 15.0


def choose(all_slots: Sequence[Slot], wanted: Sequence[Node], bundle: CertificateBundle) -> list[Slot]:
    """The slots to change: those of the chosen nodes (by key, else by name and address), else
    every https node whose name the certificate covers; of a multi-certificate bundle
    (``site.pem.rsa`` + ``site.pem.ecdsa``), only the member of the new key's type."""
    return _of_key_type(_choose(all_slots, wanted, bundle), key_kind(bundle.key))


def _of_key_type(chosen: list[Slot], kind: str) -> list[Slot]:
    members = [s for s in chosen if s.entry is not None and s.entry.bundle_kind is not None]
    if not members:
        return chosen
    fitting = [s for s in chosen if s.entry is None or s.entry.bundle_kind in (None, kind)]
    if not any(s in fitting for s in members):
        files = ", ".join(sorted({s.entry.path for s in members if s.entry is not None}))
        raise ValidationError(
            f"the chosen nodes are served by a multi-certificate bundle ({files}) with no member for a "
            f"{kind.upper()} key; install a certificate of one of its key types", option="--node")
    return fitting


def _choose(all_slots: Sequence[Slot], wanted: Sequence[Node], bundle: CertificateBundle) -> list[Slot]:
    https = [s for s in all_slots if s.entry is not None]
    if wanted:
        chosen: list[Slot] = []
        for want in wanted:
            match = [s for s in https if s.node.key == want.key] or [
                s for s in https if s.node.name == want.name and (want.port is None or s.node.port == want.port)]
            if not match:
                plain = [s for s in all_slots if s.entry is None and s.node.name == want.name]
                reason = "is a plain (non-ssl) bind" if plain else "is no node of this endpoint"
                raise ValidationError(f"{want.name} {reason}", option="--node")
            chosen += [s for s in match if s not in chosen]
        return chosen
    chosen = [s for s in https if bundle.covers(s.node.name)]
    if not chosen:
        names = sorted({s.node.name for s in https})
        raise ValidationError(
            f"the certificate ({', '.join(bundle.names) or bundle.subject}) covers none of the https nodes "
            f"({', '.join(names) or 'none'}); choose nodes with --node", option="--node")
    return chosen


def files_to_write(all_slots: Sequence[Slot], chosen: Sequence[Slot], bundle: CertificateBundle) -> dict[str, list[Slot]]:
    """Certificate file -> every slot it serves; refuse a file that also serves a name the new
    certificate does not cover."""
    paths = list(dict.fromkeys(s.entry.path for s in chosen if s.entry is not None))
    out: dict[str, list[Slot]] = {}
    for path in paths:
        users = [s for s in all_slots if s.entry is not None and s.entry.path == path]
        uncovered = sorted({s.node.name for s in users if s not in chosen and not bundle.covers(s.node.name)})
        if uncovered:
            raise ValidationError(
                f"{path} also serves {', '.join(uncovered)}, which the new certificate does not cover; give that "
                "name its own crt-list line or choose a certificate that covers it", option="--node")
        out[path] = users
    return out


def targets(endpoint: Endpoint, group: Sequence[Slot]) -> list[Target]:
    out = []
    for s in group:
        sni = sni_of(s.node.name)
        if sni is not None and s.node.port:
            host = probe_host("" if s.node.ip == "*" else str(s.node.ip), endpoint)
            kind = s.entry.bundle_kind if s.entry is not None else None
            t = Target(host, int(s.node.port), sni, key_kind=kind, proxy_protocol=s.bind.accept_proxy)
            if t not in out:
                out.append(t)
    return out


def install_bundle(endpoint: Endpoint, connection: Connection, bundle: CertificateBundle, nodes: Sequence[Node],
                   dry_run: bool) -> InstallResult:
    config_path = endpoint.options.haproxy_config_path
    config, all_slots = slots(endpoint, connection)
    chosen = choose(all_slots, nodes, bundle)
    files = files_to_write(all_slots, chosen, bundle)
    changed = [s for group in files.values() for s in group]
    control = find_control(connection, config_path, master_worker_config=config.master_worker,
                           daemon_config=config.daemon)
    check = targets(endpoint, changed)
    before = {s.node.key: s.node.fingerprint for s in changed}
    reloaded = False

    def reload_restored() -> None:
        if not reloaded:
            return
        # asked again: after a -sf reload the processes that serve are the new ones
        fresh = find_control(connection, config_path, master_worker_config=config.master_worker,
                             daemon_config=config.daemon)
        _reload(connection, fresh, "haproxy reload of the restored files")
        for fp in {fp for fp in before.values() if fp}:
            group = [s for s in changed if before[s.node.key] == fp]
            expect_served(targets(endpoint, group), fp, deadline=VERIFY_DEADLINE)

    verified = False
    with Transaction(connection, dry_run=dry_run, label=f"haproxy install on {endpoint.name}") as tx:
        if not key_matches(bundle.leaf, bundle.key):
            raise OperationError("the private key does not match the certificate")
        pem = bundle.fullchain_pem() + bundle.key_pem()
        for path, group in files.items():
            names = ", ".join(sorted({s.node.name for s in group}))
            tx.write(path, pem, mode=0o600, detail=f"leaf + chain + key, mode 600 (serves {names})")
        result = tx.run(control.test_argv(), what="haproxy -c", check=False)
        if result is not None and not result.ok:
            raise OperationError(f"haproxy -c failed, not reloaded: {describe_failure(result)}")
        if control.running:
            tx.on_rollback(reload_restored, "reload haproxy with the restored files")
            if tx.step("run", " ".join(control.reload_argv()), f"reload ({control.describe()})"):
                _reload(connection, control, "haproxy reload")
                reloaded = True
            if tx.step("verify", ", ".join(map(str, check)) or "nothing reachable", "TLS handshake"):
                expect_served(check, bundle.fingerprint, deadline=VERIFY_DEADLINE)
                verified = bool(check)
                if not check:
                    tx.messages.append("no changed node has a server name to probe; not verified by handshake")
        else:
            tx.messages.append(f"haproxy is not running with {config_path}; files installed and checked, not reloaded")
    return tx.result(nodes=tuple(dict.fromkeys(s.node.name for s in changed)), verified=verified)


def _reload(connection: Connection, control: Control, what: str) -> None:
    result = connection.run(control.reload_argv(), timeout=60)
    if not result.ok:
        raise OperationError(f"{what} failed: {describe_failure(result)}")


def restart_result(endpoint: Endpoint, connection: Connection) -> RestartResult:
    """The ``restart`` hook: ``haproxy -c``, then reload."""
    return RestartResult(True, f"haproxy -c passed; reloaded ({restart(endpoint, connection)})")


def restart(endpoint: Endpoint, connection: Connection) -> str:
    """``haproxy -c`` then reload; the reload's description."""
    config_path = endpoint.options.haproxy_config_path
    config = load_config(connection, config_path)
    control = find_control(connection, config_path, master_worker_config=config.master_worker,
                           daemon_config=config.daemon)
    test = connection.run(control.test_argv())
    if not test.ok:
        raise OperationError(f"haproxy -c failed, not reloaded: {describe_failure(test)}")
    if not control.running:
        raise OperationError(f"haproxy is not running with {config_path}; nothing to reload")
    _reload(connection, control, "haproxy reload")
    return control.describe()
