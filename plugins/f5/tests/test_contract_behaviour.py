"""The kit's behavioural contract on the iControl REST loopback peer, all three promises, the
device's whole state compared (objects, profiles, uploads, files, saves): discovery is read-only,
a dry run changes nothing, and a failed install restores everything. The F5 driver changes the
device over REST, not through file writes, so the failure is the peer's: the PATCH that repoints
the client-ssl profile is refused (test_install.py fails every other step too)."""

from __future__ import annotations

import copy
from collections.abc import Callable

from tlsgate.plugin import CertificateBundle
from tlsgate_testing.contract import Case, check_behaviour


def test_contract_behaviour(endpoint, session, peer, web_ca) -> None:
    issued = web_ca.issue("www.example.com")
    bundle = CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)
    device = peer.device

    def refuse_the_profile_patch() -> Callable[[], bool]:
        # Step 4 of F5's install order (shared/reference/protocols.md 1.9, "Atomic install/replace"):
        # one PATCH of the profile's certKeyChain, which mcpd applies atomically, so a refused
        # PATCH changed nothing. Its answer is mcpd's error body (protocols.md 1.3: 400
        # {"code":400,"message":"01070734:3: Configuration error: ...","errorStack":[],"apiError":3},
        # the shape F5's iControl REST returns for a configuration mcpd rejects). By then the new
        # key, certificate and chain are uploaded and installed: the driver must delete them again.
        fault = device.fail("PATCH", r"/mgmt/tm/ltm/profile/client-ssl/~Common~cs_www$", 400,
                            "01070734:3: Configuration error: injected by the contract suite")
        return lambda: fault.times == 0

    def state() -> tuple[object, ...]:
        """Objects (certificates by content, keys), profiles, uploads and files, virtual servers,
        and how often the configuration was saved."""
        return device.snapshot(), copy.deepcopy(device.virtuals), device.saves

    check_behaviour(Case(endpoint, session, bundle, snapshot=state, inject=refuse_the_profile_patch))
