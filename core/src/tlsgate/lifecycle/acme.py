"""ACME (RFC 8555) through certbot's ``acme`` client and ``josepy``: accounts, orders,
challenges, revocation and renewal windows (ARI, RFC 9773, formerly draft-ietf-acme-ari, when the
CA offers it).

Nothing here hand-writes JWS or the order state machine: ``acme.client.ClientV2`` does both (and
retries a ``badNonce`` once). This module adds what an unattended gateway needs around it: every
ACME problem document becomes one line naming the domain and the CA's own detail, and every
challenge answer that was set up is removed again, whether validation succeeded or failed.

Imported only by the commands that use it (``acme`` and ``josepy`` are not loaded by other
CLI calls).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import attrs
import josepy as jose
import requests
from acme import challenges, client, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ..errors import OperationError, ValidationError
from ..secret import Secret
from . import KEY_TYPES, REVOCATION_REASONS

USER_AGENT = "tlsgate"
#: How long one order may take from the first answer to the issued certificate.
ORDER_DEADLINE = dt.timedelta(seconds=180)


def generate_key(key_type: str) -> Any:
    """A new private key of ``key_type`` (generated on the gateway, never sent anywhere)."""
    if key_type == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type in ("rsa2048", "rsa3072", "rsa4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    raise ValidationError(f"must be one of: {', '.join(KEY_TYPES)}", option="--key_type")


def key_type_of(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp256r1": "ec256", "secp384r1": "ec384"}.get(key.curve.name, "ec256")
    return f"rsa{key.key_size}"


def make_csr(key: Any, domains: Sequence[str]) -> bytes:
    """A CSR for ``domains`` (all in subjectAltName; the first as CN when it fits in 64 chars)."""
    builder = x509.CertificateSigningRequestBuilder()
    if len(domains[0]) <= 64:
        builder = builder.subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domains[0])]))
    builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


#: What the acme client raises: problem documents, protocol and network errors, bad JSON
_ACME_ERRORS = (errors.Error, requests.exceptions.RequestException, jose.errors.Error, ValueError, KeyError)


# -- problem documents -> one line -------------------------------------------------------------
def _problem_text(err: messages.Error) -> str:
    code = err.code or (err.typ or "").rsplit(":", 1)[-1] or "error"
    detail = (err.detail or err.title or "").strip()
    parts = [f"{detail} ({code})" if detail else code]
    for sub in err.subproblems or ():
        who = sub.identifier.value if sub.identifier is not None else "?"
        parts.append(f"{who}: {_problem_text(sub)}")
    return "; ".join(parts)


def _printable(text: str) -> str:
    """A CA's text made one safe line: control characters (newlines, terminal escapes) shown
    escaped, never sent to the operator's terminal."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def describe(exc: BaseException, what: str, subject: str) -> OperationError:
    """One line for an ACME failure: ``ACME <what> for <subject>: <the CA's detail> (<type>)``."""
    error = _describe(exc, what, subject)
    return OperationError(_printable(str(error)))


def _describe(exc: BaseException, what: str, subject: str) -> OperationError:
    if isinstance(exc, messages.Error):
        subject = exc.identifier.value if getattr(exc, "identifier", None) is not None else subject
        reason = _problem_text(exc)
        if exc.code == "accountDoesNotExist":
            reason += "; the CA no longer knows this account: run the same tlsgate acme add again"
    elif isinstance(exc, errors.ValidationError):
        lines = []
        for authzr in exc.failed_authzrs:
            ident = authzr.body.identifier.value
            for chall in authzr.body.challenges:
                if chall.error is not None:
                    lines.append(f"{ident}: {_problem_text(chall.error)}")
        return OperationError("ACME validation failed: " + "; ".join(lines))
    elif isinstance(exc, errors.TimeoutError):
        reason = f"the CA did not finish within {int(ORDER_DEADLINE.total_seconds())} s"
    elif isinstance(exc, requests.exceptions.SSLError):
        reason = f"TLS verification of the ACME server failed ({_short(exc)}); trust its CA with --ca_bundle"
    elif isinstance(exc, requests.exceptions.RequestException):
        reason = f"cannot reach the ACME server: {_short(exc)}"
    elif isinstance(exc, errors.Error):
        reason = str(exc) or type(exc).__name__
    else:
        reason = f"{type(exc).__name__}: {exc}"
    return OperationError(f"ACME {what} for {subject}: {reason}")


def _short(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("Caused by ", "] "):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    text = re.sub(r"\s*\(_ssl\.c:\d+\)", "", text)  # OpenSSL's source line says nothing to an operator
    text = text.strip(" '\"")
    while text.startswith("(") and text.endswith(")"):  # the wrapping parentheses, never just one of a pair
        text = text[1:-1].strip(" '\"")
    while text.count(")") > text.count("(") and text.endswith(")"):
        text = text[:-1].rstrip(" '\"")
    return text[:300]


# -- sessions --------------------------------------------------------------------------------
@attrs.frozen
class AccountKey:
    """An account's private key as a JWK (JSON, kept only as a Secret / sealed at rest)."""

    jwk_json: Secret

    @classmethod
    def generate(cls) -> AccountKey:
        key = ec.generate_private_key(ec.SECP256R1())
        return cls(Secret(jose.JWKEC(key=key).json_dumps()))

    def jwk(self) -> jose.JWK:
        return jose.JWK.json_loads(self.jwk_json.reveal())


class Session:
    """An ACME client for one account (or for registering one): directory, network, CA trust."""

    def __init__(self, directory_url: str, key: AccountKey, *, account_uri: str | None = None,
                 ca_bundle_pem: str | None = None) -> None:
        self.directory_url = directory_url
        self.key = key
        self._jwk = key.jwk()
        self._ca_file: str | None = None
        verify: bool | str = True
        if ca_bundle_pem:
            fd, self._ca_file = tempfile.mkstemp(prefix="tlsgate-acme-ca-", suffix=".pem")
            with os.fdopen(fd, "w") as fh:
                fh.write(ca_bundle_pem)
            verify = self._ca_file
        alg = jose.ES256 if isinstance(self._jwk, jose.JWKEC) else jose.RS256
        self.net = client.ClientNetwork(self._jwk, alg=alg, verify_ssl=verify, user_agent=USER_AGENT)  # type: ignore[arg-type]
        try:
            directory = client.ClientV2.get_directory(directory_url, self.net)
        except _ACME_ERRORS as exc:
            self.close()
            raise describe(exc, "directory", directory_url) from None
        self.client = client.ClientV2(directory, self.net)
        if account_uri:
            self.net.account = messages.RegistrationResource(body=messages.Registration(), uri=account_uri)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.net.session.close()
        if self._ca_file:
            with contextlib.suppress(OSError):
                os.unlink(self._ca_file)
            self._ca_file = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def jwk(self) -> jose.JWK:
        return self._jwk

    @property
    def offers_ari(self) -> bool:
        try:
            self.client.directory["renewalInfo"]
        except KeyError:
            return False
        return True

    def terms_of_service(self) -> str | None:
        meta = getattr(self.client.directory, "meta", None)
        return getattr(meta, "terms_of_service", None) if meta is not None else None

    def register(self, email: str | None, *, agree_tos: bool, eab_kid: str | None = None,
                 eab_hmac_key: Secret | None = None, only_existing: bool = False) -> str:
        """Create the account (or find the one this key already has); returns its URI.
        ``only_existing``: only find it (``onlyReturnExisting``, RFC 8555 §7.3.1)."""
        eab = None
        if only_existing:
            return self._new_account(messages.NewRegistration(only_return_existing=True), "account lookup", email)
        if eab_kid:
            try:
                eab = messages.ExternalAccountBinding.from_data(
                    account_public_key=self._jwk.public_key(), kid=eab_kid,
                    hmac_key=(eab_hmac_key.reveal() if eab_hmac_key else ""), directory=self.client.directory)
            except (ValueError, TypeError, jose.errors.DeserializationError):
                raise ValidationError("is not a base64url HMAC key", option="--eab_hmac_key") from None
        elif self.client.external_account_required():
            raise OperationError(
                f"ACME account for {self.directory_url}: the CA requires External Account Binding; "
                "give --eab_kid and --eab_hmac_key (from the CA's account page)")
        reg = messages.NewRegistration.from_data(email=email, terms_of_service_agreed=agree_tos,
                                                 external_account_binding=eab)
        return self._new_account(reg, "account registration", email)

    def _new_account(self, reg: Any, what: str, email: str | None) -> str:
        """newAccount with ``reg``: the account's URI (a 409 Conflict names the existing one)."""
        try:
            regr = self.client.new_account(reg)
        except errors.ConflictError as exc:
            return str(exc.location)
        except _ACME_ERRORS as exc:
            raise describe(exc, what, email or self.directory_url) from None
        return str(regr.uri)

    def deactivate(self) -> None:
        try:
            self.client.deactivate_registration(self.net.account)
        except _ACME_ERRORS as exc:
            raise describe(exc, "account deactivation", self.directory_url) from None

    # -- orders ------------------------------------------------------------------------------
    def order(self, domains: Sequence[str], key: Any, challenge: str, solver: Solver) -> Issued:
        """Order a certificate for ``domains`` with ``key``: every authorization is answered by
        ``solver``, validated, the order finalized; every answer is removed again (success or
        failure) before this returns or raises."""
        csr_pem = make_csr(key, domains)
        first = domains[0]
        try:
            orderr = self.client.new_order(csr_pem)
        except _ACME_ERRORS as exc:
            raise describe(exc, "new order", ", ".join(domains)) from None
        cleanups: list[tuple[str, Callable[[], None]]] = []
        try:
            answers = []
            for authzr in orderr.authorizations:
                body = authzr.body
                domain = ("*." if body.wildcard else "") + body.identifier.value
                if body.status == messages.STATUS_VALID:
                    continue
                challb = next((c for c in body.challenges if c.chall.typ == challenge), None)
                if challb is None:
                    offered = ", ".join(sorted({c.chall.typ for c in body.challenges})) or "none"
                    raise OperationError(f"ACME order for {domain}: the CA offers no {challenge} challenge "
                                         f"(offers: {offered})")
                response, validation = challb.response_and_validation(self._jwk)
                cleanups.append((domain, solver.prepare(domain, challb.chall, validation)))
                answers.append((domain, challb, response))
            for domain, challb, response in answers:
                try:
                    self.client.answer_challenge(challb, response)
                except _ACME_ERRORS as exc:
                    raise describe(exc, "challenge", domain) from None
            deadline = dt.datetime.now() + ORDER_DEADLINE  # acme compares with naive local time
            try:
                orderr = self.client.poll_and_finalize(orderr, deadline)
            except _ACME_ERRORS as exc:
                raise describe(exc, "order", first) from None
        except BaseException as exc:
            failures = _clean_up(cleanups)
            if failures and isinstance(exc, OperationError):
                # the CA's (or the solver's) reason first; the answers left behind after it
                raise OperationError(_printable(f"{exc}; removing a challenge answer failed: {failures}"),
                                     rolled_back=exc.rolled_back) from None
            raise
        failures = _clean_up(cleanups)
        if failures:
            raise OperationError(_printable(f"ACME order for {first}: removing a challenge answer failed: {failures}"))
        chain = x509.load_pem_x509_certificates(orderr.fullchain_pem.encode())
        return Issued(leaf=chain[0], chain=tuple(chain[1:]), key=key)

    # -- renewal and revocation --------------------------------------------------------------
    def renewal_time(self, cert: x509.Certificate) -> tuple[dt.datetime, dt.datetime | None] | None:
        """ARI (RFC 9773): when to renew, a time acme's ``ClientV2.renewal_time`` picks at random
        within the CA's suggested window (§4.2: once that time has passed, renew; a window whose
        end has passed is always due), and when to ask the CA again (its Retry-After, §4.3). None when the CA offers no ARI (no
        ``renewalInfo`` in its directory, §3) or its answer failed: then one third of the lifetime
        left applies. acme (>= 4.1) implements the request (certID from the AKI and serial, §4.1, an
        unauthenticated GET through this account's network, so ``--ca_bundle`` applies)."""
        if not self.offers_ari:
            return None
        try:
            when, next_check = self.client.renewal_time(cert.public_bytes(serialization.Encoding.PEM))
        except errors.ARIError:
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        # acme returns the next check as naive local time (now() + Retry-After seconds)
        return when, (next_check.astimezone(dt.UTC) if next_check is not None else None)

    def revoke(self, cert: x509.Certificate, reason: str) -> None:
        try:
            self.client.revoke(cert, REVOCATION_REASONS[reason])
        except _ACME_ERRORS as exc:
            names = ", ".join(_names(cert)) or cert.subject.rfc4514_string()
            raise describe(exc, "revocation", names) from None


def _clean_up(cleanups: Sequence[tuple[str, Callable[[], None]]]) -> str:
    """Run every cleanup, newest first, each whatever the others did (a provider's OperationError
    for one record must not leave the next record, or an nginx location, behind); returns the
    failures as one line ("" when all succeeded)."""
    failures = []
    for domain, cleanup in reversed(cleanups):
        try:
            cleanup()
        except Exception as exc:  # noqa: BLE001 - reported together, after every other cleanup ran
            failures.append(f"{domain}: {str(exc).strip() or type(exc).__name__}")
    return "; ".join(failures)


def _names(cert: x509.Certificate) -> list[str]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName))
    except x509.ExtensionNotFound:
        return []


def lifetime_renewal_time(cert: x509.Certificate) -> dt.datetime:
    """Without ARI: renew when one third of the lifetime is left."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return end - (end - start) / 3


@attrs.frozen
class Issued:
    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key: Any
    messages: tuple[str, ...] = ()


class Solver(Protocol):
    """Answers one challenge; returns the callable that removes the answer again."""

    def prepare(self, domain: str, chall: challenges.Challenge, validation: Any) -> Callable[[], None]: ...


def http01_token(chall: challenges.Challenge) -> str:
    return str(chall.encode("token"))


def dns01_record_name(chall: challenges.Challenge, domain: str) -> str:
    return str(chall.validation_domain_name(domain.removeprefix("*.")))


@contextlib.contextmanager
def session_for(directory: str, key: AccountKey, uri: str | None, ca_bundle_pem: str | None) -> Iterator[Session]:
    s = Session(directory, key, account_uri=uri, ca_bundle_pem=ca_bundle_pem)
    try:
        yield s
    finally:
        s.close()
