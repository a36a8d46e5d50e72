"""Every challenge answer an order set up is removed again, even when removing another one
fails, and the CA's own reason for a failed order is not lost behind that cleanup failure
(README: "A failed order leaves no challenge file, config line or DNS record behind"). Against a
real Pebble; the solver is tlsgate's own ``Solver`` protocol, recording what it was asked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tlsgate_testing.fixtures_core import free_port

pytestmark = pytest.mark.slow


class _Recording:
    """Answers every challenge (Pebble, always-valid or not, is told nothing); the cleanup of
    ``failing`` raises the OperationError a real provider raises when its server is gone."""

    def __init__(self, failing: str) -> None:
        self.failing = failing
        self.answered: list[str] = []
        self.removed: list[str] = []

    def prepare(self, domain: str, chall: Any, validation: Any) -> Callable[[], None]:
        from tlsgate.errors import OperationError

        self.answered.append(domain)

        def cleanup() -> None:
            if domain == self.failing:
                raise OperationError(f"dns bind: removing TXT _acme-challenge.{domain}. at 127.0.0.1:1 failed: "
                                     "ConnectionRefusedError")
            self.removed.append(domain)

        return cleanup


def _session(pebble):  # type: ignore[no-untyped-def]
    from tlsgate.lifecycle.acme import AccountKey, Session

    key = AccountKey.generate()
    session = Session(pebble.directory, key, ca_bundle_pem=pebble.ca_bundle.read_text())
    uri = session.register("ops@example.test", agree_tos=True)
    session.close()
    return Session(pebble.directory, key, account_uri=uri, ca_bundle_pem=pebble.ca_bundle.read_text())


@pytest.mark.parametrize("always_valid", [True, False], ids=["order-valid", "order-invalid"])
def test_one_failing_cleanup_does_not_keep_the_others_and_keeps_the_cas_reason(tlsgate_home, pebble_factory,  # type: ignore[no-untyped-def]
                                                                               always_valid: bool) -> None:
    from tlsgate.errors import OperationError
    from tlsgate.lifecycle.acme import generate_key

    pebble = pebble_factory(http_port=free_port(), always_valid=always_valid)
    solver = _Recording(failing="b.cleanup.test")
    with _session(pebble) as session, pytest.raises(OperationError) as err:
        session.order(["a.cleanup.test", "b.cleanup.test", "c.cleanup.test"], generate_key("ec256"), "dns-01", solver)
    assert sorted(solver.answered) == ["a.cleanup.test", "b.cleanup.test", "c.cleanup.test"]
    assert sorted(solver.removed) == ["a.cleanup.test", "c.cleanup.test"]  # removed although b's removal failed
    line = str(err.value)
    assert "\n" not in line and "removing a challenge answer failed: b.cleanup.test: dns bind: removing TXT" in line
    if not always_valid:  # the CA's reason for the failed order comes first
        assert line.startswith("ACME validation failed: ") or line.startswith("ACME order for a.cleanup.test: "), line
