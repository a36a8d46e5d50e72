"""SFTP subsystem of the ssh_windows test host: OpenSSH's sftp-server behind a path rewriter that
makes the Linux test directory look like Win32-OpenSSH's drives.

Win32-OpenSSH spells absolute paths ``/C:/dir/file`` and resolves anything else against the
user's home directory; REALPATH answers in the ``/C:/...`` form. This proxy sits between sshd and
``sftp-server`` (run with ``-d <root>/C:/Users/<user>``) and rewrites the path fields of SFTP v3
requests: ``/X:/p`` -> ``<root>/X:/p``, ``/p`` (no drive) -> ``<root>/C:/p``, relative paths are
left to sftp-server (home). REALPATH answers are mapped back to ``/X:/...``. So a client that
sends a bare ``C:/dir/file`` finds its file under the home directory, as on Windows.

Usage (sshd_config): ``Subsystem sftp <python> -m tlsgate_testing.winsftp_shim <root> <home>``.
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import threading
from typing import BinaryIO

SFTP_SERVER = "/usr/lib/openssh/sftp-server"

# Request types whose first string(s) after the request id are paths (SFTP v3).
ONE_PATH = {3, 7, 9, 11, 13, 14, 15, 16, 17, 19}  # OPEN LSTAT SETSTAT OPENDIR REMOVE MKDIR RMDIR REALPATH STAT READLINK
TWO_PATHS = {18, 20}  # RENAME SYMLINK
EXTENDED = 200
EXT_ONE = {b"statvfs@openssh.com", b"lsetstat@openssh.com", b"expand-path@openssh.com"}
EXT_TWO = {b"posix-rename@openssh.com", b"hardlink@openssh.com"}
REALPATH, NAME = 16, 104
_DRIVE = re.compile(rb"\A/([A-Za-z]:)(/.*)?\Z", re.DOTALL)


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _packets(stream: BinaryIO):  # type: ignore[no-untyped-def]
    while True:
        head = _read_exact(stream, 4)
        if head is None:
            return
        body = _read_exact(stream, struct.unpack(">I", head)[0])
        if body is None:
            return
        yield body


def _string(buf: bytes, pos: int) -> tuple[bytes, int]:
    n = struct.unpack(">I", buf[pos:pos + 4])[0]
    return buf[pos + 4:pos + 4 + n], pos + 4 + n


def _pack(s: bytes) -> bytes:
    return struct.pack(">I", len(s)) + s


class Rewriter:
    def __init__(self, root: bytes) -> None:
        self.root = root.rstrip(b"/")
        self.realpath_ids: set[int] = set()

    def to_local(self, path: bytes) -> bytes:
        m = _DRIVE.match(path)
        if m:
            return self.root + b"/" + m.group(1).upper() + (m.group(2) or b"/")
        if path.startswith(b"/"):
            return self.root + b"/C:" + path
        return path  # relative: sftp-server resolves it against the home directory

    def to_windows(self, path: bytes) -> bytes:
        if path == self.root or path.startswith(self.root + b"/"):
            rest = path[len(self.root):]
            return rest if _DRIVE.match(rest) else b"/C:" + rest
        return path

    def request(self, body: bytes) -> bytes:
        kind = body[0]
        if kind in ONE_PATH or kind in TWO_PATHS:
            count = 2 if kind in TWO_PATHS else 1
            pos = 5
        elif kind == EXTENDED:
            name, pos = _string(body, 5)
            count = 1 if name in EXT_ONE else 2 if name in EXT_TWO else 0
        else:
            return body
        if kind == REALPATH:
            self.realpath_ids.add(struct.unpack(">I", body[1:5])[0])
        out = body[:pos]
        for _ in range(count):
            path, pos = _string(body, pos)
            out += _pack(self.to_local(path))
        return out + body[pos:]

    def response(self, body: bytes) -> bytes:
        if body[0] != NAME or len(body) < 9:
            return body
        rid = struct.unpack(">I", body[1:5])[0]
        if rid not in self.realpath_ids:
            return body
        self.realpath_ids.discard(rid)
        name, pos = _string(body, 9)
        return body[:9] + _pack(self.to_windows(name)) + body[pos:]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root, home = argv[0].encode(), argv[1]
    rw = Rewriter(root)
    server = subprocess.Popen([SFTP_SERVER, "-d", home], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert server.stdin is not None and server.stdout is not None
    out = sys.stdout.buffer

    def pump_responses() -> None:
        for body in _packets(server.stdout):  # type: ignore[arg-type]
            body = rw.response(body)
            out.write(struct.pack(">I", len(body)) + body)
            out.flush()

    t = threading.Thread(target=pump_responses, daemon=True)
    t.start()
    try:
        for body in _packets(sys.stdin.buffer):
            body = rw.request(body)
            server.stdin.write(struct.pack(">I", len(body)) + body)
            server.stdin.flush()
    except BrokenPipeError:
        pass
    finally:
        try:
            server.stdin.close()
        except BrokenPipeError:
            pass
        t.join(timeout=5)
        server.wait(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
