"""The ssh transport's pipelined SFTP reads and writes against the real sshd: every size round
trips byte for byte (empty, around the 32 KiB request size, several requests), the final mode
is exact whatever the server's umask, and a read of a missing file is the usual clear error."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tlsgate import OperationError
from tlsgate.transports import ssh
from tlsgate_testing.sshd import SshdServer

CHUNK = 32768
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 1, 5 * CHUNK + 123]


def test_boundary_sizes_round_trip(conn: ssh.SSHConnection, trusted: SshdServer) -> None:
    path = trusted.user_path("sizes.bin")
    for size in SIZES:
        data = os.urandom(size)
        conn.write_file(path, data, mode=0o640)
        assert Path(path).read_bytes() == data  # what the server's disk holds
        assert conn.read_file(path) == data  # and what the pipelined read returns
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    # a file written on the server's side, bigger than the first batch of reads
    Path(path).write_bytes(b"x" * (3 * CHUNK + 7))
    assert conn.read_file(path) == b"x" * (3 * CHUNK + 7)
    with pytest.raises(OperationError, match="no such file"):
        conn.read_file(trusted.user_path("missing.bin"))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3 * CHUNK), mode=st.sampled_from([0o600, 0o640, 0o644, 0o664, 0o755]))
def test_any_content_and_mode_round_trip(conn: ssh.SSHConnection, trusted: SshdServer, data: bytes,
                                         mode: int) -> None:
    path = trusted.user_path("any.bin")
    conn.write_file(path, data, mode=mode)
    assert conn.read_file(path) == data
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert [n for n in os.listdir(trusted.workdir) if n.startswith(".tlsgate-")] == []  # no temporary left
