"""The kit's behavioural contract on a Tomcat 11 directory built from the server.xml fixture (real
keystores; nothing listens, so discovery reports the hosts down and install verifies offline):
discovery is read-only, a dry run changes nothing, a failed install restores every file."""

from __future__ import annotations

from tlsgate import CertificateBundle
from tlsgate_testing.contract import Case, check_behaviour, local_connection, tree_snapshot


def test_behaviour(tomcat11_dir, make_endpoint, test_ca) -> None:
    new = test_ca.issue("api.example.test")
    bundle = CertificateBundle.from_pem(new.cert_pem, new.key_pem, new.chain_pem)
    with local_connection() as conn:
        check_behaviour(Case(make_endpoint(tomcat11_dir.base), conn, bundle,
                             snapshot=lambda: tree_snapshot(tomcat11_dir.base)))
