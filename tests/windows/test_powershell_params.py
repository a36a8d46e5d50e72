"""hypothesis: any string as a path, alias or password reaches the Windows host unchanged as data
in ``$P``, and nothing of it becomes PowerShell code (the host records what it received)."""

from __future__ import annotations

import base64
import json
import ntpath
import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tlsgate.quoting import PARAMS_PRELUDE, encode_params, ps_script
from tlsgate.transports import winrm as winrm_transport
from tlsgate.transports.windows import STDIN_PRELUDE, TEMPLATES, WindowsConnection
from tlsgate_testing.winhost import LoopbackWindowsConnection, SimulatedWindowsHost
from tlsgate_testing.winrm_fixtures import WINRM_PASSWORD, WINRM_USER, winrm_credentials, winrm_endpoint
from tlsgate_testing.winrm_peer import WinRMPeer

ECHO = "# tlsgate:test-echo\n$P | ConvertTo-Json -Compress\n"
COMMAND_LINE = re.compile(r"\Apowershell -NoProfile -NonInteractive -EncodedCommand [A-Za-z0-9+/]+={0,2}\Z")
NASTY = st.sampled_from([
    "'; Remove-Item -Recurse C:\\ -Force; '", '"; calc; "', "$(calc)", "`n`r", "@(1,2)", "${env:PATH}",
    "a\nb\r\nc", "\u2018quoted\u2019", "C:\\Program Files\\x y\\k.pfx", "\\\\server\\share\\$x", "%PATH%",
    "^& | < >", "--%", "# comment", "\x00nul", "",
])
TEXT = st.one_of(NASTY, st.text(max_size=200))


def _echo_host() -> SimulatedWindowsHost:
    host = SimulatedWindowsHost()
    host.register("test-echo", lambda h, params: "", template=ECHO)
    return host


def check_received(conn: WindowsConnection, host: SimulatedWindowsHost, params: dict) -> None:
    files_before = dict(getattr(host.fs, "entries", {}))
    before = len(host.calls)
    res = conn.run_powershell(ECHO, params)
    assert res.ok, res.stderr
    (call,) = host.calls[before:]
    assert call.template == "test-echo"
    assert call.params == params  # unchanged, as data
    assert call.script == ps_script(ECHO, params)  # the code is the fixed template, nothing else
    prelude, template = call.script[: -len(ECHO)], call.script[-len(ECHO):]
    assert template == ECHO
    assert prelude == PARAMS_PRELUDE.replace("{b64}", encode_params(params))
    assert re.fullmatch(r"[A-Za-z0-9+/=]*", encode_params(params))
    assert COMMAND_LINE.match(host.command_lines[-1])
    assert dict(getattr(host.fs, "entries", {})) == files_before  # nothing ran


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=TEXT, alias=TEXT, password=TEXT)
def test_parameters_survive_unchanged_in_process(path: str, alias: str, password: str) -> None:
    host = _echo_host()
    conn = LoopbackWindowsConnection(host)
    check_received(conn, host, {"path": path, "alias": alias, "password": password})


@settings(max_examples=100, deadline=None)
@given(argv=st.lists(TEXT, min_size=1, max_size=5), stdin=st.binary(max_size=64),
       env=st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True), TEXT, max_size=3),
       has_stdin=st.booleans())
def test_run_argv_stdin_and_env_reach_the_program_unchanged(argv: list[str], stdin: bytes, env: dict,
                                                             has_stdin: bool) -> None:
    host = SimulatedWindowsHost()
    seen: list = []
    argv = [argv[0] or "x", *argv[1:]]
    host.register_program(argv[0], lambda h, a, i, e: seen.append((a, i, e)) or "")
    LoopbackWindowsConnection(host, stdin=has_stdin).run(argv, stdin=stdin, env=env)
    if ntpath.basename(argv[0]) == argv[0]:
        assert seen == [(argv, stdin, env)]
    call = host.calls[-1]
    assert call.params["argv"] == argv
    if has_stdin:  # stdin and env never on the command line
        assert set(call.params) == {"argv"}
        assert call.secret_params == {"stdin": base64.b64encode(stdin).decode(), **({"env": env} if env else {})}
        assert call.script == ps_script(STDIN_PRELUDE + TEMPLATES["run-program"], call.params)
    else:  # the fallback of a transport without stdin
        assert call.secret_params is None
        assert call.script == ps_script(TEMPLATES["run-program"], call.params)


@settings(max_examples=60, deadline=None)
@given(password=TEXT, data=st.binary(max_size=3000))
def test_secret_parameters_never_reach_the_command_line(password: str, data: bytes) -> None:
    host = _echo_host()
    conn = LoopbackWindowsConnection(host)
    res = conn.run_powershell(ECHO, {"path": "C:\\x"}, secret_params={"password": password})
    assert res.ok
    assert host.calls[-1].secret_params == {"password": password}
    conn.write_file(r"C:\key.pem", data, mode=0o600)
    assert host.read(r"C:\key.pem") == data
    for line in host.command_lines:
        assert COMMAND_LINE.match(line)
        script = base64.b64decode(line.rsplit(" ", 1)[1]).decode("utf-16-le")
        prelude_b64 = re.search(r"FromBase64String\('([A-Za-z0-9+/=]*)'\)", script).group(1)  # type: ignore[union-attr]
        public = json.loads(base64.b64decode(prelude_b64))
        assert "password" not in public and "data" not in public


@pytest.fixture(scope="module")
def winrm_echo() -> Iterator[tuple[WindowsConnection, SimulatedWindowsHost]]:
    host = _echo_host()
    with WinRMPeer(host, users={WINRM_USER: WINRM_PASSWORD}) as peer:
        with winrm_transport.connect_winrm(winrm_endpoint(peer, "winrm_http"), winrm_credentials()) as conn:
            yield conn, host


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=TEXT, alias=TEXT, password=TEXT)
def test_parameters_survive_unchanged_over_winrm(winrm_echo, path: str, alias: str, password: str) -> None:  # type: ignore[no-untyped-def]
    conn, host = winrm_echo
    check_received(conn, host, {"path": path, "alias": alias, "password": password})


WINDOWS_NAME = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='<>:"|?*\\/'),
    min_size=1, max_size=40,
).filter(lambda n: n == n.rstrip(" .") and n not in (".", ".."))


@settings(max_examples=80, deadline=None)
@given(name=WINDOWS_NAME, data=st.binary(max_size=512), stdin=st.booleans())
def test_any_valid_file_name_round_trips_through_the_file_templates(name: str, data: bytes, stdin: bool) -> None:
    host = SimulatedWindowsHost()
    conn = LoopbackWindowsConnection(host, stdin=stdin)
    conn.makedirs("C:\\dir $(x) 'y'")
    path = ntpath.join("C:\\dir $(x) 'y'", name)
    conn.write_file(path, data, mode=0o600)
    assert conn.listdir("C:\\dir $(x) 'y'") == [name]
    assert conn.read_file(path) == data
    assert conn.stat(path).size == len(data)  # type: ignore[union-attr]
    conn.rename(path, path + ".bak")
    assert conn.listdir("C:\\dir $(x) 'y'") == [name + ".bak"]
    assert all(COMMAND_LINE.match(line) for line in host.command_lines)
