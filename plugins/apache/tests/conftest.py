"""Shared helpers for the Apache plugin tests."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from tlsgate import CertificateBundle, CommandResult, Connection, ConnectionSpec, Endpoint, FileStat, OperationError
from tlsgate.plugin import try_served_fingerprint
from tlsgate_apache.plugin import ApacheOptions
from tlsgate_testing.apache import ApacheSite


class MemoryConnection(Connection):
    """Files in a dict; commands refused. Enough for parsing and edit planning."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = dict(files)

    def run(self, argv: Sequence[str], **_: object) -> CommandResult:
        return CommandResult(tuple(argv), 127, "", "no commands in memory")

    def read_file(self, path: str) -> bytes:
        try:
            return self.files[path]
        except KeyError:
            raise OperationError(f"{path}: no such file") from None

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        self.files[path] = data

    def stat(self, path: str) -> FileStat | None:
        if path in self.files:
            return FileStat(size=len(self.files[path]), mode=0o644, mtime=0)
        if any(p.startswith(path.rstrip("/") + "/") for p in self.files):
            return FileStat(size=0, mode=0o755, mtime=0, is_dir=True)
        return None

    def remove(self, path: str) -> None:
        self.files.pop(path, None)

    def rename(self, src: str, dst: str) -> None:
        self.files[dst] = self.files.pop(src)

    def listdir(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return sorted({p[len(prefix):].split("/")[0] for p in self.files if p.startswith(prefix)})

    def makedirs(self, path: str, *, mode: int = 0o755) -> None:
        pass

    @property
    def path(self):  # type: ignore[override]
        return posixpath


def local_endpoint(site: ApacheSite, *, ctl: str = "apachectl", certs_dir: Path | str | None = None) -> Endpoint:
    return Endpoint(
        name="web",
        type="apache",
        connection=ConnectionSpec(type="local"),
        options=ApacheOptions(apachectl_path=str(site.root / "bin" / ctl),
                              certs_dir=str(certs_dir or site.root / "tlsgate-certs")),
    )


def served_map(site: ApacheSite) -> dict[str, str | None]:
    """What every https vhost serves now, by a handshake with its SNI name."""
    out = {
        "alpha": try_served_fingerprint("127.0.0.1", site.tls_port, "alpha.test"),
        "www.alpha": try_served_fingerprint("127.0.0.1", site.tls_port, "www.alpha.test"),
        "beta": try_served_fingerprint("127.0.0.1", site.tls_port, "beta.test"),
        "gamma": try_served_fingerprint("127.0.0.1", site.tls_port, "gamma.test"),
        "gamma2": try_served_fingerprint("127.0.0.1", site.tls_port2, "gamma.test"),
    }
    if site.ipv6_port:
        out["six"] = try_served_fingerprint("::1", site.ipv6_port, "six.test")
    return out


def bundle_for(issued) -> CertificateBundle:  # type: ignore[no-untyped-def]
    return CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)


@pytest.fixture(autouse=True)
def _short_verify_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A graceful restart shows within a second here; a failing check need not wait 20 s."""
    from tlsgate_apache import install

    monkeypatch.setattr(install, "VERIFY_DEADLINE", 6.0)


#: The opt-in test kit (fixtures: test_ca, tlsgate_home, sshd, OpenBao, servers, WinRM peer).
pytest_plugins = ["tlsgate_testing"]
