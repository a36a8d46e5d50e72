"""Installing a certificate on IIS https bindings, as one transaction.

Steps (each shown by ``--dry-run``):

1. read the sites, bindings and bound certificates (``iis-discover``); refuse early when the
   account is not a local Administrator (the vendor's requirement);
2. choose the bindings: the ones the operator named, else the https bindings whose host header
   the certificate covers; refuse a binding whose HTTP.sys certificate slot (``ip:port`` for
   IP-based bindings) is shared with bindings not chosen, because changing it changes them too;
3. upload the PFX (legacy 3DES/SHA-1, random one-time password) and the intermediates (PKCS#7)
   to ``%windir%\\Temp`` with the connection's atomic, ACL-restricted write (the bytes travel on
   stdin with the Windows transports);
4. import the intermediates into ``LocalMachine\\CA`` and the PFX into ``LocalMachine\\My``
   (not exportable; the password on stdin as ``$S``), check the thumbprint against the bundle's SHA-1, delete the uploaded files;
5. bind each chosen binding to the new thumbprint (HTTP.sys takes it at once);
6. read the bindings back: the chosen ones must carry the new thumbprint, every other binding
   its old one;
7. verify by TLS handshake (SNI = host header) where the port answers from the gateway; a port
   that does not answer is reported in the messages and the install is not marked verified.

On any failure: every changed binding gets its previous certificate back (or none, as before),
the new certificate is removed from ``LocalMachine\\My`` unless a binding uses it or it was there
before, intermediates this install added are removed, the uploaded files are deleted, and
:class:`tlsgate.OperationError` is raised with ``rolled_back=True``. Old certificates are left in
the store (an operator may still want them); :func:`tlsgate_iis.scripts.REMOVE_CERTS` only ever
removes a certificate no binding uses.
"""

from __future__ import annotations

import ntpath
import secrets
import socket
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from tlsgate.plugin import OperationError, Target, Transaction, ValidationError, expect_served

from . import scripts
from .discovery import (
    CENTRAL_CERT_STORE_FLAG,
    Binding,
    IISState,
    decode_json,
    failure_detail,
    probe_target,
    read_state,
)
from .pfx import chain_p7b, legacy_pfx, one_time_password, thumbprint

if TYPE_CHECKING:
    from tlsgate.plugin import CertificateBundle, Connection, Endpoint, InstallResult, Node

    from .discovery import Binding, IISState

#: How long the handshake check waits for HTTP.sys to serve the new certificate.
VERIFY_DEADLINE = 10.0


# -- remote steps ---------------------------------------------------------------------------------
def _call(connection: Connection, template: str, params: dict[str, object], what: str,
          secret_params: dict[str, object] | None = None) -> str:
    if secret_params is None:
        res = connection.run_powershell(template, params)
    else:  # only Windows connections take secrets (on stdin); powershell_connection made sure of it
        res = connection.run_powershell(template, params, secret_params=secret_params)
    if not res.ok:
        detail = failure_detail(res)
        raise OperationError(f"{connection.host}: {what} failed: {detail}", host=connection.host)
    return res.stdout


def bind(connection: Connection, binding: Binding, thumb: str, store: str = scripts.STORE) -> None:
    """Point one https binding at certificate ``thumb`` in ``LocalMachine\\<store>`` by replacing
    the binding with a copy of all its attributes (see :mod:`tlsgate_iis.scripts`: never an update
    in place)."""
    _call(connection, scripts.BIND,
          {"site": binding.site, "binding": binding.binding_information, "thumbprint": thumb, "store": store},
          f"binding {describe(binding)} to certificate {thumb}")


def unbind(connection: Connection, binding: Binding) -> None:
    """Give a binding no certificate again (the state of a binding that had none): the same
    replace without a certificate, then its HTTP.sys entry deleted by its exact key."""
    _call(connection, scripts.UNBIND,
          {"site": binding.site, "binding": binding.binding_information, "httpsys": binding.netsh_key},
          f"removing the certificate of {describe(binding)}")


def remove_certificates(connection: Connection, store: str, thumbs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Remove certificates from ``LocalMachine\\<store>``; in My only those no binding uses.
    Returns (removed, kept because in use)."""
    out = _call(connection, scripts.REMOVE_CERTS, {"store": store, "thumbprints": list(thumbs)},
                f"removing certificates from LocalMachine\\{store}")
    data = decode_json(out, connection.host, "iis-remove-certs") or {}
    return _strings(data.get("removed")), _strings(data.get("kept"))


def _strings(value: object) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def describe(binding: Binding) -> str:
    return f"site {binding.site!r} https binding {binding.binding_information!r}"


# -- choosing bindings ----------------------------------------------------------------------------
def select_bindings(state: IISState, nodes: Sequence[Node], bundle: CertificateBundle) -> tuple[list[Binding], list[str]]:
    """The https bindings to change, and notes for the result's messages."""
    notes: list[str] = []
    if nodes:
        chosen: list[Binding] = []
        for node in nodes:
            b = state.find(node.locator)
            if b is None:
                raise ValidationError(f"the binding {node.locator!r} is no longer on the host; run tls discover",
                                      option="--node")
            if b.https and b not in chosen:
                chosen.append(b)
        if not chosen:
            raise ValidationError("the chosen nodes are http bindings; a certificate binds to https bindings",
                                  option="--node")
        for b in chosen:
            if b.host_header and not bundle.covers(b.host_header):
                notes.append(f"warning: the certificate does not cover {b.host_header!r} ({describe(b)})")
            if b.ssl_flags & CENTRAL_CERT_STORE_FLAG:
                raise ValidationError(f"{describe(b)} takes its certificate from the Centralized Certificate "
                                      "Store (sslFlags 2), which tlsgate does not manage", option="--node")
    else:
        https = [b for b in state.bindings if b.https]
        chosen = [b for b in https if b.host_header and bundle.covers(b.host_header)]
        skipped = [b for b in chosen if b.ssl_flags & CENTRAL_CERT_STORE_FLAG]
        chosen = [b for b in chosen if b not in skipped]
        notes += [f"skipped {describe(b)}: it uses the Centralized Certificate Store" for b in skipped]
        if not chosen:
            names = ", ".join(bundle.names) or "none"
            listed = "; ".join(b.locator for b in https) or "none"
            raise ValidationError(
                f"the certificate (names: {names}) covers no https binding's host header; choose bindings with "
                f"--node (https bindings: {listed})", option="--node")
    for b in chosen:
        others = [o for o in state.sharing(b) if o not in chosen]
        if others:
            slot = f"{b.listen_ip}:{b.port}" if not b.sni else f"{b.host_header}:{b.port}"
            names = ", ".join(f"{o.binding_information!r} of site {o.site!r}" for o in others)
            raise ValidationError(
                f"{describe(b)} shares the HTTP.sys certificate of {slot} with {names}: non-SNI bindings on one "
                "IP:port serve one certificate; choose them too, or make the bindings SNI bindings",
                option="--node")
    return chosen, notes


# -- the transaction ------------------------------------------------------------------------------
class _Undo:
    """What the install changed, undone in reverse: bindings, then certificates; then the bindings
    are read back, and any binding not in its state from before the install is reported loudly."""

    def __init__(self, connection: Connection, before: IISState | None = None) -> None:
        self.connection = connection
        self.before = before
        self.bindings: list[Binding] = []  # with their previous certificate
        self.new_certificate: str | None = None
        self.chain_added: list[str] = []
        self.done: list[str] = []

    def __call__(self) -> None:
        errors: list[str] = []

        def attempt(action: Callable[[], object], what: str) -> None:
            try:
                action()
                self.done.append(what)
            except Exception as exc:  # noqa: BLE001 - keep restoring the rest, report all
                errors.append(f"{what}: {exc}")

        for b in reversed(self.bindings):
            if b.certificate_hash:
                attempt(partial(bind, self.connection, b, b.certificate_hash, b.certificate_store or scripts.STORE),
                        f"rebound {describe(b)} to {b.certificate_hash}")
            else:
                attempt(partial(unbind, self.connection, b), f"removed the certificate of {describe(b)}")
        if self.new_certificate:
            thumb = self.new_certificate
            attempt(partial(remove_certificates, self.connection, scripts.STORE, [thumb]),
                    f"removed certificate {thumb} from LocalMachine\\My if unused")
        if self.chain_added:
            added = list(self.chain_added)
            attempt(partial(remove_certificates, self.connection, scripts.CA_STORE, added),
                    f"removed intermediates {', '.join(added)} from LocalMachine\\CA")
        if self.bindings and self.before is not None:
            try:
                problems = compare_bindings(self.before, read_state(self.connection), {})
            except OperationError as exc:
                problems = [f"the bindings could not be read back: {exc}"]
            if problems:
                errors.append("ROLLBACK INCOMPLETE, the bindings read back are not as before the install: "
                              + "; ".join(problems))
            else:
                self.done.append("read the bindings back: every binding is as before the install")
        if errors:
            raise OperationError("; ".join(errors))


def install_bundle(endpoint: Endpoint, connection: Connection, bundle: CertificateBundle, nodes: Sequence[Node],
                   *, dry_run: bool = False) -> InstallResult:
    state = read_state(connection)
    if not state.admin:
        raise OperationError(f"{connection.host}: the account is not a member of the local Administrators group, "
                             "which IIS certificate installation requires", host=connection.host)
    chosen, notes = select_bindings(state, nodes, bundle)
    thumb = thumbprint(bundle)
    tx = Transaction(connection, dry_run=dry_run, label=f"IIS install on {connection.host}")
    tx.messages += notes
    undo = _Undo(connection, state)
    tx.on_rollback(undo, "restore the previous IIS certificates")
    verified = False
    with tx:
        _import(tx, connection, state, bundle, thumb, undo)
        for b in chosen:
            previous = b.certificate_hash or "no certificate"
            if tx.step("api", f"bind {describe(b)}", f"{previous} -> {thumb}"):
                undo.bindings.append(b)  # before the call: a failed bind may have half-applied
                bind(connection, b, thumb)
        if not dry_run:
            _check_bindings(connection, state, chosen, thumb)
        targets = _verification_targets(endpoint, chosen)
        if tx.step("verify", ", ".join(str(t) for t in targets) or "no https port to probe",
                   "TLS handshake where the port answers from the gateway"):
            verified = _verify(tx, targets, bundle.fingerprint)
    if not dry_run:
        tx.messages.append(f"certificate {thumb} is in LocalMachine\\My; previous certificates were left in the store")
    names = tuple(dict.fromkeys(b.host_header or b.site for b in chosen))
    return tx.result(nodes=names, verified=verified)


def _import(tx: Transaction, connection: Connection, state: IISState, bundle: CertificateBundle, thumb: str,
            undo: _Undo) -> None:
    token = secrets.token_hex(8)
    pfx_path = ntpath.join(state.temp_dir, f"tlsgate-{token}.pfx")
    p7b_path = ntpath.join(state.temp_dir, f"tlsgate-{token}.p7b")
    password = one_time_password()
    p7b = chain_p7b(bundle)
    uploaded = [pfx_path] + ([p7b_path] if p7b else [])
    try:
        tx.write(pfx_path, legacy_pfx(bundle, password), mode=0o600,
                 detail="PFX, 3DES/SHA-1, one-time password; deleted after import")
        if p7b is not None:
            tx.write(p7b_path, p7b, mode=0o600, detail=f"{len(bundle.chain)} intermediate(s), PKCS#7")
            if tx.step("run", "Import-Certificate -> Cert:\\LocalMachine\\CA",
                       "intermediates the store does not have yet"):
                out = _call(connection, scripts.IMPORT_CHAIN, {"path": p7b_path},
                            "importing the intermediates into LocalMachine\\CA")
                undo.chain_added = [t.upper() for t in _strings(decode_json(out, connection.host, "iis-import-chain"))]
        if tx.step("run", "Import-PfxCertificate -> Cert:\\LocalMachine\\My", f"thumbprint {thumb}, not exportable"):
            out = _call(connection, scripts.IMPORT_PFX, {"path": pfx_path, "thumbprint": thumb},
                        "importing the PFX into LocalMachine\\My", secret_params={"password": password})
            data = decode_json(out, connection.host, "iis-import-pfx") or {}
            got = str(data.get("thumbprint") or "").upper()
            if not data.get("existed"):
                undo.new_certificate = got or thumb
            if got != thumb:
                raise OperationError(f"{connection.host}: the imported certificate has thumbprint {got or 'none'}, "
                                     f"expected {thumb}")
    finally:
        del password
        for path in uploaded:
            if tx.step("remove", path, "uploaded file"):
                try:
                    connection.remove(path)
                except OperationError as exc:
                    tx.messages.append(f"could not delete {path}: {exc}")


def compare_bindings(before: IISState, after: IISState, wanted: dict[str, str]) -> list[str]:
    """What differs between the bindings read back and what they should be: ``wanted`` maps a
    locator to its new thumbprint, every other binding must be as ``before``, with the same
    sslFlags (a replaced binding keeps all its attributes)."""
    problems = []
    for old in before.bindings:
        if old.error or not old.binding_information:
            continue
        new = after.find(old.locator)
        expected = wanted.get(old.locator, old.certificate_hash)
        if new is None:
            problems.append(f"{describe(old)} disappeared")
            continue
        if new.ssl_flags != old.ssl_flags:
            problems.append(f"{describe(old)} has sslFlags {new.ssl_flags}, expected {old.ssl_flags}")
        if new.certificate_hash != expected:
            if old.locator in wanted:
                problems.append(f"{describe(old)} has {new.certificate_hash or 'no certificate'}, expected {expected}")
            else:
                problems.append(f"{describe(old)} has {new.certificate_hash or 'no certificate'}, expected "
                                f"{expected or 'no certificate'} (as before)")
    return problems


def _check_bindings(connection: Connection, before: IISState, chosen: Sequence[Binding], thumb: str) -> None:
    """Read the bindings back: chosen ones carry ``thumb``, every other one what it had."""
    problems = compare_bindings(before, read_state(connection), {b.locator: thumb for b in chosen})
    if problems:
        raise OperationError(f"{connection.host}: the bindings read back do not match: " + "; ".join(problems))


def _verification_targets(endpoint: Endpoint, chosen: Sequence[Binding]) -> list[Target]:
    out: list[Target] = []
    for b in chosen:
        if b.site_state.lower() != "started":
            continue
        t = probe_target(endpoint, b)
        if t is not None and Target(*t) not in out:
            out.append(Target(*t))
    return out


def port_answers(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _verify(tx: Transaction, targets: Sequence[Target], fingerprint: str) -> bool:
    """Handshake with every target whose port answers; False when any was skipped."""
    answering = [t for t in targets if port_answers(t.host, t.port)]
    for t in targets:
        if t not in answering:
            tx.messages.append(f"verification skipped for {t}: the port does not answer from the gateway")
    if not targets:
        tx.messages.append("verification skipped: no started site among the chosen bindings")
    if answering:
        expect_served(answering, fingerprint, deadline=VERIFY_DEADLINE)
        tx.messages.append("verified by TLS handshake: " + ", ".join(str(t) for t in answering))
    return bool(targets) and len(answering) == len(targets)
