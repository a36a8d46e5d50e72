"""Shared helpers for the Apache plugin tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tlsgate import CertificateBundle, ConnectionSpec, Endpoint
from tlsgate.plugin import try_served_fingerprint
from tlsgate_apache.plugin import ApacheOptions

sys.path.insert(0, str(Path(__file__).parent))  # apache_peer (the real httpd fixture) imports by name

from apache_peer import ApacheSite


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


#: The opt-in test kit (test_ca, tlsgate_home, sshd, OpenBao, WinRM peer) and this plugin's own
#: real-httpd fixture (apache_server).
pytest_plugins = ["tlsgate_testing", "apache_peer"]
