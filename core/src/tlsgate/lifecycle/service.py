"""What ``tlsgate acme|dns|cert request|renew|revoke`` do, as a library (``Gateway.lifecycle``).

Returns values and never prints. Every ACME call goes through :mod:`.acme` (loaded lazily: the
``acme`` and ``josepy`` packages are imported only when one of these methods runs).

Renewal runs are made safe to start twice (two timers, two gateways on one inventory) by a
lease per certificate (table ``certificate_leases``, migration 3): a run renews a certificate
only while it holds that certificate's lease, and re-reads ``superseded_by`` after taking it, so
a certificate another run just renewed is not renewed again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import NotFoundError, OperationError, PluginError, TlsgateError, ValidationError
from ..inventory import CertificateRecord, StoredEndpoint
from ..options import build_options, options_to_dict
from ..secret import Secret
from . import CHALLENGES, KEY_TYPES, REVOCATION_REASONS
from .domains import validate_domains

if TYPE_CHECKING:
    from ..api import Gateway
    from ..bundle import CertificateBundle
    from ..models import Endpoint
    from .acme import Issued, Session



@attrs.frozen
class RequestOutcome:
    certificate_id: int
    names: tuple[str, ...]
    issuer: str
    not_after: str
    account: str
    key_type: str
    challenge: str

    def to_json(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["names"] = list(self.names)
        return d


@attrs.define
class RenewItem:
    certificate_id: int
    names: list[str]
    action: str  # renewed, not due, would renew, failed, skipped
    not_after: str | None = None
    renew_at: str | None = None
    window: str | None = None  # ari, lifetime, days
    next_check: str | None = None  # ari: when the CA asks to be asked again (Retry-After)
    new_certificate_id: int | None = None
    reason: str | None = None
    deploy: list[dict[str, Any]] = attrs.field(factory=list)
    job: int | None = None  # the run's one fleet deploy job (--deploy)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define
class RenewReport:
    items: list[RenewItem] = attrs.field(factory=list)
    rollouts: list[dict[str, Any]] = attrs.field(factory=list)  # pending rollouts finished (or not) first
    dry_run: bool = False
    job: int | None = None  # the one fleet deploy job of the run (--deploy), if anything was deployed

    @property
    def ok(self) -> bool:
        return (all(i.action in ("renewed", "not due", "would renew", "skipped") and all(d["ok"] for d in i.deploy)
                    for i in self.items)
                and all(r["ok"] for r in self.rollouts))

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "dry_run": self.dry_run, "job": self.job, "rollouts": self.rollouts,
                "certificates": [i.to_json() for i in self.items]}


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _utc(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


class Lifecycle:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.inventory = gateway.inventory
        self._revoked: dict[str, str] | None = None  # fingerprint -> reason, read once

    # -- ACME accounts ------------------------------------------------------------------------
    def add_account(self, name: str, *, directory: str, email: str | None, eab_kid: str | None = None,
                    eab_hmac_key: Secret | None = None, ca_bundle: Path | None = None,
                    agree_tos: bool = False) -> dict[str, Any]:
        """Register an ACME account (or find it: the same name, directory and email again is a
        no-op). Its key is generated here and sealed in the inventory."""
        _check_text(name, "NAME", 64)
        _check_text(directory, "--directory", 2048)
        if not directory.startswith(("https://", "http://")):
            raise ValidationError("must be an http(s) URL of the CA's ACME directory", option="--directory")
        if email is not None:
            _check_text(email, "--email", 254)
            if "@" not in email.strip("@") or any(c.isspace() for c in email):
                raise ValidationError("must be an e-mail address", option="--email")
        if (eab_kid is None) != (eab_hmac_key is None):
            raise ValidationError("--eab_kid and --eab_hmac_key go together",
                                  option="--eab_hmac_key" if eab_hmac_key is None else "--eab_kid")
        if eab_kid is not None:
            _check_text(eab_kid, "--eab_kid", 1024)
        existing = next((a for a in self.inventory.acme_accounts() if a["name"] == name), None)
        if existing is not None:
            if existing["directory"] == directory and existing["email"] == email:
                return self._recheck_account(existing, agree_tos=agree_tos, eab_kid=eab_kid, eab_hmac_key=eab_hmac_key,
                                             ca_pem=_read_ca_bundle(ca_bundle) if ca_bundle is not None else None)
            raise ValidationError(f"an ACME account named {name!r} already exists for {existing['directory']}",
                                  option="NAME")
        ca_pem = _read_ca_bundle(ca_bundle) if ca_bundle is not None else None
        from .acme import AccountKey, Session

        key = AccountKey.generate()
        try:
            with Session(directory, key, ca_bundle_pem=ca_pem) as session:
                tos = session.terms_of_service()
                if tos and not agree_tos:
                    raise ValidationError(f"the CA's terms of service must be agreed to ({tos})", option="--agree_tos")
                uri = session.register(email, agree_tos=agree_tos, eab_kid=eab_kid, eab_hmac_key=eab_hmac_key)
        except TlsgateError as exc:
            self.inventory.audit("acme add", "failed", details={"account": name, "directory": directory,
                                                                  "error": str(exc)})
            raise
        data = {"key": key.jwk_json, "ca_bundle": ca_pem, "eab_kid": eab_kid, "terms_of_service": tos,
                "agreed": bool(agree_tos)}
        self.inventory.add_acme_account(name, directory, email, uri, data)
        self.inventory.audit("acme add", "ok", details={"account": name, "directory": directory, "uri": uri,
                                                        "eab": eab_kid is not None})
        return {**account_view(self.inventory.acme_account(name)), "found": False}

    def _recheck_account(self, existing: dict[str, Any], *, agree_tos: bool, eab_kid: str | None,
                         eab_hmac_key: Secret | None, ca_pem: str | None) -> dict[str, Any]:
        """``acme add`` again with the same name, directory and e-mail: ask the CA for the
        account of the stored key. A CA that knows it answers its URI (nothing changes); one that
        no longer does (an account deleted or a test CA restarted: every order then fails with
        accountDoesNotExist) registers the key again, and the new URI is kept, so repeating
        ``acme add`` is the operator's fix. Without EAB values, a CA that requires EAB is only
        asked for the existing account (``onlyReturnExisting``, RFC 8555 §7.3.1)."""
        from .acme import AccountKey, Session

        name = existing["name"]
        key = AccountKey(existing["key"])
        ca = ca_pem if ca_pem is not None else existing.get("ca_bundle")
        try:
            with Session(existing["directory"], key, ca_bundle_pem=ca) as session:
                uri = session.register(existing["email"], agree_tos=agree_tos or bool(existing.get("agreed")),
                                       eab_kid=eab_kid, eab_hmac_key=eab_hmac_key,
                                       only_existing=eab_kid is None and session.client.external_account_required())
        except TlsgateError as exc:
            self.inventory.audit("acme add", "failed", details={"account": name, "directory": existing["directory"],
                                                                  "error": str(exc)})
            raise
        if uri != existing["uri"] or (ca_pem is not None and ca_pem != existing.get("ca_bundle")):
            data = {k: existing.get(k) for k in ("key", "ca_bundle", "eab_kid", "terms_of_service", "agreed")}
            data["ca_bundle"] = ca
            self.inventory.update_acme_account(name, uri, data)
            self.inventory.audit("acme add", "ok", details={"account": name, "directory": existing["directory"],
                                                            "uri": uri, "previous_uri": existing["uri"],
                                                            "note": "registered again: the CA no longer knew the account"
                                                            if uri != existing["uri"] else "CA bundle updated"})
        return {**account_view(self.inventory.acme_account(name)), "found": uri == existing["uri"]}

    def accounts(self) -> list[dict[str, Any]]:
        return [account_view(a) for a in self.inventory.acme_accounts()]

    def account(self, name: str) -> dict[str, Any]:
        view = account_view(self.inventory.acme_account(name))
        view["certificates"] = [c.id for c in self.inventory.certificates() if c.acme_account == name]
        return view

    def remove_account(self, name: str) -> dict[str, Any]:
        view = self.account(name)
        self.inventory.remove_acme_account(name)
        self.inventory.audit("acme remove", "ok", details={"account": name})
        return view

    @contextlib.contextmanager
    def session(self, name: str) -> Iterator[Session]:
        from .acme import AccountKey, Session

        acc = self.inventory.acme_account(name)
        with Session(acc["directory"], AccountKey(acc["key"]), account_uri=acc["uri"],
                     ca_bundle_pem=acc.get("ca_bundle")) as s:
            yield s

    # -- DNS providers ------------------------------------------------------------------------
    def add_dns(self, name: str, kind: str, options: dict[str, Any]) -> dict[str, Any]:
        _check_text(name, "NAME", 64)
        try:
            ptype = self.gw.registry.dns_provider(kind)
        except PluginError as exc:
            raise ValidationError(str(exc), option="KIND") from None
        opts = build_options(ptype.options, options)
        ptype.factory(name, opts)  # checks what it can without the network
        self.inventory.add_dns_provider(name, kind, options_to_dict(opts))
        self.inventory.audit("dns add", "ok", details={"dns": name, "kind": kind})
        return next(p for p in self.inventory.dns_providers() if p["name"] == name)

    def dns_providers(self) -> list[dict[str, Any]]:
        return self.inventory.dns_providers()

    def dns_provider(self, name: str) -> Any:
        kind, raw = self.inventory.dns_provider(name)
        ptype = self.gw.registry.dns_provider(kind)
        return ptype.factory(name, ptype.options(**raw) if ptype.options else None)

    def test_dns(self, name: str) -> str:
        message = str(self.dns_provider(name).test())
        self.inventory.audit("dns test", "ok", details={"dns": name})
        return message

    def remove_dns(self, name: str) -> None:
        self.inventory.remove_dns_provider(name)
        self.inventory.audit("dns remove", "ok", details={"dns": name})

    # -- issuing ------------------------------------------------------------------------------
    def request(self, acme: str, domains: Sequence[str], *, key_type: str = "ec256", challenge: str = "http-01",
                via: str | None = None, http_port: int | None = None, dns: str | None = None,
                org: str | None = None, department: str | None = None) -> RequestOutcome:
        """Order, prove control, finalize, record (new certificate ID, key sealed)."""
        settings = self._settings(domains, key_type, challenge, via, http_port, dns)
        if department and not org:
            raise ValidationError("needs --org", option="--department")
        org_id, dept_id = self.inventory.org_ids(org, department) if org else (None, None)
        self.inventory.acme_account(acme)
        details = {"account": acme, **settings}
        try:
            issued = self._issue(acme, settings)
        except Exception as exc:
            self.inventory.audit("cert request", "failed", details={**details, "error": str(exc)})
            raise
        cert_id = self._record(issued, acme, settings, org_id, dept_id)
        self.inventory.audit("cert request", "ok", after=_fp(issued), details={**details, "certificate_id": cert_id})
        rec = self.inventory.certificate(cert_id)
        return RequestOutcome(cert_id, tuple(settings["domains"]), rec.issuer or "", rec.not_after or "", acme,
                              key_type, challenge)

    def _settings(self, domains: Sequence[str], key_type: str, challenge: str, via: str | None,
                  http_port: int | None, dns: str | None) -> dict[str, Any]:
        if key_type not in KEY_TYPES:
            raise ValidationError(f"must be one of: {', '.join(KEY_TYPES)}", option="--key_type")
        if challenge not in CHALLENGES:
            raise ValidationError(f"must be one of: {', '.join(CHALLENGES)}", option="--challenge")
        names = validate_domains(domains, challenge=challenge)
        if challenge == "http-01":
            if dns is not None:
                raise ValidationError("is only used with --challenge dns-01", option="--dns")
            if via is None:
                raise ValidationError("is required with --challenge http-01 (the nginx or apache endpoint that "
                                      "serves the domains over plain HTTP)", option="--via")
            endpoint = self.gw.endpoint(via)
            if not self.gw.registry.answers_http01(endpoint.type):
                raise ValidationError(f"endpoint {endpoint.name!r} is of type {endpoint.type}, which cannot answer "
                                      "http-01 challenges (use an nginx or apache endpoint, or dns-01)", option="--via")
            if http_port is not None and not 1 <= http_port <= 65535:
                raise ValidationError("must be an integer between 1 and 65535", option="--http_port")
            return {"domains": names, "key_type": key_type, "challenge": challenge, "via": endpoint.name,
                    "http_port": http_port or 80}
        if via is not None:
            raise ValidationError("is only used with --challenge http-01", option="--via")
        if http_port is not None:
            raise ValidationError("is only used with --challenge http-01", option="--http_port")
        if dns is None:
            raise ValidationError("is required with --challenge dns-01 (see: tlsgate dns list)", option="--dns")
        self.inventory.dns_provider(dns)
        return {"domains": names, "key_type": key_type, "challenge": challenge, "dns": dns}

    def _issue(self, acme: str, settings: dict[str, Any]) -> Issued:
        from .acme import generate_key

        key = generate_key(settings["key_type"])
        with self.session(acme) as session, self._solver(settings) as solver:
            return session.order(settings["domains"], key, settings["challenge"], solver)

    @contextlib.contextmanager
    def _solver(self, settings: dict[str, Any]) -> Iterator[Any]:
        if settings["challenge"] == "http-01":
            endpoint = self.gw.endpoint(settings["via"])
            with self.gw.connect(endpoint) as conn:
                yield _Http01Solver(self.gw, endpoint, conn, int(settings["http_port"]))
        else:
            yield _Dns01Solver(self.dns_provider(settings["dns"]))

    def _record(self, issued: Issued, acme: str, settings: dict[str, Any], org_id: int | None,
                dept_id: int | None) -> int:
        from ..bundle import CertificateBundle

        bundle = CertificateBundle(leaf=issued.leaf, key=issued.key, chain=issued.chain)
        cert_id = self.inventory.record_certificate_with_key(bundle, source=f"acme:{acme}", org_id=org_id,
                                                             dept_id=dept_id)
        self.inventory.set_acme_facts(cert_id, acme, settings)
        return cert_id

    # -- renewal ------------------------------------------------------------------------------
    def renew(self, *, days: int | None = None, cert_ids: Sequence[int] = (), deploy: bool = False,
              dry_run: bool = False, now: dt.datetime | None = None, wait: bool = True) -> RenewReport:
        """Renew every ACME certificate that is due (``days``: ends within N days; else its
        renewal window: ARI when the CA offers it, else one third of the lifetime left). With
        ``deploy``, pending rollouts are finished first, then each renewed certificate replaces
        the old one on every node that served it: all of it is one fleet ``deploy`` job (one item
        per endpoint and certificate; ``job show`` lists them, ``job retry`` finishes them).

        ``wait=False`` (a queue worker's periodic run, PostgreSQL): the job's items are queued for
        the workers of their zones and not waited for (a worker waiting in its own task slot for
        tasks that only its slots run would never finish); they are reported ``queued``."""
        if days is not None and not 0 <= days <= 3650:
            raise ValidationError("must be between 0 and 3650", option="--days")
        now = now or dt.datetime.now(dt.UTC)
        report = RenewReport(dry_run=dry_run)
        records = {c.id: c for c in self.inventory.certificates()}
        for cid in cert_ids:
            rec = records.get(cid)
            if rec is None:
                raise NotFoundError(f"no certificate with ID {cid} (see: tlsgate cert list)", option="--cert")
            if not rec.acme_account or not rec.renewal:
                raise ValidationError(f"certificate {cid} was not issued through ACME by this gateway", option="--cert")
        job = _RolloutJob(self.gw, dry_run, wait=wait)
        if deploy:
            pending = [(old, new) for old, new in self.pending_rollouts()
                       if not cert_ids or old.id in cert_ids or new.id in cert_ids]
            for (old, new), outcome in zip(pending, job.run(pending), strict=True):
                report.rollouts.append({"old_certificate_id": old.id, "new_certificate_id": new.id, **outcome})
        candidates = [c for c in records.values() if c.acme_account and c.renewal and c.superseded_by is None
                      and c.has_key and (not cert_ids or c.id in cert_ids)]
        sessions: dict[str, Any] = {}
        renewed: list[tuple[RenewItem, CertificateRecord]] = []
        with contextlib.ExitStack() as stack:
            for rec in candidates:
                item = RenewItem(rec.id, list(rec.names), "not due", not_after=rec.not_after)
                report.items.append(item)
                try:
                    when, window, next_check = self._renew_at(rec, days, now, sessions, stack)
                except TlsgateError as exc:
                    item.action, item.reason = "failed", f"{exc}; the old certificate stays in service " \
                                                         f"(expires {rec.not_after})"
                    continue
                item.renew_at, item.window = when.isoformat(timespec="seconds"), window
                item.next_check = next_check.isoformat(timespec="seconds") if next_check else None
                if when > now:
                    continue
                if dry_run:
                    item.action = "would renew"
                    continue
                self._renew_one(rec, item)
                if item.action == "renewed":
                    renewed.append((item, rec))
        if deploy and renewed:
            pairs = [(rec, self.inventory.certificate(item.new_certificate_id or 0)) for item, rec in renewed]
            for (item, _rec), outcome in zip(renewed, job.run(pairs), strict=True):
                item.deploy, item.job = outcome["endpoints"], outcome["job"]
        report.job = job.job_id
        return report

    def _renew_at(self, rec: CertificateRecord, days: int | None, now: dt.datetime, sessions: dict[str, Any],
                  stack: contextlib.ExitStack) -> tuple[dt.datetime, str, dt.datetime | None]:
        """When ``rec`` is due: ``--days``; else the CA's ARI window; else one third of the
        lifetime left. Returns (when, how, ARI's next check)."""
        not_after = _utc(rec.not_after)
        assert not_after is not None
        if days is not None:
            return not_after - dt.timedelta(days=days), "days", None
        leaf = self.inventory.load_bundle(rec.id).leaf
        account = rec.acme_account or ""
        if account not in sessions:
            sessions[account] = stack.enter_context(self.session(account))
        ari = sessions[account].renewal_time(leaf)
        if ari is not None:
            return ari[0], "ari", ari[1]
        from .acme import lifetime_renewal_time

        return lifetime_renewal_time(leaf), "lifetime", None

    def _renew_one(self, rec: CertificateRecord, item: RenewItem) -> None:
        holder = _holder()
        if not self.inventory.take_certificate_lease(rec.id, holder):
            item.action, item.reason = "skipped", "another renewal run holds this certificate's lease"
            return
        try:
            fresh = self.inventory.certificate(rec.id)
            if fresh.superseded_by is not None:
                item.action, item.new_certificate_id = "skipped", fresh.superseded_by
                item.reason = f"already renewed as certificate {fresh.superseded_by}"
                return
            settings = dict(rec.renewal or {})
            try:
                issued = self._issue(rec.acme_account or "", settings)
            except Exception as exc:  # noqa: BLE001 - reported per certificate; the run goes on
                item.action = "failed"
                item.reason = f"{exc}; the old certificate stays in service (expires {rec.not_after})"
                self.inventory.audit("cert renew", "failed", before=rec.fingerprint,
                                     details={"certificate_id": rec.id, "error": str(exc)})
                return
            org_id, dept_id = (self.inventory.org_ids(rec.organization, rec.department)
                               if rec.organization else (None, None))
            new_id = self._record(issued, rec.acme_account or "", settings, org_id, dept_id)
            self.inventory.set_superseded(rec.id, new_id)
            item.action, item.new_certificate_id = "renewed", new_id
            self.inventory.audit("cert renew", "ok", before=rec.fingerprint, after=_fp(issued),
                                 details={"certificate_id": rec.id, "new_certificate_id": new_id})
        finally:
            self.inventory.release_certificate_lease(rec.id, holder)

    # -- rollouts -----------------------------------------------------------------------------
    def pending_rollouts(self) -> list[tuple[CertificateRecord, CertificateRecord]]:
        """(old, new) for every superseded certificate some node still serves."""
        out = []
        records = {c.id: c for c in self.inventory.certificates()}
        for rec in records.values():
            if rec.superseded_by is not None and self.inventory.serving_nodes(rec.fingerprint):
                newest = records[rec.superseded_by]
                while newest.superseded_by is not None and newest.superseded_by in records:
                    newest = records[newest.superseded_by]
                out.append((rec, newest))
        return out

    def revoked(self, fingerprint: str) -> str | None:
        """The reason a certificate was revoked with ``cert revoke`` (None: it was not)."""
        if self._revoked is None:
            self._revoked = self.inventory.revocations()
        return self._revoked.get(fingerprint)

    def rollout_state(self, rec: CertificateRecord) -> str:
        """'' or how far a superseded certificate's replacement got (and whether it was revoked),
        as cert list/show say it."""
        # only a certificate issued through an ACME account can have been revoked (one audit
        # read per process, and none for an estate of other certificates)
        reason = self.revoked(rec.fingerprint) if rec.acme_account else None
        state = self._rollout_state(rec)
        if reason is None:
            return state
        return f"revoked ({reason})" + (f"; {state}" if state else "")

    def _rollout_state(self, rec: CertificateRecord) -> str:
        if rec.superseded_by is None:
            return ""
        serving = self.inventory.serving_nodes(rec.fingerprint)
        if serving:
            return (f"superseded by {rec.superseded_by}, not yet deployed everywhere "
                    f"({len(serving)} node(s) still serve it)")
        return f"superseded by {rec.superseded_by}"

    def bundle(self, cert_id: int) -> CertificateBundle:
        """The certificate with its (unsealed) key and chain, for an install."""
        return self.inventory.load_bundle(cert_id)  # type: ignore[no-any-return]

    # -- revocation ---------------------------------------------------------------------------
    def revoke(self, cert_id: int, reason: str = "unspecified") -> dict[str, Any]:
        if reason not in REVOCATION_REASONS:
            raise ValidationError(f"must be one of: {', '.join(REVOCATION_REASONS)}", option="--reason")
        rec = self.inventory.certificate(cert_id)
        if not rec.acme_account:
            raise ValidationError(f"certificate {cert_id} was not issued through an ACME account of this gateway",
                                  option="ID")
        leaf = self.inventory.load_bundle(cert_id).leaf
        try:
            with self.session(rec.acme_account) as session:
                session.revoke(leaf, reason)
        except TlsgateError as exc:
            self.inventory.audit("cert revoke", "failed", before=rec.fingerprint,
                                 details={"certificate_id": cert_id, "reason": reason, "error": str(exc)})
            raise
        self.inventory.audit("cert revoke", "ok", before=rec.fingerprint,
                             details={"certificate_id": cert_id, "reason": reason})
        self._revoked = None
        return {"certificate_id": cert_id, "revoked": True, "reason": reason}


class _RolloutJob:
    """The one fleet ``deploy`` job of a ``cert renew --deploy`` run. Each :meth:`run` adds one
    item per endpoint serving an old certificate (the item's parameters name the new one and the
    one it replaces: ``cert deploy NEW --replaces OLD`` per endpoint, the fleet's install under
    the endpoint's lease) and runs them; the first call creates the job, later ones add to it
    (pending rollouts first, then the certificates this run renewed)."""

    def __init__(self, gw: Gateway, dry_run: bool, *, wait: bool = True) -> None:
        self.gw, self.dry_run, self.wait = gw, dry_run, wait
        self.job_id: int | None = None

    def run(self, pairs: Sequence[tuple[CertificateRecord, CertificateRecord]]) -> list[dict[str, Any]]:
        """One outcome per (old, new): ``{"ok", "job", "endpoints": [...]}``."""
        from .. import fleet, jobs

        chosen = [fleet.select(self.gw, fleet.Selection(replaces=old.fingerprint)) for old, _new in pairs]
        if self.dry_run:
            return [{"ok": True, "job": None, "endpoints": [
                {"endpoint": s.name, "action": "would deploy", "ok": True} for s in stored]} for stored in chosen]
        inventory = self.gw.inventory
        # a rollout still queued (its zone's worker is down) or run by another live run: not
        # queued a second time, reported as waiting
        waiting: dict[tuple[int, str], dict[str, Any]] = {}
        todo: list[tuple[CertificateRecord, CertificateRecord, StoredEndpoint]] = []
        for (old, new), stored in zip(pairs, chosen, strict=True):
            for s in stored:
                found = jobs.queued_rollout(inventory, s.id, old.id)
                if found is None:
                    todo.append((old, new, s))
                    continue
                job_id, cert_id, in_queue = found
                if in_queue:  # waits for its zone's worker: not deployed yet
                    waiting[(old.id, s.id)] = {
                        "endpoint": s.name, "ok": False, "state": "queued", "action": "queued",
                        "reason": f"already queued in job {job_id} (installs certificate {cert_id}; "
                                  f"see: tlsgate job show {job_id})"}
                else:  # another run deploys it right now: like a renewal another run holds, no failure
                    waiting[(old.id, s.id)] = {
                        "endpoint": s.name, "ok": True, "state": "skipped", "action": "skipped",
                        "reason": f"another run deploys certificate {cert_id} there now (job {job_id})"}
        job = self._run_items(todo) if todo else None
        out = []
        for (old, new), stored in zip(pairs, chosen, strict=True):
            items = [i for i in (job.items if job is not None else ()) if i.params.get("old_certificate_id") == old.id
                     and i.params.get("certificate_id") == new.id]
            by_endpoint = {i.endpoint_id: i for i in items}
            endpoints = []
            for s in stored:
                if (old.id, s.id) in waiting:
                    endpoints.append(waiting[(old.id, s.id)])
                    continue
                i = by_endpoint[s.id]
                if i.state in ("pending", "running"):  # not waited for, or no live worker serves its zone
                    zone = inventory.get_endpoint(s.id).zone
                    why = (f"for the workers of zone {zone} (job {self.job_id})" if not self.wait else
                           f"no live worker serves zone {zone} (start tlsgate worker --zone {zone}; the task "
                           f"waits for it in job {self.job_id})")
                    endpoints.append({"endpoint": i.endpoint, "item": i.id, "ok": False, "state": "queued",
                                      "action": "queued", "reason": why})
                    continue
                endpoints.append({"endpoint": i.endpoint, "item": i.id, "ok": i.state in jobs.FINAL_OK,
                                  "state": i.state, "action": "deployed" if i.state in jobs.FINAL_OK else i.state,
                                  **({"reason": i.reason} if i.reason and i.state not in jobs.FINAL_OK else {})})
            out.append({"ok": all(e["ok"] for e in endpoints), "job": self.job_id, "endpoints": endpoints})
        return out

    def _run_items(self, todo: Sequence[tuple[CertificateRecord, CertificateRecord, StoredEndpoint]]) -> Any:
        """Add one item per (old, new, endpoint) to the run's job (created by the first call)
        and run them: in this process, or (PostgreSQL) by the workers of each endpoint's zone,
        waiting only for the zones a live worker serves: a zone whose gateway is down must not
        stop the run's other renewals."""
        from .. import fleet, jobs

        inventory = self.gw.inventory
        endpoints = [s for _old, _new, s in todo]
        # an earlier run of this rollout on an endpoint that was killed mid-install left its
        # backup set open: this item resumes that job's attempt (restores it first) instead of
        # refusing until someone runs `backup restore`
        params = [{"certificate_id": new.id, "fingerprint": new.fingerprint, "replaces": old.fingerprint,
                   "old_certificate_id": old.id,
                   **({"resumes": r} if (r := jobs.unfinished_rollouts(inventory, s.id, old.id, new.id)) else {})}
                  for old, new, s in todo]
        if self.job_id is None:
            self.job_id = fleet.create_job(self.gw, "deploy", endpoints, {"renewal": True}, item_params=params)
            ids = None
        else:
            ids = fleet.add_items(self.gw, self.job_id, endpoints, params)
        if not fleet.queued(self.gw):
            return fleet.run_job(self.gw, self.job_id, item_ids=ids)
        from .. import queue

        if ids is not None:
            queue.submit(self.gw, self.job_id, ids)
        if not self.wait:
            return jobs.get(inventory, self.job_id, refresh=False)
        return queue.follow(self.gw, self.job_id, partial=True)


class _Http01Solver:
    def __init__(self, gw: Gateway, endpoint: Endpoint, conn: Any, http_port: int) -> None:
        self.gw, self.endpoint, self.conn, self.http_port = gw, endpoint, conn, http_port

    def prepare(self, domain: str, chall: Any, validation: Any) -> Callable[[], None]:
        from .acme import http01_token

        cleanup = self.gw.registry.acme_http01(self.endpoint, self.conn, domain, http01_token(chall),
                                               str(validation), self.http_port)
        if cleanup is None:
            raise OperationError(f"endpoint {self.endpoint.name!r} ({self.endpoint.type}) did not answer the "
                                 f"http-01 challenge for {domain}")
        return cleanup


class _Dns01Solver:
    def __init__(self, provider: Any) -> None:
        self.provider = provider

    def prepare(self, domain: str, chall: Any, validation: Any) -> Callable[[], None]:
        from .acme import dns01_record_name

        fqdn = dns01_record_name(chall, domain).rstrip(".") + "."
        value = str(validation)
        self.provider.add_txt(fqdn, value)
        try:
            self.provider.wait_visible(fqdn, value, None)
        except BaseException:
            self.provider.remove_txt(fqdn, value)
            raise
        return lambda: self.provider.remove_txt(fqdn, value)


def account_view(acc: dict[str, Any]) -> dict[str, Any]:
    """An account as ``acme list/show`` print it: never the key, never the EAB HMAC key."""
    return {"name": acc["name"], "directory": acc["directory"], "email": acc["email"], "uri": acc["uri"],
            "eab_kid": acc.get("eab_kid"), "ca_bundle": bool(acc.get("ca_bundle")),
            "terms_of_service": acc.get("terms_of_service"), "created": acc.get("created")}


def _fp(issued: Issued) -> str:
    from .. import certs

    return certs.fingerprint(issued.leaf)


def _read_ca_bundle(path: Path) -> str:
    from cryptography import x509

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValidationError(f"{path}: {exc.strerror}", option="--ca_bundle") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ValidationError(f"{path}: not a PEM file of certificates", option="--ca_bundle") from None
    if not certs:
        raise ValidationError(f"{path}: no certificate in it", option="--ca_bundle")
    return data.decode()


def _check_text(value: str | None, option: str, hi: int) -> str:
    if not value:
        raise ValidationError("is required", option=option)
    if len(value) > hi:
        raise ValidationError(f"must be at most {hi} characters", option=option)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValidationError("must not contain control characters", option=option)
    return value
