"""Install a certificate, its key and chain on chosen client-ssl profiles, atomically.

Order (new objects first, so the old material stays intact until the switch):

1. plan: the nodes' profiles, a new unique object name in each profile's partition, which
   ``certKeyChain`` entry each profile replaces (the one with the same key type), and which old
   objects nothing will reference afterwards;
2. upload ``<stem>.key``, ``<stem>.crt``, ``<stem>_chain.crt`` (file-transfer, Content-Range);
3. install them as new objects (``sys/crypto/key|cert`` ``command=install``), read the
   certificate back (fingerprint and expiry), and remove the uploaded files at once (the key
   travelled in clear and must not stay in ``/var/config/rest/downloads``);
4. repoint each profile with one PATCH of its whole ``certKeyChain`` (cert, key and chain
   together; several profiles go in one iControl transaction);
5. verify: read each profile back, and handshake to its virtual servers where reachable;
6. ``save sys config``;
7. delete the old objects nothing references any more.

Any failure in 2-6 repoints the old entries, deletes the new objects and the uploads, and
raises ``OperationError(rolled_back=True)``. A failure in 7 only adds a message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from tlsgate.plugin import (
    InstallResult,
    OperationError,
    PlanStep,
    Target,
    Transaction,
    ValidationError,
    expect_served,
    key_kind,
)

from .discovery import CERTS, KEYS, PROFILES, read_state, served_der
from .names import NONE, f5_fingerprint, object_stem, split_path, unique_stem, uri_name
from .rest import DOWNLOADS, F5Error

if TYPE_CHECKING:
    from tlsgate.plugin import CertificateBundle, Node

    from .discovery import Binding, DeviceState
    from .rest import F5Connection

#: ``save sys config`` writes every bigip*.conf; give it longer than an ordinary call.
SAVE_TIMEOUT = 300.0
#: How long a reachable virtual server may take to present the new certificate.
VERIFY_DEADLINE = 10.0
#: Objects BIG-IP itself ships and uses; never deleted even when no profile references them.
PROTECTED = {"/Common/default.crt", "/Common/default.key", "/Common/ca-bundle.crt", "/Common/f5-ca-bundle.crt"}


@attrs.frozen
class ProfileChange:
    profile: str
    old_entries: tuple[dict[str, Any], ...]
    new_entries: tuple[dict[str, Any], ...]
    replaced: dict[str, Any]
    virtuals: tuple[str, ...]


@attrs.frozen
class InstallPlan:
    stem: str
    partitions: tuple[str, ...]
    uploads: tuple[tuple[str, bytes], ...] = attrs.field(repr=False)
    changes: tuple[ProfileChange, ...]
    deletions: tuple[tuple[str, str], ...]  # (collection, full path)
    bindings: tuple[Binding, ...]
    messages: tuple[str, ...]

    def objects(self) -> list[tuple[str, str, str]]:
        """(kind, full path, uploaded name) of every object to create, key first."""
        out = []
        for part in self.partitions:
            out += [
                ("key", f"/{part}/{self.stem}.key", f"{self.stem}.key"),
                ("cert", f"/{part}/{self.stem}.crt", f"{self.stem}.crt"),
                ("chain", f"/{part}/{self.stem}_chain.crt", f"{self.stem}_chain.crt"),
            ]
        return out

    def steps(self) -> tuple[PlanStep, ...]:
        if not self.changes:
            return ()
        steps = [PlanStep("upload", f"{DOWNLOADS}/{name}", f"{len(data)} bytes") for name, data in self.uploads]
        what = {"key": "private key", "cert": "certificate", "chain": "issuer chain bundle"}
        for kind, path, name in self.objects():
            collection = "key" if kind == "key" else "cert"
            steps.append(PlanStep("api", path, f"install {what[kind]}: POST /mgmt/tm/sys/crypto/{collection} "
                                               f"from-local-file {DOWNLOADS}/{name}"))
        steps += [PlanStep("remove", f"{DOWNLOADS}/{name}", "uploaded file, once installed") for name, _ in self.uploads]
        for ch in self.changes:
            old, new = ch.replaced, _entry_for(ch)
            steps.append(PlanStep(
                "replace-entry", ch.profile,
                f"certKeyChain {new['name']!r}: cert {old.get('cert', NONE)} -> {new['cert']}, key "
                f"{old.get('key', NONE)} -> {new['key']}, chain {old.get('chain', NONE)} -> {new['chain']}; "
                f"virtual servers: {', '.join(ch.virtuals) or 'none'}",
            ))
        for ch in self.changes:
            steps.append(PlanStep("verify", ch.profile, "read back; TLS handshake to its virtual servers where reachable"))
        steps.append(PlanStep("api", "save sys config", "POST /mgmt/tm/sys/config command=save"))
        steps += [PlanStep("remove", path, "no profile references it any more") for _c, path in self.deletions]
        return tuple(steps)


def _entry_for(change: ProfileChange) -> dict[str, Any]:
    name = change.replaced.get("name", "default")
    return next(e for e in change.new_entries if e.get("name") == name)


def _clean_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry as PATCH wants it: no ``*Reference`` links, no read-only fields."""
    return {k: v for k, v in entry.items() if not k.endswith("Reference") and k not in ("appService",)}


def _entry_kind(state: DeviceState, entry: dict[str, Any]) -> str:
    key_type = str(state.keys.get(str(entry.get("key")), {}).get("keyType", ""))
    return "rsa" if key_type.startswith("rsa") else "ec" if key_type.startswith("ec") else "other"


def _current_names(state: DeviceState, binding: Binding) -> list[str]:
    """The host names a binding answers for: its SNI serverName, else its certificate's names."""
    if binding.server_name:
        return [binding.server_name]
    item = state.certs.get(state.primary_cert(binding.profile) or "", {})
    names = [
        part.strip()[4:] for part in str(item.get("subjectAlternativeName") or "").split(",")
        if part.strip().startswith("DNS:")
    ]
    if not names:
        for rdn in str(item.get("subject") or "").split(","):
            if rdn.strip().startswith("CN="):
                names.append(rdn.strip()[3:])
    return names


def choose_bindings(state: DeviceState, bundle: CertificateBundle, nodes: Sequence[Node]) -> list[Binding]:
    by_locator = {b.locator: b for b in state.bindings}
    if nodes:
        chosen, missing = [], []
        for node in nodes:
            binding = by_locator.get(node.locator)
            if binding is None:
                matches = [b for b in state.bindings if b.virtual == node.name]
                if not matches:
                    missing.append(node.name)
                chosen += matches
            else:
                chosen.append(binding)
        if missing:
            raise OperationError(
                f"node(s) no longer on the device: {', '.join(missing)}; run `tls discover` again"
            )
        return list(dict.fromkeys(chosen))
    covered = [b for b in state.bindings if (names := _current_names(state, b)) and all(bundle.covers(n) for n in names)]
    if not covered:
        raise ValidationError(
            f"the certificate ({', '.join(bundle.names) or bundle.subject}) covers no node's names "
            "(a profile's SNI server name, else its current certificate's names); choose nodes with --node",
            option="--node",
        )
    return covered


def plan_install(conn: F5Connection, bundle: CertificateBundle, nodes: Sequence[Node]) -> tuple[InstallPlan, DeviceState]:
    if not bundle.chain:
        raise ValidationError(
            "F5 BIG-IP needs the certificate's issuer chain; give the intermediate certificates with "
            "--chain (or a PFX that contains them)",
            option="--chain",
        )
    state = read_state(conn)
    bindings = choose_bindings(state, bundle, nodes)
    profiles = list(dict.fromkeys(b.profile for b in bindings))
    partitions = tuple(sorted({split_path(p)[0] for p in profiles}))
    taken = {split_path(path)[1] for path in [*state.certs, *state.keys] if split_path(path)[0] in partitions}
    cn = bundle.common_name or (bundle.names[0] if bundle.names else None)
    stem = unique_stem(object_stem(cn, bundle.not_after, bundle.leaf.serial_number), taken)
    kind = key_kind(bundle.key)
    kind = kind if kind in ("rsa", "ec") else "other"  # what BIG-IP's keyType tells apart
    changes, messages = [], []
    new_fp = f5_fingerprint(bundle.fingerprint)
    for profile in profiles:
        part = split_path(profile)[0]
        entries = [_clean_entry(e) for e in state.chain_entries(profile)]
        if not entries:
            top = state.profiles[profile]
            entries = [{"name": "default", "cert": top.get("cert", NONE), "key": top.get("key", NONE),
                        "chain": top.get("chain", NONE)}]
        index = next((i for i, e in enumerate(entries) if _entry_kind(state, e) == kind), 0)
        replaced = entries[index]
        if state.certs.get(str(replaced.get("cert")), {}).get("fingerprint") == new_fp:
            messages.append(f"{profile} already presents this certificate; left as it is")
            continue
        new_entry = {**{k: v for k, v in replaced.items() if k not in ("passphrase",)},
                     "cert": f"/{part}/{stem}.crt", "key": f"/{part}/{stem}.key", "chain": f"/{part}/{stem}_chain.crt"}
        new_entries = [*entries[:index], new_entry, *entries[index + 1:]]
        users = state.virtuals_using(profile)
        chosen_vs = {b.virtual for b in bindings if b.profile == profile}
        others = [v for v in users if v not in chosen_vs]
        if others:
            messages.append(f"{profile} is also used by {', '.join(others)}: they present the new certificate too")
        changes.append(ProfileChange(profile, tuple(entries), tuple(new_entries), replaced, tuple(users)))
    changed = {c.profile for c in changes}
    still = state.references(ignore=changed)
    for ch in changes:
        still |= {str(e.get(f)) for e in ch.new_entries for f in ("cert", "key", "chain") if e.get(f)}
    deletions: list[tuple[str, str]] = []
    for ch in changes:
        for field in ("cert", "key", "chain"):
            path = str(ch.replaced.get(field) or NONE)
            item = (KEYS if field == "key" else CERTS, path)
            if path != NONE and path not in still and path not in PROTECTED and item not in deletions:
                deletions.append(item)
    uploads = (
        (f"{stem}.key", bundle.key_pem()),
        (f"{stem}.crt", bundle.cert_pem()),
        (f"{stem}_chain.crt", bundle.chain_pem()),
    ) if changes else ()
    used_partitions = tuple(sorted({split_path(c.profile)[0] for c in changes}))
    plan = InstallPlan(stem, used_partitions, uploads, tuple(changes), tuple(deletions), tuple(bindings), tuple(messages))
    return plan, state


class _Uploads:
    """The files uploaded to ``/var/config/rest/downloads``: removed after the install, whether
    it succeeds or is undone (the key travelled in clear and must not stay there)."""

    def __init__(self, conn: F5Connection) -> None:
        self.conn = conn
        self.names: list[str] = []

    def remove(self) -> list[str]:
        errors = []
        for name in self.names:
            try:
                self.conn.remove_upload(name)
            except OperationError as exc:
                errors.append(str(exc))
        self.names.clear()
        return errors

    def remove_or_raise(self) -> None:
        errors = self.remove()
        if errors:
            raise OperationError("; ".join(errors))


def install_bundle(conn: F5Connection, bundle: CertificateBundle, nodes: Sequence[Node], *, dry_run: bool = False,
                   probe: Callable[[Binding], bytes | None] = served_der) -> InstallResult:
    plan, _state = plan_install(conn, bundle, nodes)
    node_names = tuple(dict.fromkeys(b.virtual for b in plan.bindings))
    messages = [*conn.messages, *plan.messages]
    if dry_run:
        return InstallResult(nodes=node_names, plan=plan.steps(), dry_run=True, messages=tuple(messages))
    if not plan.changes:
        return InstallResult(nodes=node_names, verified=True, messages=tuple(messages),
                             verified_by="reading the client-ssl profiles back (they already held the certificate)")
    uploads = _Uploads(conn)
    # Undone newest first: repoint the profiles, delete the new objects, then the uploads.
    with Transaction(conn, label=f"{conn.where}: install") as tx:
        tx.on_rollback(uploads.remove_or_raise, "remove the uploaded files")
        applied, handshaked = _apply(conn, plan, bundle, tx, uploads, probe)
        messages += applied
    messages += _cleanup(conn, plan, uploads)
    new_objects = tuple(path for _kind, path, _name in plan.objects())
    return InstallResult(nodes=node_names, files_written=new_objects, backups=tuple(tx.backups),
                         plan=plan.steps(), verified=True, messages=tuple(messages),
                         verified_by="TLS handshake" if handshaked else
                         "reading the client-ssl profiles back (no handshake: no virtual address reachable from the gateway)")


def _created(tx: Transaction, conn: F5Connection, collection: str, path: str) -> None:
    tx.undo(lambda: conn.delete(conn.object_path(collection, path), missing_ok=True), f"delete {path}")


def _apply(conn: F5Connection, plan: InstallPlan, bundle: CertificateBundle, tx: Transaction, uploads: _Uploads,
           probe: Callable[[Binding], bytes | None]) -> tuple[list[str], bool]:
    """Make the change; return its messages and whether a TLS handshake verified it."""
    messages: list[str] = []
    for name, data in plan.uploads:
        uploads.names.append(name)
        conn.upload(name, data)
    for kind, path, name in plan.objects():
        part, obj = split_path(path)
        collection = KEYS if kind == "key" else CERTS
        try:
            conn.post(f"/mgmt/tm/sys/crypto/{'key' if kind == 'key' else 'cert'}", {
                "command": "install", "name": obj, "partition": part, "from-local-file": f"{DOWNLOADS}/{name}",
            })
        except F5Error as exc:
            if exc.status != 409:  # 409: someone else's object of that name; never delete it
                _created(tx, conn, collection, path)
            raise
        except BaseException:
            _created(tx, conn, collection, path)  # it may exist (a timeout after the work)
            raise
        _created(tx, conn, collection, path)
    want = f5_fingerprint(bundle.fingerprint)
    for part in plan.partitions:
        item = conn.get(conn.object_path(CERTS, f"/{part}/{plan.stem}.crt"))
        if item.get("fingerprint") != want:
            raise OperationError(f"/{part}/{plan.stem}.crt reads back as {item.get('fingerprint')}, expected {want}")
        if item.get("expirationDate") not in (None, int(bundle.not_after.timestamp())):
            raise OperationError(f"/{part}/{plan.stem}.crt reads back with another expiry ({item.get('expirationString')})")
    _repoint(conn, plan, tx)
    for ch in plan.changes:
        entries = conn.get(conn.object_path(PROFILES, ch.profile)).get("certKeyChain") or []
        new = _entry_for(ch)
        if not any(all(e.get(f) == new[f] for f in ("cert", "key", "chain")) for e in entries):
            raise OperationError(f"{ch.profile} does not read back with the new certificate")
    checked, handshaked = _handshakes(plan, bundle, probe)
    messages += checked
    conn.post("/mgmt/tm/sys/config", {"command": "save"}, timeout=SAVE_TIMEOUT)
    return messages, handshaked


def _repointed(tx: Transaction, conn: F5Connection, change: ProfileChange) -> None:
    tx.undo(lambda: conn.patch(conn.object_path(PROFILES, change.profile), {"certKeyChain": list(change.old_entries)}),
            f"repoint {change.profile}")


def _repoint(conn: F5Connection, plan: InstallPlan, tx: Transaction) -> None:
    for ch in plan.changes:
        # The profile's old certKeyChain goes to the job's backup store, so that an operator can
        # see what it pointed at even if the gateway dies mid-install.
        data = json.dumps({"profile": ch.profile, "certKeyChain": list(ch.old_entries)}, indent=1)
        tx.save_backup(f"{PROFILES}/{uri_name(ch.profile)}#certKeyChain", data.encode())
    if len(plan.changes) == 1:
        ch = plan.changes[0]
        _repointed(tx, conn, ch)
        conn.patch(conn.object_path(PROFILES, ch.profile), {"certKeyChain": list(ch.new_entries)})
        return
    # Several profiles move together: one transaction, committed all-or-nothing by mcpd.
    trans = conn.post("/mgmt/tm/transaction", {})
    tid = str(trans.get("transId"))
    header = {"X-F5-REST-Coordination-Id": tid}
    try:
        for ch in plan.changes:
            conn.patch(conn.object_path(PROFILES, ch.profile), {"certKeyChain": list(ch.new_entries)}, headers=header)
    except BaseException:
        try:  # nothing was applied; do not leave the queued transaction behind
            conn.delete(f"/mgmt/tm/transaction/{tid}", missing_ok=True)
        except OperationError:
            pass
        raise
    for ch in plan.changes:
        _repointed(tx, conn, ch)
    conn.patch(f"/mgmt/tm/transaction/{tid}", {"state": "VALIDATING", "validateOnly": False})


def _handshakes(plan: InstallPlan, bundle: CertificateBundle,
                probe: Callable[[Binding], bytes | None]) -> tuple[list[str], bool]:
    """Handshake to each changed profile's virtual servers that the gateway can reach and where
    the profile is the one a client gets (its SNI name, or the only client-ssl profile); return
    the messages and whether any handshake took place."""
    changed = {c.profile for c in plan.changes if len(c.new_entries) == 1}
    messages, targets, unreached = [], [], []
    for c in plan.changes:
        if len(c.new_entries) > 1:
            messages.append(f"{c.profile} holds {len(c.new_entries)} certificates (one per key type) and a client "
                            "gets the one its cipher suites select: verified by reading the profile back")
    per_vs: dict[str, int] = {}
    for b in plan.bindings:
        per_vs[b.virtual] = per_vs.get(b.virtual, 0) + 1
    for b in plan.bindings:
        if b.profile not in changed or b.destination is None:
            continue
        if not (b.server_name or per_vs[b.virtual] == 1 or b.sni_default):
            continue
        if not b.destination.probeable or probe(b) is None:
            unreached.append(b.virtual)
            continue
        targets.append(Target(b.destination.address, int(b.destination.port or 0), b.server_name))
    if targets:
        expect_served(targets, bundle.fingerprint, deadline=VERIFY_DEADLINE)
        messages.append(f"verified by TLS handshake: {', '.join(str(t) for t in targets)}")
    if unreached:
        messages.append(
            f"not reachable from the gateway, verified by reading the profiles back: {', '.join(unreached)}"
        )
    return messages, bool(targets)


def _cleanup(conn: F5Connection, plan: InstallPlan, uploads: _Uploads) -> list[str]:
    messages: list[str] = []
    deleted = []
    for collection, path in plan.deletions:
        try:
            conn.delete(conn.object_path(collection, path), missing_ok=True)
            deleted.append(path)
        except F5Error as exc:
            messages.append(f"kept old object {path}: {exc.f5_message}")
        except OperationError as exc:
            messages.append(f"kept old object {path}: {exc}")
    if deleted:
        messages.append(f"deleted old objects no longer referenced: {', '.join(deleted)}")
        try:
            conn.post("/mgmt/tm/sys/config", {"command": "save"}, timeout=SAVE_TIMEOUT)
        except OperationError as exc:
            messages.append(f"could not save the configuration after deleting old objects: {exc}")
    messages += [f"could not remove an uploaded file: {e}" for e in uploads.remove()]
    return messages
