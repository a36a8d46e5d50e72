"""The winrm_* transports: pywinrm 0.5.0 against the loopback WS-Man peer (real HTTP(S), real
NTLM and message encryption), backed by the simulated Windows host."""

from __future__ import annotations

import hashlib
import os

import pytest
from tlsgate.errors import ConnectionFailed, OperationError
from tlsgate.options import option_specs
from tlsgate.registry import get_registry
from tlsgate.transaction import Transaction
from tlsgate.transports import winrm as winrm_transport
from tlsgate.transports.windows import CMD_EXE_LIMIT, STDIN_CHUNK, TEMPLATES, WindowsConnection
from tlsgate_testing.fixtures_core import free_port
from tlsgate_testing.winhost import LoopbackWindowsConnection, PSError, PSResult, SimulatedWindowsHost
from tlsgate_testing.winrm_fixtures import (
    WINRM_PASSWORD,
    WINRM_USER,
    winrm_credentials,
    winrm_endpoint,
)


def connect(endpoint, password=WINRM_PASSWORD):  # type: ignore[no-untyped-def]
    return winrm_transport.connect_winrm(endpoint, winrm_credentials(password))


def soap_requests(peer):  # type: ignore[no-untyped-def]
    return [r for r in peer.requests if r.action]


# -- declarations --------------------------------------------------------------------------------
def test_connection_types_are_declared_with_ports_platform_and_options(tlsgate_home) -> None:  # type: ignore[no-untyped-def]
    types = get_registry().connection_types
    assert types["winrm_http"].default_port == 5985
    assert types["winrm_https"].default_port == 5986
    assert types["winrm_https_insecure"].default_port == 5986
    assert types["winrm_https_insecure"].insecure and not types["winrm_https"].insecure
    for name in winrm_transport.WINRM_TYPES:
        assert types[name].platform == "windows"
        flags = {s.name: s for s in option_specs(types[name].options)}
        assert flags["winrm_auth"].choices == ("ntlm", "basic", "kerberos")
        assert flags["winrm_auth"].default == "ntlm"
        assert "ca_bundle" in flags


def test_validate_rejects_ca_bundle_where_nothing_is_verified(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("http")
    problems = winrm_transport.validate(winrm_endpoint(peer, "winrm_http", ca_bundle="/x.pem"))
    assert [p.option for p in problems] == ["--ca_bundle"]
    assert winrm_transport.validate(winrm_endpoint(peer, "winrm_https", ca_bundle="/x.pem")) == []
    problems = winrm_transport.validate(winrm_endpoint(peer, "winrm_http", auth="digest"))
    assert [p.option for p in problems] == ["--winrm_auth"]


# -- the four ways in -----------------------------------------------------------------------------
def test_http_ntlm_encrypts_every_message(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("http")
    peer.host.seed(r"C:\ProgramData\app\cert.pem", b"PEM DATA")
    with get_registry().connect(winrm_endpoint(peer, "winrm_http"), winrm_credentials()) as conn:
        assert isinstance(conn, WindowsConnection)
        assert conn.platform == "windows" and conn.insecure is False
        assert conn.read_file(r"c:/programdata/APP/cert.pem") == b"PEM DATA"  # NTFS: case-insensitive
        assert conn.path.join("C:\\a", "b") == "C:\\a\\b"
    soap = soap_requests(peer)
    assert soap, "no SOAP request reached the peer"
    assert all(r.encrypted for r in soap), "NTLM over http must seal every message"
    assert {r.user for r in soap} == {WINRM_USER}
    actions = peer.soap_actions()
    assert actions[0] == "Create" and actions[-1] == "Delete" and actions.count("Create") == 1


def test_http_basic(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("http")
    with connect(winrm_endpoint(peer, "winrm_http", auth="basic")) as conn:
        conn.write_file(r"C:\x.txt", b"basic")
        assert conn.read_file(r"C:\x.txt") == b"basic"
    assert {r.scheme for r in soap_requests(peer)} == {"basic"}
    assert not any(r.encrypted for r in soap_requests(peer))


@pytest.mark.parametrize("auth", ["ntlm", "basic"])
def test_https_verifies_against_ca_bundle(winrm_peer_factory, winrm_tls, auth) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("https")
    with connect(winrm_endpoint(peer, "winrm_https", auth=auth, ca_bundle=winrm_tls.ca_bundle)) as conn:
        assert conn.insecure is False
        conn.write_file(r"C:\t.bin", b"\x00\x01tls")
        assert conn.read_file(r"C:\t.bin") == b"\x00\x01tls"
    soap = soap_requests(peer)
    assert all(r.tls for r in soap)
    assert not any(r.encrypted for r in soap), "over https TLS protects the messages"


def test_https_insecure_accepts_any_certificate_and_says_so(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("https_untrusted")
    with get_registry().connect(winrm_endpoint(peer, "winrm_https_insecure"), winrm_credentials()) as conn:
        assert conn.insecure is True
        assert conn.is_admin() is True


def test_https_refuses_an_untrusted_certificate(winrm_peer_factory, winrm_tls) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("https_untrusted")
    with pytest.raises(ConnectionFailed) as err:
        connect(winrm_endpoint(peer, "winrm_https"))  # system trust store
    assert "TLS verification" in str(err.value) and "--ca_bundle" in str(err.value)
    with pytest.raises(ConnectionFailed, match="TLS verification"):
        connect(winrm_endpoint(peer, "winrm_https", ca_bundle=winrm_tls.ca_bundle))  # wrong CA
    assert not soap_requests(peer), "nothing may be sent to an unverified server"


def test_https_refuses_a_trusted_peer_when_the_bundle_lacks_its_ca(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("https")  # issued by the test CA, not in the system store
    with pytest.raises(ConnectionFailed, match="certificate verify failed"):
        connect(winrm_endpoint(peer, "winrm_https"))


def test_missing_ca_bundle_file_is_named(winrm_peer_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("https")
    with pytest.raises(ConnectionFailed, match="--ca_bundle"):
        connect(winrm_endpoint(peer, "winrm_https", ca_bundle=tmp_path / "nope.pem"))


# -- failures ------------------------------------------------------------------------------------
@pytest.mark.parametrize("auth", ["ntlm", "basic"])
def test_wrong_password_is_a_clear_error_without_the_password(winrm_peer_factory, auth) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("http")
    wrong = "Wr0ng pass;$(x)"
    with pytest.raises(ConnectionFailed) as err:
        connect(winrm_endpoint(peer, "winrm_http", auth=auth), password=wrong)
    text = str(err.value)
    assert "authentication failed" in text and "401" in text
    assert wrong not in text and WINRM_PASSWORD not in text
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_closed_port_is_connection_refused(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("http")
    ep = winrm_endpoint(peer, "winrm_http")
    ep = ep.__class__(name=ep.name, type=ep.type, connection=ep.connection.__class__(
        "winrm_http", host="127.0.0.1", port=free_port(), user=WINRM_USER, extra={}))
    with pytest.raises(ConnectionFailed, match="connection refused"):
        connect(ep)


def test_unknown_host_is_named(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("http")
    ep = winrm_endpoint(peer, "winrm_http")
    spec = ep.connection.__class__("winrm_http", host="no-such-host.invalid", port=5985, user=WINRM_USER)
    with pytest.raises(ConnectionFailed, match=r"unknown host|unreachable"):
        connect(ep.__class__(name="x", type="pem", connection=spec))


def test_operation_timeout_fault_is_retried_and_output_concatenated(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("http")
    data = os.urandom(3000)
    peer.host.seed(r"C:\big.bin", data)
    with connect(winrm_endpoint(peer)) as conn:
        before = len(peer.requests)
        peer.inject_operation_timeouts(2)
        assert conn.read_file(r"C:\big.bin") == data
        receives = [r for r in peer.requests[before:] if r.action.endswith("/Receive")]
        assert len(receives) >= 4  # 2 faults, 1 Running chunk, then Done


def test_operation_timeouts_beyond_our_deadline_are_a_clear_error(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("http")
    with connect(winrm_endpoint(peer)) as conn:
        peer.inject_operation_timeouts(10_000)
        with pytest.raises(OperationError, match=r"did not finish within 0.3 s \(WinRM operation timeout\)"):
            conn.run_powershell(TEMPLATES["is-admin"], timeout=0.3)
        assert conn.is_admin() is True  # the shell is still usable afterwards


# -- files ---------------------------------------------------------------------------------------
def test_file_larger_than_one_chunk_round_trips_under_the_limits(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("http")
    data = os.urandom(STDIN_CHUNK * 2 + 12_345)
    with connect(winrm_endpoint(peer)) as conn:
        conn.makedirs(r"C:\ProgramData\tlsgate\stores")
        path = r"C:\ProgramData\tlsgate\stores\big store.p12"
        conn.write_file(path, data, mode=0o600)
        assert conn.read_file(path) == data
        st = conn.stat(path)
        assert st is not None and st.size == len(data) and st.mode == 0o600 and not st.is_dir
    assert hashlib.sha256(peer.host.read(path)).digest() == hashlib.sha256(data).digest()
    chunks = [c for c in peer.host.calls if c.template == "file-write-chunk"]
    assert [c.params["offset"] for c in chunks] == [0, STDIN_CHUNK, 2 * STDIN_CHUNK]
    assert all("data" not in c.params and c.secret_params for c in chunks)  # bytes on stdin only
    assert max(len(line) for line in peer.host.command_lines) <= CMD_EXE_LIMIT
    assert peer.max_request_size <= 153600  # every envelope within MaxEnvelopeSize
    assert peer.soap_actions().count("Send") > 3  # stdin split over several Sends
    assert peer.host.fs.is_private(path)
    assert peer.host.fs.listdir(r"C:\ProgramData\tlsgate\stores") == ["big store.p12"]


def test_without_stdin_chunks_fit_the_command_line(winhost) -> None:  # type: ignore[no-untyped-def]
    conn = LoopbackWindowsConnection(winhost, stdin=False)
    data = os.urandom(10_000)
    conn.write_file(r"C:\big.bin", data)
    assert winhost.read(r"C:\big.bin") == data
    chunks = [c for c in winhost.calls if c.template == "file-write-chunk"]
    assert len(chunks) > 5 and all(c.secret_params is None for c in chunks)
    assert max(len(line) for line in winhost.command_lines) <= CMD_EXE_LIMIT
    assert max(len(line) for line in winhost.command_lines) > CMD_EXE_LIMIT - 200  # chunks are sized, not guessed
    with pytest.raises(OperationError, match="cannot pass secret parameters"):
        conn.run_powershell(TEMPLATES["is-admin"], secret_params={"pw": "x"})


def test_hash_mismatch_leaves_the_target_untouched(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    host = SimulatedWindowsHost()
    host.seed(r"C:\app\store.jks", b"old content")
    original = host._handlers["file-write-chunk"]

    def corrupting(h, params):  # type: ignore[no-untyped-def]
        params = dict(params, data="AAAA")  # bytes lost in transit
        return original[0](h, params)

    host.register("file-write-chunk", corrupting, template=TEMPLATES["file-write-chunk"])
    peer = winrm_peer_factory("http", host=host)
    with connect(winrm_endpoint(peer)) as conn, pytest.raises(OperationError, match="SHA-256 mismatch"):
        conn.write_file(r"C:\app\store.jks", b"new content")
    assert host.read(r"C:\app\store.jks") == b"old content"
    assert host.fs.listdir(r"C:\app") == ["store.jks"]  # no temporary file left behind


def test_file_operations_and_errors(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("http")
    with connect(winrm_endpoint(peer)) as conn:
        assert conn.stat(r"C:\nope") is None
        with pytest.raises(OperationError, match="no such file"):
            conn.read_file(r"C:\nope")
        with pytest.raises(OperationError, match="no such directory"):
            conn.write_file(r"C:\missing\dir\f", b"x")
        with pytest.raises(OperationError, match="not an absolute Windows path"):
            conn.read_file("relative\\path")
        conn.makedirs(r"C:\d\e")
        assert conn.stat(r"C:\d\e").is_dir  # type: ignore[union-attr]
        conn.write_file(r"C:\d\a.txt", b"a")
        conn.write_file(r"C:\d\b.txt", b"b")
        conn.rename(r"C:\d\a.txt", r"C:\d\B.TXT")  # replaces b.txt (case-insensitive)
        assert conn.listdir(r"C:\d") == ["b.txt", "e"]
        assert conn.read_file(r"C:\d\b.txt") == b"a"
        conn.remove(r"C:\d\b.txt")
        conn.remove(r"C:\d\b.txt")  # missing: not an error
        assert conn.listdir(r"C:\d") == ["e"]
        assert conn.glob(r"C:\d\*") == [r"C:\d\e"]


def test_run_passes_argv_stdin_and_env_as_data(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    host = SimulatedWindowsHost()
    seen = []

    def certutil(h, argv, stdin, env):  # type: ignore[no-untyped-def]
        seen.append({"argv": argv, "stdin": stdin, "env": env})
        return PSResult("done\n", "", 3)

    host.register_program("certutil", certutil)
    peer = winrm_peer_factory("http", host=host)
    argv = ["certutil", "-f", "a b", "it's", '"q"', "$(calc)", "x;y", "`n"]
    with connect(winrm_endpoint(peer)) as conn:
        res = conn.run(argv, stdin=b"secret pw\n", env={"PFX_PASS": "p;$x"})
        assert (res.exit_code, res.stdout, res.argv) == (3, "done\n", tuple(argv))
        with pytest.raises(OperationError, match="certutil failed"):
            conn.run(argv, check=True)
        assert conn.run(["nothere"]).exit_code == 127
        assert conn.which("certutil") is not None and conn.which("nothere") is None
    assert seen[0] == {"argv": argv, "stdin": b"secret pw\n", "env": {"PFX_PASS": "p;$x"}}


def test_unknown_template_fails_loudly(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("http")
    with connect(winrm_endpoint(peer)) as conn:
        res = conn.run_powershell("# tlsgate:not-registered\nWrite-Output 1\n")
        assert res.exit_code == 1 and "unknown template 'not-registered'" in res.stderr
        with pytest.raises(ValueError, match="# tlsgate:<name>"):
            conn.run_powershell("Write-Output 1")


def test_registered_template_handler_and_psError(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    host = SimulatedWindowsHost()
    restart = "# tlsgate:test-service-restart\nRestart-Service -Name $P.name\n"

    def handler(h, params):  # type: ignore[no-untyped-def]
        if params["name"] not in h.services:
            raise PSError(f"Cannot find any service with service name '{params['name']}'.", 1)
        h.services[params["name"]] = "Running"
        return "ok"

    host.register("test-service-restart", handler, template=restart)
    host.services["Tomcat9"] = "Stopped"
    peer = winrm_peer_factory("http", host=host)
    with connect(winrm_endpoint(peer)) as conn:
        assert conn.run_powershell(restart, {"name": "Tomcat9"}).stdout == "ok"
        bad = conn.run_powershell(restart, {"name": "nope"})
        assert bad.exit_code == 1 and "Cannot find any service" in bad.stderr
        tampered = conn.run_powershell(restart.replace("Restart", "Stop"), {"name": "Tomcat9"})
        assert tampered.exit_code == 1 and "differs from the registered text" in tampered.stderr
    assert host.services["Tomcat9"] == "Running"


def test_too_long_command_is_refused_before_sending(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("http")
    with connect(winrm_endpoint(peer)) as conn:
        sent = len(peer.host.command_lines)
        with pytest.raises(OperationError, match="limit is 8191"):
            conn.run(["program", "x" * 5000])
        assert len(peer.host.command_lines) == sent


def test_peer_enforces_cmd_exe_limit_for_raw_pywinrm(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    import winrm

    peer = winrm_peer_factory("http")
    session = winrm.Session(peer.url, auth=(WINRM_USER, WINRM_PASSWORD), transport="ntlm", ca_trust_path=None)
    res = session.run_ps("# " + "x" * 3100)
    assert res.status_code == 1 and b"The command line is too long." in res.std_err
    res = session.run_ps("# " + "x" * 2900)  # fits; the host then refuses a non-tlsgate script
    assert res.status_code == 1 and b"parameter prelude" in res.std_err


def test_transaction_over_winrm_restores_on_failure(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("http")
    peer.host.seed(r"C:\srv\key.pem", b"old key", private=True)
    with connect(winrm_endpoint(peer)) as conn:
        with pytest.raises(OperationError) as err, Transaction(conn) as tx:
            tx.write(r"C:\srv\key.pem", b"new key", mode=0o600)
            tx.write(r"C:\srv\new.pem", b"new cert")
            raise OperationError("config test failed")
        assert err.value.rolled_back
    assert peer.host.read(r"C:\srv\key.pem") == b"old key"
    assert peer.host.fs.is_private(r"C:\srv\key.pem")
    assert not peer.host.exists(r"C:\srv\new.pem")


def test_dropped_connection_mid_write_leaves_the_target_byte_identical(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("http")
    peer.host.seed(r"C:\app\store.p12", b"original keystore", private=True)
    peer.drop_connection_on("file-write-chunk")
    with connect(winrm_endpoint(peer)) as conn, pytest.raises(ConnectionFailed) as err:
        conn.write_file(r"C:\app\store.p12", os.urandom(STDIN_CHUNK + 10), mode=0o600)
    assert "closed the connection" in str(err.value) and "file-write-chunk" in str(err.value)
    assert WINRM_PASSWORD not in str(err.value)
    assert peer.host.read(r"C:\app\store.p12") == b"original keystore"


def test_kerberos_without_its_library_is_a_clear_error(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("winrm")
    try:
        import kerberos  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pykerberos is installed")
    peer = winrm_peer_factory("http")
    with pytest.raises(ConnectionFailed, match="kerberos"):
        connect(winrm_endpoint(peer, auth="kerberos"))


def test_clixml_error_stream_is_cleaned() -> None:
    from tlsgate.transports.windows import clean_clixml
    from tlsgate_testing.winhost import to_clixml

    text = "Cannot find path 'C:\\x <y> & z' because it does not exist.\nsecond line"
    assert clean_clixml(to_clixml(text)) == text + "\n"
    assert clean_clixml("plain error\n") == "plain error\n"
    assert clean_clixml("#< CLIXML\r\n<Objs><Obj S=\"progress\"/></Objs>") == ""
    mixed = "raw line\r\n" + to_clixml("serialized") + "\r\nafter"
    assert clean_clixml(mixed) == "raw line\nserialized\nafter\n"


@pytest.mark.parametrize("auth", ["ntlm", "basic"])
def test_reconnects_after_the_host_closed_an_idle_connection(winrm_peer_factory, auth) -> None:  # type: ignore[no-untyped-def]
    peer = winrm_peer_factory("http")
    with connect(winrm_endpoint(peer, auth=auth)) as conn:
        conn.write_file(r"C:\a.txt", b"before")
        peer.close_idle_connections()
        assert conn.read_file(r"C:\a.txt") == b"before"  # same shell, new HTTP connection
        conn.write_file(r"C:\a.txt", b"after")
    assert peer.host.read(r"C:\a.txt") == b"after"
    assert peer.soap_actions().count("Create") == 1


def test_peer_faults_for_an_unknown_shell_as_http_500(winrm_peer_factory) -> None:  # type: ignore[no-untyped-def]
    from winrm.exceptions import WSManFaultError
    from winrm.protocol import Protocol

    peer = winrm_peer_factory("http")
    protocol = Protocol(peer.url, transport="ntlm", username=WINRM_USER, password=WINRM_PASSWORD,
                        server_cert_validation="ignore")
    shell = protocol.open_shell()
    protocol.close_shell(shell, close_session=False)
    with pytest.raises(WSManFaultError) as err:
        protocol.run_command(shell, "ipconfig")
    assert err.value.code == 500 and err.value.wsman_fault_code == 2150858843
    assert "InvalidSelectors" in err.value.fault_subcode
