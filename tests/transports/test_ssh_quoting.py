"""Arguments and environment values reach the remote program as data, never as shell code.

Each case runs ``printf '%s\\0' ARGS`` on the real sshd (through the test user's login shell,
``/bin/sh``) and compares what came back with what was sent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tlsgate.quoting import sh_join
from tlsgate.transports import ssh
from tlsgate_testing.sshd import SshdServer

from .conftest import password_credentials, ssh_endpoint

pytestmark = pytest.mark.slow

CANARY = "/tmp/tlsgate-quoting-canary"
HOSTILE = [
    "two words",
    "it's",
    '"double"',
    "a;touch " + CANARY,
    "$(touch " + CANARY + ")",
    "`touch " + CANARY + "`",
    "line1\nline2\n",
    "\ttab & background &",
    "| cat /etc/passwd",
    "> " + CANARY,
    "*",
    "~root",
    "-n",
    "--",
    "$HOME ${PATH} $1 $@ $$",
    "\\ back\\\\slash\\",
    "'\"'\"'",
    "é ü 漢字 🙂",
    "",
    "!history",
    "#comment",
]

# Any text without NUL (an argv element cannot hold one) and without lone surrogates (not UTF-8).
ARG = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
SHELLY = st.text(alphabet=" \t\n'\"\\$`;|&<>()*?[]{}~#!-=%^aZ0", max_size=30)


@pytest.fixture
def shared_conn(trusted: SshdServer) -> Iterator[ssh.SSHConnection]:
    with ssh.connect_ssh(ssh_endpoint(trusted), password_credentials(trusted)) as c:
        yield c  # type: ignore[misc]


def printf_roundtrip(conn: ssh.SSHConnection, args: list[str]) -> list[str]:
    res = conn.run(["printf", "%s\\0", *args], check=True)
    out = res.stdout.split("\0")
    assert out[-1] == ""
    return out[:-1]


def test_hostile_arguments_are_data(shared_conn: ssh.SSHConnection) -> None:
    if os.path.exists(CANARY):
        os.unlink(CANARY)
    assert printf_roundtrip(shared_conn, HOSTILE) == HOSTILE
    assert not os.path.exists(CANARY)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.lists(st.one_of(ARG, SHELLY), min_size=1, max_size=6))
def test_any_arguments_survive_sh_join(shared_conn: ssh.SSHConnection, args: list[str]) -> None:
    assert printf_roundtrip(shared_conn, args) == args


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(ARG, SHELLY), data=st.binary(max_size=64))
def test_any_env_value_survives_and_stdin_follows(
    shared_conn: ssh.SSHConnection, value: str, data: bytes
) -> None:
    res = shared_conn.run(["sh", "-c", 'printf "%s\\0" "$TG_VALUE"; od -An -tx1 -v'],
                          env={"TG_VALUE": value}, stdin=data, check=True)
    got, _, dump = res.stdout.partition("\0")
    assert got == value
    assert bytes.fromhex("".join(dump.split())) == data


@given(args=st.lists(SHELLY, min_size=1, max_size=5))
def test_sh_join_is_one_word_per_argument_for_a_local_sh(args: list[str]) -> None:
    import shlex

    assert shlex.split(sh_join(args)) == args
