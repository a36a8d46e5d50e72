"""The driver touches files only through the Connection, so a remote transport needs no change.

The kit's in-memory ``FakeConnection`` holds the remote host's files and records every call:
the endpoint's paths do not exist on this machine, so an accidental ``open()`` in the driver
would fail the test.
"""

from __future__ import annotations

from typing import Any

from tlsgate_testing.certs import Issued
from tlsgate_testing.fake import FakeConnection

PW = "changeit"


def test_discover_and_install_through_the_connection_only(driver: Any, leaf_a: Issued, leaf_b: Issued,
                                                          kt: Any) -> None:
    ep = driver.endpoint("p12", "/srv/app.p12", connection="ssh", store_password=PW)
    conn = FakeConnection({"/srv/app.p12": leaf_a.pfx(PW)}, host="remote.example", admin=False)
    assert [n.fingerprint for n in driver.discover(ep, connection=conn)] == [leaf_a.fingerprint]
    assert [c for c in conn.calls if c[0] != "stat"] == [("read", "/srv/app.p12")]

    ep = driver.endpoint("p12", "/srv/app.p12", connection="ssh", store_password=PW, install_script="/srv/hook.sh")
    conn = FakeConnection({"/srv/app.p12": leaf_a.pfx(PW), "/srv/hook.sh": b"#!/bin/sh\n"},
                          {("/srv/hook.sh", "b.example.org"): (0, "")}, modes={"/srv/app.p12": 0o600, "/srv/hook.sh": 0o755},
                          host="remote.example", admin=False)
    result = driver.install(ep, kt.bundle_of(leaf_b), connection=conn)
    assert result.verified and conn.ran == [("/srv/hook.sh", "b.example.org")]
    assert conn.writes == ["/srv/app.p12"]
    assert conn.modes["/srv/app.p12"] == 0o600
