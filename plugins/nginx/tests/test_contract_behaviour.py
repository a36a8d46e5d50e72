"""The kit's behavioural contract against the real nginx: discovery is read-only, a dry run changes
nothing, a failed install restores every file byte for byte (and nginx keeps serving)."""

from __future__ import annotations

import pytest
from nginx_helpers import local_endpoint
from tlsgate import CertificateBundle
from tlsgate.probe import try_served_fingerprint
from tlsgate_testing.contract import Case, check_behaviour, local_connection

pytestmark = pytest.mark.slow


def test_behaviour(nginx_server, test_ca) -> None:
    site, _server = nginx_server
    new = test_ca.issue("alpha.test", "www.alpha.test")
    bundle = CertificateBundle.from_pem(new.cert_pem, new.key_pem, new.chain_pem)
    with local_connection() as conn:
        check_behaviour(Case(local_endpoint(site.config), conn, bundle, snapshot=site.snapshot))
    assert try_served_fingerprint("127.0.0.1", site.tls_port, "alpha.test") == site.certs["alpha.test"].fingerprint
