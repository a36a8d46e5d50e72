"""HashiCorp Vault / OpenBao KV v2 credential store (hvac): token or AppRole auth."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import attrs

from ..errors import NotFoundError, OperationError
from ..models import CredentialStoreType, Problem
from ..options import option
from ..secret import Secret, reveal


@attrs.frozen
class VaultOptions:
    url: str = option(help="Vault/OpenBao address, e.g. https://vault.example:8200.", required=True,
                      min_len=1, max_len=2048)
    token: Secret | None = option(help="Token (or '-' to read it from standard input).", secret=True)
    role_id: str | None = option(help="AppRole role ID.", max_len=256)
    secret_id: Secret | None = option(help="AppRole secret ID (or '-' for standard input).", secret=True)
    mount: str = option(help="KV v2 mount point.", default="secret", min_len=1, max_len=256)
    ca_bundle: str | None = option(help="CA bundle that signs the server's certificate.", max_len=4096)


#: The keys a credential secret may hold; anything else in the secret is ignored.
CREDENTIAL_KEYS = ("user", "password", "ssh_key", "ssh_key_password")
_ALIASES = {"username": "user"}
TIMEOUT = 15


class VaultStore:
    """Reads credentials from a KV v2 secret engine of HashiCorp Vault or OpenBao.

    ``cred_id`` is the secret's path under the mount (``ssh/web1`` for ``secret/ssh/web1`` with the
    default mount ``secret``; the API form ``secret/data/ssh/web1`` is accepted too). The latest
    version is read. TLS is verified with ``ca_bundle`` when given, else the system store. The
    token, the AppRole secret ID and every secret value stay out of every message.
    """

    def __init__(self, name: str, options: VaultOptions) -> None:
        self.name = name
        self.options = options

    # -- connecting -------------------------------------------------------------------------------
    @property
    def _where(self) -> str:
        from ..inventory import url_without_userinfo

        return f"credential store {self.name!r} ({url_without_userinfo(self.options.url)})"

    def _client(self) -> tuple[Any, str]:
        """An authenticated hvac client and how it authenticated ("token" or "AppRole")."""
        import hvac

        opts = self.options
        verify: bool | str = opts.ca_bundle or True
        if opts.ca_bundle and not os.path.isfile(opts.ca_bundle):
            raise OperationError(f"{self._where}: --ca_bundle {opts.ca_bundle}: no such file")
        client = hvac.Client(url=opts.url, verify=verify, timeout=TIMEOUT)
        token = reveal(opts.token)
        secret_id = reveal(opts.secret_id)
        if token:
            client.token = token
            return client, "token"
        if opts.role_id and secret_id:
            with self._errors("AppRole login"):
                client.auth.approle.login(role_id=opts.role_id, secret_id=secret_id)
            return client, "AppRole"
        raise OperationError(f"{self._where}: no credentials: give --token, or --role_id with --secret_id")

    @contextlib.contextmanager
    def _errors(self, action: str, cred_id: str | None = None) -> Iterator[None]:
        """hvac / requests failures as one line that names the store and never a secret."""
        import hvac.exceptions as hx
        import requests

        what = f"{action} of {cred_id!r}" if cred_id else action
        try:
            yield
        except requests.exceptions.SSLError:
            hint = "check --ca_bundle" if self.options.ca_bundle else "give the CA that signs it with --ca_bundle"
            raise OperationError(f"{self._where}: TLS verification of the server failed ({hint})") from None
        except requests.exceptions.ConnectTimeout:
            raise OperationError(f"{self._where}: unreachable: connection timed out after {TIMEOUT} s") from None
        except requests.exceptions.Timeout:
            raise OperationError(f"{self._where}: no answer within {TIMEOUT} s during {what}") from None
        except requests.exceptions.ConnectionError as exc:
            reason = "connection refused" if "refused" in str(exc).lower() else "cannot connect"
            raise OperationError(f"{self._where}: unreachable ({reason})") from None
        except requests.exceptions.RequestException as exc:
            raise OperationError(f"{self._where}: {what} failed: {type(exc).__name__}") from None
        except hx.InvalidPath:
            if cred_id is None:
                raise OperationError(f"{self._where}: {what}: path not found") from None
            raise NotFoundError(
                f"no secret {cred_id!r} in {self._where} (KV v2 mount {self.options.mount!r})",
                option="--store_cred_id",
            ) from None
        except hx.Forbidden:
            if action == "token lookup":
                raise OperationError(f"{self._where}: the token is invalid or expired") from None
            if action == "AppRole login":
                raise OperationError(f"{self._where}: AppRole login refused (wrong --role_id or --secret_id, "
                                     "or the secret ID expired)") from None
            raise OperationError(
                f"{self._where}: permission denied for {what} (the token's policies must allow read on "
                f"{self.options.mount}/data/{cred_id or '...'})"
            ) from None
        except hx.Unauthorized:
            raise OperationError(f"{self._where}: the token is invalid or expired") from None
        except hx.InvalidRequest as exc:
            if action == "AppRole login":
                raise OperationError(f"{self._where}: AppRole login refused (wrong --role_id or --secret_id, "
                                     "or the secret ID expired)") from None
            raise OperationError(f"{self._where}: {what} refused: {_first_error(exc)}") from None
        except hx.VaultDown:
            raise OperationError(f"{self._where}: the server is sealed or not initialised") from None
        except hx.VaultError as exc:
            raise OperationError(f"{self._where}: {what} failed: {type(exc).__name__}: {_first_error(exc)}") from None

    # -- the store contract ---------------------------------------------------------------------
    def _path(self, cred_id: str) -> str:
        path = cred_id.strip().strip("/")
        api_prefix = f"{self.options.mount.strip('/')}/data/"
        if path.startswith(api_prefix):
            path = path[len(api_prefix):]
        if not path:
            raise NotFoundError("an empty secret path", option="--store_cred_id")
        return path

    def get(self, cred_id: str) -> dict[str, str]:
        """The credential at ``cred_id``: a dict with keys among user, password, ssh_key,
        ssh_key_password (``username`` is read as ``user``)."""
        path = self._path(cred_id)
        client, _ = self._client()
        try:
            with self._errors("read", path):
                response = client.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=self.options.mount, raise_on_deleted_version=True
                )
        except OperationError as exc:
            # Vault answers 403 both for a token without the right policy and for a bad token.
            if "permission denied" in str(exc) and not _token_valid(client):
                raise OperationError(f"{self._where}: the token is invalid or expired") from None
            raise
        data = ((response or {}).get("data") or {}).get("data") or {}
        found: dict[str, str] = {}
        for key, value in data.items():
            key = _ALIASES.get(key, key)
            if key in CREDENTIAL_KEYS and value is not None and value != "":
                found[key] = value if isinstance(value, str) else str(value)
        if not found:
            raise OperationError(
                f"{self._where}: secret {path!r} holds none of the keys {', '.join(CREDENTIAL_KEYS)} "
                f"(it has: {', '.join(sorted(data)) or 'nothing'})"
            )
        return found

    def test(self) -> str:
        """Connect and authenticate; a one-line description of what answered."""
        client, how = self._client()
        with self._errors("health check"):
            health = client.sys.read_health_status(method="GET")
            health = health if isinstance(health, dict) else health.json()
        if health.get("sealed"):
            raise OperationError(f"{self._where}: the server is sealed")
        with self._errors("token lookup"):
            me = client.auth.token.lookup_self()
        policies = ", ".join((me.get("data") or {}).get("policies") or []) or "none"
        from ..inventory import url_without_userinfo

        url = url_without_userinfo(self.options.url)
        return (f"vault store {self.name!r}: {url} answered (version {health.get('version', '?')}), "
                f"authenticated by {how} (policies: {policies}), KV v2 mount {self.options.mount!r}")


def _token_valid(client: Any) -> bool:
    try:
        client.auth.token.lookup_self()
    except Exception:  # noqa: BLE001 - any failure means we cannot vouch for the token
        return False
    return True


def _first_error(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list) and errors:
        return str(errors[0]).splitlines()[0][:200]
    return type(exc).__name__


def check_options(opts: VaultOptions) -> list[Problem]:
    """``store add vault``: an http(s) URL with a host, a token or an AppRole pair, an existing
    --ca_bundle (hvac would only fail at the first job: ``MissingSchema``, "no credentials")."""
    from urllib.parse import urlsplit

    try:
        url = urlsplit(opts.url)
    except ValueError:  # "Invalid IPv6 URL": an unbalanced [ ]
        url = urlsplit("")
    if url.scheme not in ("http", "https") or not url.hostname:
        return [Problem("must be an http:// or https:// URL with a host, e.g. https://vault.example:8200",
                        option="--url")]
    try:
        url.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        return [Problem("the port must be between 1 and 65535", option="--url")]
    if opts.role_id and opts.secret_id is None:
        return [Problem("is required with --role_id", option="--secret_id")]
    if opts.secret_id is not None and not opts.role_id:
        return [Problem("is required with --secret_id", option="--role_id")]
    if opts.token is None and not opts.role_id:
        return [Problem("give --token, or --role_id with --secret_id", option="--token")]
    if opts.ca_bundle and not os.path.isfile(opts.ca_bundle):
        return [Problem(f"{opts.ca_bundle}: no such file", option="--ca_bundle")]
    return []


VAULT = CredentialStoreType(
    name="vault",
    description="HashiCorp Vault / OpenBao KV v2 (token or AppRole).",
    options=VaultOptions,
    factory=VaultStore,
    validate=check_options,
)
