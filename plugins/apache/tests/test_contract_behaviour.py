"""The kit's behavioural contract against the real Apache httpd: discovery is read-only, a dry run
changes nothing, a failed install restores every file byte for byte."""

from __future__ import annotations

import pytest
from tlsgate_testing.contract import Case, check_behaviour, local_connection

from .conftest import bundle_for, local_endpoint, served_map

pytestmark = pytest.mark.slow


def test_behaviour(apache_server, test_ca) -> None:
    site, _server = apache_server
    served = served_map(site)
    with local_connection() as conn:
        check_behaviour(Case(local_endpoint(site), conn, bundle_for(test_ca.issue("alpha.test", "www.alpha.test")),
                             snapshot=site.snapshot))
    assert served_map(site) == served
