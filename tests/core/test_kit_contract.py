"""The kit itself: FakeConnection behaves like the local transport where drivers rely on it, and the
behavioural contract suite fails a driver that breaks each promise (so a plugin passing it means
something)."""

from __future__ import annotations

import pytest
from tlsgate.plugin import (
    CertificateBundle,
    CommandFailed,
    ConnectionSpec,
    Endpoint,
    EndpointType,
    InstallResult,
    Node,
    Transaction,
    impl,
)
from tlsgate.registry import Registry
from tlsgate_testing.contract import (
    Case,
    check_behaviour,
    check_discovery_is_read_only,
    check_dry_run_changes_nothing,
    check_failed_install_restores,
)
from tlsgate_testing.fake import FakeConnection


def test_fake_connection_files_commands_and_record() -> None:
    conn = FakeConnection({"/etc/a/x.conf": b"x", "/etc/a/sub/y.conf": b"y"}, {("true",): (0, "ok\n")},
                          dirs=["/empty"], modes={"/etc/a/x.conf": 0o600})
    assert conn.listdir("/etc/a") == ["sub", "x.conf"] and conn.listdir("/empty") == []
    with pytest.raises(FileNotFoundError):  # as os.listdir, which Connection.glob relies on
        conn.listdir("/nowhere")
    assert conn.glob("/etc/a/*.conf") == ["/etc/a/x.conf"]
    assert conn.stat("/etc/a/x.conf").mode == 0o600 and conn.stat("/etc/a").is_dir  # type: ignore[union-attr]
    assert conn.run(["true"]).stdout == "ok\n" and conn.run(["nope"]).exit_code == 127
    with pytest.raises(CommandFailed, match="nope"):
        conn.run(["nope"], check=True)
    conn.write_file("/etc/a/z", b"z", mode=0o640)
    conn.rename("/etc/a/z", "/etc/a/w")
    assert conn.writes == ["/etc/a/z", "/etc/a/w"] and conn.modes["/etc/a/w"] == 0o640
    assert conn.ran == [("true",), ("nope",), ("nope",)]
    handler = FakeConnection(commands=lambda argv: (3, "", "boom") if argv[0] == "x" else None)
    assert (handler.run(["x"]).exit_code, handler.run(["x"]).stderr, handler.run(["y"]).exit_code) == (3, "boom", 127)


class _Pem:
    """A tiny driver whose behaviour a test can break: ``flaw`` names the promise it breaks."""

    def __init__(self, flaw: str | None = None, reload: bool = False) -> None:
        self.flaw = flaw
        self.reload = reload  # after the writes, ask the "server" to reload (a peer step that can fail)

    @impl
    def tlsgate_endpoint_types(self) -> list[EndpointType]:
        return [EndpointType(name="kitpem", description="test", connection_types=("local",),
                             local_platforms=("linux",))]

    @impl
    def discover_nodes(self, endpoint, connection) -> list[Node]:  # type: ignore[no-untyped-def]
        if self.flaw == "discovery writes":
            connection.write_file("/srv/cache", b"seen")
        return [Node(name="x", protocol="file")] if connection.exists("/srv/cert.pem") else []

    @impl
    def install(self, endpoint, connection, bundle, nodes, dry_run) -> InstallResult:  # type: ignore[no-untyped-def]
        if self.flaw == "no transaction":  # writes directly: nothing is restored on failure
            if dry_run:
                return InstallResult(dry_run=True, plan=())
            connection.write_file("/srv/key.pem", bundle.key_pem(), mode=0o600)
            connection.write_file("/srv/cert.pem", bundle.fullchain_pem())
            return InstallResult(nodes=("x",))
        with Transaction(connection, dry_run=dry_run and self.flaw != "dry run writes") as tx:
            tx.write("/srv/key.pem", bundle.key_pem(), mode=0o600)
            tx.write("/srv/cert.pem", bundle.fullchain_pem())
            if self.reload and not dry_run:
                connection.run(["reload"], check=True)
        return tx.result(nodes=("x",), verified=True)


def _case(flaw: str | None, test_ca) -> tuple[Case, Registry]:  # type: ignore[no-untyped-def]
    reg = Registry()
    reg.register(_Pem(flaw), name="kitpem", distribution="test-kitpem")
    reg.finish()
    issued = test_ca.issue("x.test")
    conn = FakeConnection({"/srv/cert.pem": b"old cert", "/srv/key.pem": b"old key"})
    ep = Endpoint(name="k", type="kitpem", connection=ConnectionSpec(type="local"))
    return Case(ep, conn, CertificateBundle.from_pem(issued.cert_pem, issued.key_pem), snapshot=conn.snapshot), reg


def test_a_sound_driver_passes(test_ca) -> None:  # type: ignore[no-untyped-def]
    case, reg = _case(None, test_ca)
    check_behaviour(case, reg)


@pytest.mark.parametrize(("flaw", "check", "message"), [
    ("discovery writes", check_discovery_is_read_only, "discovery changed the endpoint: /srv/cache"),
    ("dry run writes", check_dry_run_changes_nothing, "a dry run changed the endpoint"),
    ("no transaction", check_dry_run_changes_nothing, "a dry run returned an empty plan"),
    ("no transaction", check_failed_install_restores, "the install failed without rolling back"),
])
def test_each_broken_promise_is_caught(flaw: str, check, message: str, test_ca) -> None:  # type: ignore[no-untyped-def]
    case, reg = _case(flaw, test_ca)
    with pytest.raises(AssertionError, match=message):
        check(case, reg)


def _peer_case(test_ca, reload: bool) -> tuple[Case, Registry]:  # type: ignore[no-untyped-def]
    """A driver whose install ends with a "reload" of its peer; ``inject`` makes the peer refuse
    the next reload, as the F5 and IIS tests make their loopback peers refuse a step."""
    reg = Registry()
    reg.register(_Pem(None, reload=reload), name="kitpem", distribution="test-kitpem")
    reg.finish()
    armed = {"now": False, "fired": False}

    def peer(argv):  # type: ignore[no-untyped-def]
        if argv[0] != "reload":
            return None
        if armed["now"]:
            armed.update(now=False, fired=True)
            return 1, "", "reload refused (injected)"
        return 0, "", ""

    def inject():  # type: ignore[no-untyped-def]
        armed["now"] = True
        return lambda: armed["fired"]

    conn = FakeConnection({"/srv/cert.pem": b"old cert", "/srv/key.pem": b"old key"}, commands=peer)
    issued = test_ca.issue("x.test")
    ep = Endpoint(name="k", type="kitpem", connection=ConnectionSpec(type="local"))
    return Case(ep, conn, CertificateBundle.from_pem(issued.cert_pem, issued.key_pem), snapshot=conn.snapshot,
                inject=inject), reg


def test_a_failure_injected_in_the_peer_is_restored_from(test_ca) -> None:  # type: ignore[no-untyped-def]
    case, reg = _peer_case(test_ca, reload=True)
    check_behaviour(case, reg)
    err = check_failed_install_restores(case, reg)
    assert "reload refused (injected)" in str(err)
    assert case.connection.read_file("/srv/cert.pem") == b"old cert"


def test_a_peer_failure_the_install_never_reaches_is_reported(test_ca) -> None:  # type: ignore[no-untyped-def]
    case, reg = _peer_case(test_ca, reload=False)
    with pytest.raises(AssertionError, match="never reached the step the peer was told to fail"):
        check_failed_install_restores(case, reg)
