"""The driver touches files only through the Connection, so a remote transport needs no change.

``ElsewhereConnection`` serves a different file tree (a directory standing in for the remote
host's root) and records every call: the endpoint's paths do not exist on this machine, so an
accidental ``open()`` in the driver would fail the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tlsgate import Connection, FileStat
from tlsgate_testing.certs import Issued
from tlsgate_testing.connections import LocalConnection

PW = "changeit"


class ElsewhereConnection(Connection):
    host = "remote.example"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inner = LocalConnection()
        self.calls: list[tuple[str, str]] = []

    def _map(self, path: str) -> str:
        assert path.startswith("/srv/"), path
        return str(self.root / path.lstrip("/"))

    def run(self, argv: Any, **kwargs: Any) -> Any:
        self.calls.append(("run", " ".join(argv)))
        return self.inner.run([self._map(argv[0]), *argv[1:]], **kwargs)

    def read_file(self, path: str) -> bytes:
        self.calls.append(("read", path))
        return self.inner.read_file(self._map(path))

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        self.calls.append(("write", path))
        self.inner.write_file(self._map(path), data, mode=mode)

    def realpath(self, path: str) -> str:
        self.calls.append(("realpath", path))
        real = self.inner.realpath(self._map(path))
        return "/" + str(Path(real).relative_to(self.root))

    def stat(self, path: str) -> FileStat | None:
        self.calls.append(("stat", path))
        return self.inner.stat(self._map(path))

    def remove(self, path: str) -> None:
        self.inner.remove(self._map(path))

    def rename(self, src: str, dst: str) -> None:
        self.inner.rename(self._map(src), self._map(dst))

    def listdir(self, path: str) -> list[str]:
        return self.inner.listdir(self._map(path))

    def makedirs(self, path: str, *, mode: int = 0o755) -> None:
        self.inner.makedirs(self._map(path), mode=mode)

    def is_admin(self) -> bool:  # a remote account: the root rule is for local scripts only
        raise AssertionError("is_admin asked for a remote endpoint")


def test_discover_and_install_through_the_connection_only(driver: Any, tmp_path: Path, leaf_a: Issued,
                                                          leaf_b: Issued, kt: Any) -> None:
    root = tmp_path / "remote-root"
    (root / "srv").mkdir(parents=True)
    (root / "srv" / "app.p12").write_bytes(leaf_a.pfx(PW))
    script = root / "srv" / "hook.sh"
    script.write_text(f"#!/bin/sh\necho \"$1\" > {root}/srv/hook.out\n")
    script.chmod(0o755)
    ep = driver.endpoint("p12", "/srv/app.p12", connection="ssh", store_password=PW)
    conn = ElsewhereConnection(root)
    assert [n.fingerprint for n in driver.discover(ep, connection=conn)] == [leaf_a.fingerprint]
    assert conn.calls == [("read", "/srv/app.p12")]

    ep = driver.endpoint("p12", "/srv/app.p12", connection="ssh", store_password=PW, install_script="/srv/hook.sh")
    conn = ElsewhereConnection(root)
    result = driver.install(ep, kt.bundle_of(leaf_b), connection=conn)
    assert result.verified and (root / "srv" / "hook.out").read_text() == "b.example.org\n"
    assert ("write", "/srv/app.p12") in conn.calls and conn.calls[-1] == ("run", "/srv/hook.sh b.example.org")
    assert {n.name for n in driver.discover(ep, connection=ElsewhereConnection(root))} == {"leaf", "b.example.org"}
