"""Small in-process plugins for core tests: an endpoint type that keeps PEM files in a folder,
a second type owned by another plugin, and a policy plugin that declares nothing."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import pytest
from tlsgate import Transaction
from tlsgate.plugin import EndpointType, InstallResult, Node, RestartResult, impl, option
from tlsgate.registry import Registry


@attrs.frozen
class FolderOptions:
    folder: str = option(help="Folder that holds the certificate.", required=True, min_len=1, max_len=4096)
    fail_after_write: bool = option(help="Test switch: fail after writing.", default=False)


class FolderPlugin:
    """Endpoint type 'folder': cert.pem + key.pem in a folder."""

    calls: list[str]

    def __init__(self) -> None:
        self.calls = []

    @impl
    def tlsgate_endpoint_types(self) -> list[EndpointType]:
        return [EndpointType(name="folder", description="PEM files in a folder", connection_types=("local", "fakeremote", "fakeinsecure"),
                             local_platforms=("linux", "windows"), options=FolderOptions)]

    @impl
    def discover_nodes(self, endpoint, connection):  # type: ignore[no-untyped-def]
        from tlsgate import certs

        self.calls.append(f"discover:{endpoint.type}")
        path = connection.path.join(endpoint.options.folder, "cert.pem")
        if not connection.exists(path):
            return []
        cert = certs.load_any_certificate(connection.read_file(path))
        return [Node(name=certs.common_name(cert) or "cert", protocol="file", fingerprint=certs.fingerprint(cert),
                     certificate=certs.to_der(cert), locator="cert.pem")]

    @impl
    def install(self, endpoint, connection, bundle, nodes, dry_run, alias):  # type: ignore[no-untyped-def]
        self.calls.append(f"install:{endpoint.type}")
        folder = endpoint.options.folder
        with Transaction(connection, dry_run=dry_run) as tx:
            tx.write(connection.path.join(folder, "cert.pem"), bundle.fullchain_pem())
            tx.write(connection.path.join(folder, "key.pem"), bundle.key_pem(), mode=0o600)
            if endpoint.options.fail_after_write and not dry_run:
                raise RuntimeError("injected failure after write")
        return tx.result(nodes=(bundle.common_name or "cert",), verified=not dry_run)

    @impl
    def restart(self, endpoint, connection) -> RestartResult:  # type: ignore[no-untyped-def]
        return RestartResult(False, "nothing to restart")


class FakeRemoteTransport:
    """A remote connection type whose connection is the local machine; records the credentials
    it was given so tests can check what the core resolved."""

    def __init__(self) -> None:
        self.credentials: list = []

    @impl
    def tlsgate_connection_types(self):  # type: ignore[no-untyped-def]
        from tlsgate.models import ConnectionType

        return [ConnectionType("fakeremote", "test transport", default_port=2222),
                ConnectionType("fakeinsecure", "test transport without TLS verification", default_port=2223,
                               insecure=True)]

    @impl
    def connect(self, endpoint, credentials):  # type: ignore[no-untyped-def]
        from tlsgate.transports.local import LocalConnection

        self.credentials.append(credentials)
        conn = LocalConnection()
        conn.insecure = endpoint.connection.type == "fakeinsecure"
        return conn


class OtherPlugin:
    @impl
    def tlsgate_endpoint_types(self) -> list[EndpointType]:
        return [EndpointType(name="other", description="another type", connection_types=("local",),
                             local_platforms=("linux",))]

    @impl
    def discover_nodes(self, endpoint, connection) -> Sequence[Node]:  # type: ignore[no-untyped-def]
        return [Node(name="from-other")]

    @impl
    def install(self, endpoint, connection, bundle, nodes, dry_run, alias) -> InstallResult:  # type: ignore[no-untyped-def]
        return InstallResult(nodes=("other-was-called",))


class AuditPolicy:
    """Declares nothing: a wrapper that must still see every install."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @impl(wrapper=True)
    def install(self, endpoint, connection, bundle, nodes, dry_run, alias):  # type: ignore[no-untyped-def]
        self.seen.append(endpoint.type)
        return (yield)


@pytest.fixture
def registry() -> Registry:
    """A registry with the core's local transport and the in-process test plugins only."""
    from tlsgate.transports import local

    reg = Registry()
    reg.register(local, name="local", distribution="tlsgate")
    reg.register(FolderPlugin(), name="folder", distribution="test-folder")
    reg.register(OtherPlugin(), name="other", distribution="test-other")
    reg.register(AuditPolicy(), name="policy", distribution="test-policy")
    reg.register(FakeRemoteTransport(), name="fakeremote", distribution="test-fakeremote")
    from tlsgate import credstores

    reg.register(credstores, name="credstores", distribution="tlsgate")
    reg.finish()
    return reg


@pytest.fixture
def gateway(registry: Registry, tlsgate_home):  # type: ignore[no-untyped-def]
    from tlsgate.api import Gateway

    gw = Gateway(registry=registry)
    yield gw
    gw.close()
