"""The ``rest`` / ``rest_insecure`` transports: an iControl REST session to a BIG-IP.

For F5 the "connection" is an authenticated HTTPS session, not a shell: the file and command
methods of :class:`tlsgate.Connection` raise a clear :class:`OperationError`, and the driver uses
:meth:`F5Connection.get`, :meth:`~F5Connection.post`, :meth:`~F5Connection.patch`,
:meth:`~F5Connection.delete` and :meth:`~F5Connection.upload` instead.

Authentication: a token from ``POST /mgmt/shared/authn/login`` (``loginProviderName`` tmos),
renewed 60 s before it expires and once more after a 401; HTTP Basic when the token service is
unavailable (Basic only works for Administrator users). The token is always deleted on
:meth:`close` (BIG-IP allows 100 live tokens per user, and 17.1.2 leaks them).

``requests`` is imported here only, and this module only when a job connects.
"""

from __future__ import annotations

import os
import re
import ssl
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tlsgate.plugin import CommandResult, Connection, ConnectionFailed, FileStat, OperationError, Secret, reveal

from .names import uri_name

if TYPE_CHECKING:
    import requests

#: Renew a token this many seconds before BIG-IP would expire it (f5-icontrol-rest-python).
RENEW_MARGIN = 60.0
#: The file-transfer worker accepts at most 1 MiB per request; stay well under it.
CHUNK_SIZE = 512 * 1024
#: Collection page size (``$top``).
PAGE_SIZE = 500
#: Waits before retrying a 503 (the Configuration Utility restarting); f5-ansible waits 30 s x 3.
RETRY_DELAYS = (5.0, 10.0, 20.0)
DOWNLOADS = "/var/config/rest/downloads"


class F5Error(OperationError):
    """A non-2xx answer from iControl REST: ``status`` and BIG-IP's ``message``."""

    def __init__(self, message: str, *, status: int, f5_message: str, host: str | None = None) -> None:
        self.status = status
        self.f5_message = f5_message
        super().__init__(message, host=host)


def system_ca_file() -> str | bool:
    """The system trust store as ``requests`` wants it (a file or directory), else True."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, paths.capath, paths.openssl_capath):
        if candidate and os.path.exists(candidate):
            return candidate
    return True


class F5Connection(Connection):
    """An iControl REST session. Open it with :meth:`open` (``connect`` does), use it as a
    context manager; :meth:`close` deletes the token."""

    platform = "bigip"

    def __init__(
        self,
        host: str,
        port: int = 443,
        user: str | None = None,
        password: Secret | str | None = None,
        *,
        verify: bool | str = True,
        insecure: bool = False,
        scheme: str = "https",
        timeout: float = 30.0,
        login_provider: str = "tmos",
    ) -> None:
        self.host = host
        self.port = port
        self.user = user or ""
        self._password = password if isinstance(password, Secret) or password is None else Secret(password)
        self.insecure = insecure
        self.verify: bool | str = False if insecure else verify
        self.scheme = scheme
        self.timeout = timeout
        self.login_provider = login_provider
        self.base_url = f"{scheme}://{_netloc(host)}:{port}"
        self.messages: list[str] = []
        self.auth_mode = "none"
        self._session: requests.Session | None = None
        self._token: str | None = None
        self._token_expires = 0.0
        self._version: str | None = None
        self.role_checked = False
        if insecure:
            self.messages.append(
                f"{self.where}: TLS verification of the BIG-IP certificate is disabled (rest_insecure)"
            )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    # -- session and authentication -------------------------------------------------------------
    def open(self) -> F5Connection:
        """Log in (token, else Basic). Raises ConnectionFailed with the reason."""
        import requests

        self._session = requests.Session()
        self._session.verify = self.verify
        self._session.headers["Content-Type"] = "application/json"
        try:
            self._login()
        except BaseException:
            self._session.close()
            self._session = None
            raise
        return self

    def _login(self) -> None:
        body = {"username": self.user, "password": reveal(self._password) or "",
                "loginProviderName": self.login_provider}
        resp = self._send("POST", "/mgmt/shared/authn/login", json=body, auth=False)
        if resp.status_code == 200:
            token = (_json(resp).get("token") or {})
            value = token.get("token")
            if value:
                self._token = str(value)
                self.auth_mode = "token"
                # From the gateway's own clock (monotonic) and the token's lifetime, not the
                # device's expirationMicros: the two clocks need not agree.
                self._token_expires = time.monotonic() + float(token.get("timeout") or 1200)
                return
        if resp.status_code == 401:
            raise ConnectionFailed(
                f"{self.where}: authentication failed for user {self.user!r} "
                f"(BIG-IP: {_message(resp)})", host=self.host,
            )
        # The token service refused for another reason (token limit, not registered): try Basic,
        # which BIG-IP accepts for Administrator users.
        reason = _message(resp)
        self._token = None
        self.auth_mode = "basic"
        probe = self._send("GET", "/mgmt/tm/sys", auth=True)
        if probe.status_code in (401, 403):
            raise ConnectionFailed(
                f"{self.where}: token login refused ({resp.status_code}: {reason}) and Basic "
                f"authentication failed for user {self.user!r}", host=self.host,
            )
        self.messages.append(
            f"{self.where}: token login refused ({resp.status_code}: {reason}); using Basic authentication"
        )

    def _auth_headers(self) -> dict[str, str]:
        if self._token:
            if time.monotonic() > self._token_expires - RENEW_MARGIN:
                self._relogin()
            return {"X-F5-Auth-Token": self._token or ""}
        return {}

    def _relogin(self) -> None:
        self._forget_token()
        self._login()

    def _forget_token(self) -> None:
        token, self._token = self._token, None
        if token and self._session is not None:
            try:
                self._send("DELETE", f"/mgmt/shared/authz/tokens/{token}", auth=False,
                           headers={"X-F5-Auth-Token": token})
            except ConnectionFailed:
                pass

    @property
    def token_active(self) -> bool:
        return self._token is not None

    def close(self) -> None:
        """Delete the token (always: BIG-IP allows 100 per user) and close the session."""
        if self._session is None:
            return
        try:
            self._forget_token()
        finally:
            self._session.close()
            self._session = None

    # -- HTTP -----------------------------------------------------------------------------------
    def _send(
        self,
        method: str,
        path: str,
        *,
        auth: bool = True,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> requests.Response:
        import requests

        if self._session is None:
            raise OperationError(f"{self.where}: the iControl REST session is closed")
        hdrs = dict(headers or {})
        basic = None
        if auth:
            hdrs.update(self._auth_headers())
            if not self._token:
                basic = (self.user, reveal(self._password) or "")
        try:
            with warnings.catch_warnings():
                if self.insecure:
                    warnings.simplefilter("ignore")
                return self._session.request(
                    method, self.base_url + path, json=json, data=data, headers=hdrs, params=_query(params),
                    auth=basic, timeout=timeout or self.timeout,
                    verify=self.verify,  # per request: REQUESTS_CA_BUNDLE overrides Session.verify
                )
        except requests.exceptions.SSLError as exc:
            reason = _ssl_reason(exc)
            if "mismatch" in reason or "not valid for" in reason:
                advice = (f"the certificate does not name {self.host}: give --host as the name the certificate "
                          "carries, or install a certificate for this name on the device")
            elif "does not speak TLS" in reason:
                advice = "check --port (iControl REST listens on the management port, 443 by default)"
            else:
                advice = ("give the CA that issued it with --ca_bundle, or install a certificate the gateway "
                          "trusts on the device (rest_insecure skips the check)")
            raise ConnectionFailed(
                f"{self.where}: TLS verification of the BIG-IP certificate failed ({reason}); {advice}",
                host=self.host,
            ) from None
        except requests.exceptions.ConnectionError as exc:
            text = str(exc)
            if "refused" in text.lower():
                why = "connection refused (is iControl REST listening on this port?)"
            elif "resolve" in text.lower() or "name or service" in text.lower():
                why = "host name does not resolve"
            else:
                why = "unreachable"
            raise ConnectionFailed(f"{self.where}: {why}", host=self.host) from None
        except requests.exceptions.Timeout:
            raise ConnectionFailed(f"{self.where}: no answer within {self.timeout:g} s", host=self.host) from None

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        missing_ok: bool = False,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send one call and return its JSON body; non-2xx raises :class:`F5Error` (404 returns
        ``{}`` with ``missing_ok``). A 401 renews the token and retries once; a 503 (restarting)
        is retried after :data:`RETRY_DELAYS`."""
        renewed = False
        for delay in (*RETRY_DELAYS, None):
            resp = self._send(method, path, json=json, data=data, headers=headers, params=params, timeout=timeout)
            if resp.status_code == 401 and self._token is not None and not renewed:
                renewed = True
                self._relogin()
                resp = self._send(method, path, json=json, data=data, headers=headers, params=params,
                                  timeout=timeout)
            if resp.status_code != 503 or delay is None:
                break
            time.sleep(delay)  # restjavad or the Configuration Utility is restarting
        if resp.status_code == 404 and missing_ok:
            return {}
        body = _json(resp)
        if resp.status_code >= 300 or (isinstance(body.get("code"), int) and body["code"] >= 400):
            self._raise(method, path, resp)
        return body

    def _raise(self, method: str, path: str, resp: requests.Response) -> None:
        status, msg = resp.status_code, _message(resp)
        if (status == 401 and "Authorization failed: user=" in msg) or status == 403:
            text = (f"{self.where}: user {self.user!r} may not {method} {path.split('?')[0]}: the "
                    "account needs the Administrator role (BIG-IP: " + _short(msg) + ")")
        elif status == 401:
            text = f"{self.where}: authentication failed for user {self.user!r} ({_short(msg)})"
        else:
            text = f"{self.where}: {method} {path.split('?')[0]} failed: {status} {_short(msg)}"
        raise F5Error(text, status=status, f5_message=msg, host=self.host)

    def get(self, path: str, *, params: Mapping[str, str] | None = None, missing_ok: bool = False) -> dict[str, Any]:
        return self.request("GET", path, params=params, missing_ok=missing_ok)

    def post(
        self, path: str, body: Any, *, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        return self.request("POST", path, json=body, headers=headers, timeout=timeout)

    def patch(self, path: str, body: Any, *, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        return self.request("PATCH", path, json=body, headers=headers)

    def delete(self, path: str, *, missing_ok: bool = False) -> dict[str, Any]:
        return self.request("DELETE", path, missing_ok=missing_ok)

    def items(self, path: str, *, params: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Every item of a collection, read in pages of :data:`PAGE_SIZE` (``$top``/``$skip``,
        as f5-ansible does) so that a device with thousands of objects answers in bounded bodies."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        while True:
            query = {**(params or {}), "$top": str(PAGE_SIZE), "$skip": str(len(out))}
            page = self.get(path, params=query).get("items") or []
            fresh = [i for i in page if str(i.get("selfLink") or i.get("fullPath") or id(i)) not in seen]
            seen |= {str(i.get("selfLink") or i.get("fullPath") or id(i)) for i in fresh}
            out.extend(fresh)
            # a short page is the last; a device that ignores $top answers everything at once
            if len(page) < PAGE_SIZE or len(page) > PAGE_SIZE or len(fresh) < len(page):
                return out

    def object_path(self, collection: str, full_path: str) -> str:
        return f"{collection}/{uri_name(full_path)}"

    def upload(self, name: str, data: bytes, *, chunk_size: int = CHUNK_SIZE) -> str:
        """Upload ``data`` to ``/var/config/rest/downloads/<name>`` in Content-Range chunks
        (``start-end_inclusive/total``, no ``bytes`` prefix); return the device path."""
        total = len(data)
        start = 0
        while True:
            chunk = data[start : start + chunk_size]
            end = start + len(chunk) - 1
            self.request(
                "POST", f"/mgmt/shared/file-transfer/uploads/{uri_name(name)}", data=chunk,
                headers={"Content-Type": "application/octet-stream",
                         "Content-Range": f"{start}-{max(end, 0)}/{total}"},
            )
            start += len(chunk)
            if start >= total:
                return f"{DOWNLOADS}/{name}"

    def remove_upload(self, name: str) -> None:
        """Delete an uploaded file (they hold private keys) with ``util/unix-rm``."""
        body = self.post("/mgmt/tm/util/unix-rm", {"command": "run", "utilCmdArgs": f"{DOWNLOADS}/{name}"})
        result = str(body.get("commandResult") or "")
        if "No such file" in result:
            return  # never arrived or already gone: nothing to remove
        if result.startswith("/bin/rm") or "cannot remove" in result:
            raise OperationError(f"{self.where}: cannot remove {DOWNLOADS}/{name}: {result.strip()}")

    # -- facts for `tls test` -------------------------------------------------------------------
    @property
    def version(self) -> str:
        """The TMOS version, from the ``?ver=`` of ``/mgmt/tm/sys``'s selfLink."""
        if self._version is None:
            link = str(self.get("/mgmt/tm/sys").get("selfLink") or "")
            _, _, ver = link.partition("ver=")
            self._version = ver.split("&")[0] or "unknown"
        return self._version

    def check_role(self, *, strict: bool = True) -> str:
        """Check that the user has the Administrator role (all partitions) with a CLI shell;
        return a one-line confirmation or raise OperationError saying what is missing.

        A remotely authenticated user (LDAP, RADIUS, TACACS+) has no local user object: with
        ``strict=False`` that is accepted (the device enforces the role on each call)."""
        user = self.get(f"/mgmt/tm/auth/user/{uri_name(self.user)}", missing_ok=True)
        if not user:
            if not strict:
                self.role_checked = True
                return f"user {self.user!r} is not a local BIG-IP user; its role is checked by the device on each call"
            raise OperationError(
                f"{self.where}: user {self.user!r} is not a local BIG-IP user; cannot read its role "
                "(the account needs the Administrator role with CLI enabled)"
            )
        roles = {str(p.get("name")): str(p.get("role")) for p in user.get("partitionAccess") or []}
        admin_everywhere = roles.get("all-partitions") == "admin"
        shell = str(user.get("shell") or "none")
        if not admin_everywhere:
            got = ", ".join(f"{k}={v}" for k, v in sorted(roles.items())) or "none"
            raise OperationError(
                f"{self.where}: user {self.user!r} lacks the Administrator role on all partitions "
                f"(has: {got}); tlsgate needs Administrator with CLI enabled"
            )
        if shell == "none":
            raise OperationError(
                f"{self.where}: user {self.user!r} is an Administrator but its terminal access (CLI) "
                "is disabled; set it to tmsh or advanced shell"
            )
        self.role_checked = True
        return f"user {self.user!r} has the Administrator role on all partitions (terminal access: {shell})"

    def describe(self) -> str:
        """One line for ``tls test``: where, version, authentication, TLS verification, role."""
        tls = (
            "TLS verification disabled (rest_insecure)" if self.insecure or self.scheme != "https"
            else f"TLS verified against {'the system store' if self.verify is True else self.verify}"
        )
        return f"BIG-IP {self.version} at {self.where}; {self.auth_mode} authentication; {tls}; {self.check_role()}"

    # -- what a REST session cannot do ------------------------------------------------------------
    def _no_shell(self, what: str) -> OperationError:
        return OperationError(
            f"{self.where}: F5 BIG-IP endpoints are managed over iControl REST; {what} is not available"
        )

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = 120,
        env: Mapping[str, str] | None = None,
        check: bool = False,
        privileged: bool = False,
    ) -> CommandResult:
        raise self._no_shell("running commands")

    def read_file(self, path: str) -> bytes:
        raise self._no_shell("reading files")

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        raise self._no_shell("writing files")

    def stat(self, path: str) -> FileStat | None:
        raise self._no_shell("file access")

    def remove(self, path: str) -> None:
        raise self._no_shell("file access")

    def rename(self, src: str, dst: str) -> None:
        raise self._no_shell("file access")

    def listdir(self, path: str) -> list[str]:
        raise self._no_shell("file access")

    def makedirs(self, path: str, *, mode: int = 0o755) -> None:
        raise self._no_shell("file access")

    def is_admin(self) -> bool:
        try:
            self.check_role()
            return True
        except OperationError:
            return False

    def systemd_running(self) -> bool:
        return False

    def which(self, program: str) -> str | None:
        return None


def _query(params: Mapping[str, str] | None) -> str | None:
    """The query string with OData keys spelt as f5-ansible sends them (``$top``, not ``%24top``);
    values are percent-encoded."""
    if not params:
        return None
    return "&".join(f"{key}={quote(str(value), safe=',+')}" for key, value in params.items())


def _netloc(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _json(resp: requests.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {"items": body}


def _message(resp: requests.Response) -> str:
    body = _json(resp)
    msg = body.get("message")
    if msg:
        return str(msg)
    text = resp.text.strip()
    if "<html" in text.lower():
        return f"HTTP {resp.status_code} (HTML page; the Configuration Utility may be restarting)"
    return text[:300] or f"HTTP {resp.status_code}"


def _short(msg: str, limit: int = 300) -> str:
    msg = " ".join(msg.split())
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def _ssl_reason(exc: Exception) -> str:
    text = str(exc)
    found = re.search(r"certificate verify failed: (.+?)(?: \(_ssl\.c|\)\)|$)", text)
    if found:
        return "certificate verify failed: " + found.group(1).strip().rstrip(".").replace("'", "")
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return "the port does not speak TLS"
    if "hostname" in text.lower() or "match" in text.lower():
        return "the certificate does not name this host"
    return "TLS handshake failed"
