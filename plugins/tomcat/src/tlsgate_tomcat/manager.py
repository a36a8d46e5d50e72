"""Reloading one TLS host's certificate in place, without a restart, through Tomcat's Manager.

Tomcat 9+ rebuilds one SSLHostConfig's TLS context from its in-memory configuration
(``reloadSslHostConfig``); the JVM, and every other connector (the plain HTTP one included),
stays up. The in-memory configuration still names the keystore the JVM started with, and tlsgate
installs into a new file, so the Manager's JMX proxy (``/manager/jmxproxy``, role
``manager-jmx``) first points the host's ``SSLHostConfigCertificate`` MBean at the new files
(the same values server.xml now holds), then invokes ``reloadSslHostConfig`` on that
connector's endpoint (``type=ThreadPool``) for that host only. (The text interface's
``/manager/text/sslReload?tlsHostName=`` reloads the host on every connector and cannot repoint
a file.)

The reload answers "OK" even when the new key does not fit: the handshake afterwards is the
test (the install falls back to the full restart when it does not show the new certificate).
The JMX proxy takes only GET requests, and Tomcat's access log records request lines, so a
change that would send a secret (a new keystore password) is not made in place: the install
restarts and says why.

The Manager is reached from the endpoint's host (locally directly; over ssh through sshd's
``direct-tcpip`` forwarding), as the Debian package's manager context allows only loopback
clients (``RemoteCIDRValve allow="127.0.0.0/8, ::1/128"``). http.client does the HTTP because
the stream may be an ssh channel, which requests cannot use as its socket.
"""

from __future__ import annotations

import base64
import http.client
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from tlsgate.plugin import OperationError, reveal

if TYPE_CHECKING:
    from tlsgate.plugin import Connection, Endpoint

    from .discovery import TomcatConfig
    from .install import HostChange

#: Certificate attributes the reload may repoint (no secret, each a plain string on the MBean).
SETTABLE = ("certificateKeystoreFile", "certificateKeystoreType", "certificateKeyAlias",
            "certificateFile", "certificateKeyFile", "certificateChainFile")
SECRET = ("certificateKeystorePassword", "certificateKeyPassword", "certificateKeystorePasswordFile",
          "certificateKeyPasswordFile")


def manager_url(endpoint: Endpoint, config: TomcatConfig) -> str | None:
    """The endpoint's ``--manager_url``, else the Manager on the first plain HTTP connector."""
    if endpoint.options.manager_url:
        return str(endpoint.options.manager_url)
    for _service, address, port in config.xml.plain_connectors():
        if port:
            host = address if address and address not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
            return f"http://{_url_host(host)}:{port}/manager"
    return None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def check_url(value: str) -> str | None:
    """Why ``value`` is not a Manager URL tlsgate can use (http://host[:port]/path), or None."""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme != "http":
        return "must be an http:// URL (the Manager on a plain connector, reached from the endpoint's host)"
    if not parts.hostname:
        return "must name a host"
    if parts.query or parts.fragment or parts.username or parts.password:
        return "must hold no query, fragment or credentials (give --manager_user / --manager_password)"
    return None


class _Channel(http.client.HTTPConnection):
    """An HTTPConnection over a stream the endpoint's connection opened."""

    def __init__(self, connection: Connection, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._conn = connection

    def connect(self) -> None:
        self.sock = self._conn.open_socket(self.host, self.port, timeout=self.timeout)


@attrs.frozen
class Manager:
    """Tomcat's Manager, as the endpoint's credentials reach it."""

    connection: Connection = attrs.field(repr=False)
    url: str
    user: str
    password: Any = attrs.field(repr=False)  # Secret
    timeout: float = 15.0

    def get(self, path: str, params: Mapping[str, str]) -> str:
        parts = urllib.parse.urlsplit(self.url)
        target = parts.path.rstrip("/") + path + "?" + urllib.parse.urlencode(params)
        auth = base64.b64encode(f"{self.user}:{reveal(self.password)}".encode()).decode()
        http_conn = _Channel(self.connection, parts.hostname or "127.0.0.1", parts.port or 80, self.timeout)
        try:
            http_conn.request("GET", target, headers={"Authorization": f"Basic {auth}"})
            response = http_conn.getresponse()
            body = response.read(1 << 20).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as exc:
            raise OperationError(f"the Manager at {self.url} did not answer: {exc}") from None
        finally:
            http_conn.close()
        if response.status in (401, 403):
            raise OperationError(f"the Manager at {self.url} refused {self.user!r} (HTTP {response.status}): the user "
                                 "needs the manager-jmx role in tomcat-users.xml")
        if response.status != 200:
            raise OperationError(f"the Manager at {self.url}{path} answered HTTP {response.status}")
        return body  # may list secrets (MBean attributes): never shown as a whole

    # -- JMX proxy ----------------------------------------------------------------------------
    def query(self, pattern: str) -> list[dict[str, str]]:
        body = self.get("/jmxproxy/", {"qry": pattern})
        if not body.startswith("OK"):
            raise OperationError(f"the Manager's JMX proxy failed: {_first_line(body)}")
        return parse_beans(body)

    def set(self, bean: str, attribute: str, value: str) -> None:
        body = self.get("/jmxproxy/", {"set": bean, "att": attribute, "val": value})
        if not body.startswith("OK"):
            raise OperationError(f"setting {attribute} through the JMX proxy failed: {_first_line(body)}")

    def invoke(self, bean: str, operation: str, *args: str) -> None:
        params = {"invoke": bean, "op": operation}
        if args:
            params["ps"] = ",".join(args)
        body = self.get("/jmxproxy/", params)
        if not body.startswith("OK"):
            raise OperationError(f"{operation} through the JMX proxy failed: {_first_line(body)}")


def _first_line(body: str) -> str:
    line = body.strip().splitlines()[0] if body.strip() else "(empty answer)"
    return line[:300]


def parse_beans(body: str) -> list[dict[str, str]]:
    """The JMX proxy's ``qry`` answer: one dict per MBean (``Name`` and its attributes)."""
    beans: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in body.splitlines():
        if line.startswith("Name: "):
            current = {"Name": line[6:].strip()}
            beans.append(current)
        elif current is not None and ": " in line and not line.startswith(" "):
            key, _, value = line.partition(": ")
            current[key] = value
        elif not line.strip():
            current = None
    return beans


_PROPERTY = re.compile(r'([A-Za-z]+)=("(?:[^"\\]|\\.)*"|[^,]*)')


def object_properties(name: str) -> tuple[str, dict[str, str]]:
    """An ObjectName's domain and key properties (quoted values unquoted)."""
    domain, _, rest = name.partition(":")
    props = {}
    for key, value in _PROPERTY.findall(rest):
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            value = re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value[1:-1])
        props[key] = value
    return domain, props


def quote_value(value: str) -> str:
    """An ObjectName quoted value (javax.management.ObjectName.quote)."""
    return '"' + re.sub(r'([\\"*?])', r"\\\1", value).replace("\n", "\\n") + '"'


@attrs.frozen
class HostReload:
    """One SSLHostConfig to repoint and reload: its certificate MBean and the endpoint MBean."""

    host: str  # the SSLHostConfig name as Tomcat holds it
    certificate_bean: str
    endpoint_bean: str
    new: dict[str, str]
    old: dict[str, str | None]


@attrs.frozen
class InPlacePlan:
    manager: Manager
    reloads: tuple[HostReload, ...]

    def describe(self) -> str:
        hosts = ", ".join(r.host for r in self.reloads)
        return f"reloadSslHostConfig ({hosts}) through the Manager at {self.manager.url}"

    def apply(self) -> None:
        for r in self.reloads:
            for attribute, value in r.new.items():
                self.manager.set(r.certificate_bean, attribute, value)
            self.manager.invoke(r.endpoint_bean, "reloadSslHostConfig", r.host)

    def revert(self) -> None:
        """Point the hosts at the files they served before and reload them again."""
        for r in self.reloads:
            for attribute, value in r.old.items():
                if value is not None:
                    self.manager.set(r.certificate_bean, attribute, value)
            self.manager.invoke(r.endpoint_bean, "reloadSslHostConfig", r.host)


def plan_in_place(endpoint: Endpoint, connection: Connection, config: TomcatConfig,
                  changes: Sequence[HostChange]) -> tuple[InPlacePlan | None, str]:
    """The in-place reload of ``changes``, or None and why it cannot be done (the install then
    restarts Tomcat and says so)."""
    options = endpoint.options
    if not options.manager_user or options.manager_password is None:
        return None, "the endpoint holds no Manager credentials (--manager_user / --manager_password)"
    if connection.platform == "windows":
        return None, "in-place reload is not supported on Windows hosts"
    url = manager_url(endpoint, config)
    if url is None:
        return None, "server.xml has no plain HTTP connector for the Manager (give --manager_url)"
    why_not = _unreloadable(changes)
    if why_not:
        return None, why_not
    manager = Manager(connection, url, options.manager_user, options.manager_password)
    try:
        beans = manager.query("*:type=SSLHostConfigCertificate,*")
    except OperationError as exc:
        return None, str(exc)
    reloads = []
    for change in changes:
        hc, cert = change.host, change.certificate
        assert cert is not None
        match = _find_bean(beans, hc.host_name, hc.address, hc.port, cert.type)
        if match is None:
            return None, f"the Manager lists no certificate MBean for {hc.locator}"
        domain, props = object_properties(match["Name"])
        pool = props.get("ThreadPool", "")
        new = {k: str(v) for k, v in change.changes.items() if v is not None}
        old = {k: match.get(k) for k in new}
        reloads.append(HostReload(
            host=props.get("Host", hc.host_name), certificate_bean=match["Name"],
            endpoint_bean=f"{domain}:type=ThreadPool,name={quote_value(pool)}", new=new, old=old,
        ))
    return InPlacePlan(manager, tuple(reloads)), ""


def _unreloadable(changes: Sequence[HostChange]) -> str:
    for change in changes:
        cert = change.certificate
        if cert is None or cert.element is None or cert.element.tag != "Certificate":
            return f"{change.host.locator}: a new <Certificate> element or legacy connector attributes need a restart"
        for name, value in change.changes.items():
            if name in SECRET:
                return (f"{change.host.locator}: the keystore gets a new password, which the Manager's JMX proxy "
                        "would receive in a URL (and its access log record)")
            if name not in SETTABLE or value is None:
                return f"{change.host.locator}: {name} changes in a way only a restart applies"
    return ""


def _find_bean(beans: Sequence[dict[str, str]], host: str, address: str | None, port: int | None,
               cert_type: str) -> dict[str, str] | None:
    found = []
    for bean in beans:
        _, props = object_properties(bean["Name"])
        pool = props.get("ThreadPool", "")
        if port is None or not pool.endswith(f"-{port}"):
            continue
        if address and f"-{address}-{port}" not in pool:
            continue
        if props.get("Host", "").lower() != host.lower():
            continue
        found.append((props.get("name", ""), bean))
    if len(found) == 1:
        return found[0][1]
    typed = [bean for name, bean in found if name.upper() == cert_type.upper()]
    return typed[0] if len(typed) == 1 else None


def check_options(options: Any) -> list[tuple[str, str]]:
    """(flag, problem) pairs for the Manager options."""
    problems = []
    if bool(options.manager_user) != (options.manager_password is not None):
        flag = "--manager_password" if options.manager_user else "--manager_user"
        problems.append((flag, "--manager_user and --manager_password go together"))
    if options.manager_url:
        why = check_url(options.manager_url)
        if why:
            problems.append(("--manager_url", why))
    return problems


__all__ = ["InPlacePlan", "Manager", "check_options", "manager_url", "plan_in_place"]
