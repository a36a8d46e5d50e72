"""The kit's behavioural contract on the iControl REST loopback peer: discovery is read-only and a
dry run changes nothing on the device (its whole state compared). The third promise, restore on
failure, is not injected by the kit here (the F5 driver changes the device over REST, not through
file writes): test_install.py fails each step of a real install and checks the device state."""

from __future__ import annotations

from tlsgate.plugin import CertificateBundle
from tlsgate_testing.contract import Case, check_discovery_is_read_only, check_dry_run_changes_nothing


def test_discovery_and_dry_run(endpoint, session, peer, web_ca) -> None:
    issued = web_ca.issue("www.example.com")
    bundle = CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)
    case = Case(endpoint, session, bundle, snapshot=lambda: (peer.device.snapshot(), peer.device.saves))
    assert check_discovery_is_read_only(case)
    check_dry_run_changes_nothing(case)
