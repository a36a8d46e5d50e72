"""The node model makes each node once (discovery.VHostNode, confirm_by_handshake): the nodes it
gives are those of building every node as its files say and then correcting it by
``node_as_served`` with what the handshake showed, for a stopped server (every probe refused),
a running one (served: the same node) and a node whose own Node was already made. Real httpd."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from apache_peer import apache_binary
from test_discovery_generated import _generate
from tlsgate import ConnectionSpec, Endpoint
from tlsgate.plugin import Node, node_as_served, probe_many
from tlsgate_apache.control import ApacheControl
from tlsgate_apache.discovery import confirm_by_handshake, discover, handshake_target
from tlsgate_apache.plugin import ApacheOptions
from tlsgate_testing.certs import TestCA
from tlsgate_testing.connections import LocalConnection

from .conftest import local_endpoint


def _by_hand(vnodes: list, endpoint: Endpoint) -> list[Node]:  # type: ignore[type-arg]
    """The nodes as files say, each corrected by node_as_served (what the model did before)."""
    targets = [handshake_target(vn, endpoint, True) for vn in vnodes]
    served = probe_many(t for t in targets if t is not None)
    return [vn.node if t is None else node_as_served(vn.node, served[t], pending="graceful restart pending?")
            for vn, t in zip(vnodes, targets, strict=True)]


def _rows(nodes: list[Node]) -> list[tuple]:  # type: ignore[type-arg]
    return [attrs.astuple(n) for n in nodes]


def test_a_stopped_server_s_nodes_are_those_node_as_served_gives(tmp_path: Path, test_ca: TestCA) -> None:
    if apache_binary() is None:
        pytest.skip("apache2/httpd is not installed")
    ctl, _, _ = _generate(tmp_path / "root", test_ca, 120, 10)
    endpoint = Endpoint(name="gen", type="apache", connection=ConnectionSpec(type="local"),
                        options=ApacheOptions(apachectl_path=str(ctl)))
    control = ApacheControl(LocalConnection(), str(ctl))
    run = control.dump()
    _, fresh = discover(LocalConnection(), control, run)
    got = confirm_by_handshake(fresh, endpoint, True)
    _, reference = discover(LocalConnection(), control, run)
    want = _by_hand(reference, endpoint)
    assert _rows(got) == _rows(want)
    assert sum("not reachable" in n.state for n in got) > 50 and any(n.protocol == "http" for n in got)
    # a vnode whose Node was made already (an install looked at it) goes through node_as_served
    _, touched = discover(LocalConnection(), control, run)
    for vn in touched[::3]:
        assert vn.node.locator
    assert _rows(confirm_by_handshake(touched, endpoint, True)) == _rows(want)


def test_a_running_server_s_nodes_are_those_node_as_served_gives(apache_server) -> None:  # type: ignore[no-untyped-def]
    site, _server = apache_server
    endpoint = local_endpoint(site)
    control = ApacheControl(LocalConnection(), str(site.root / "bin" / "apachectl"))
    run = control.dump()
    _, fresh = discover(LocalConnection(), control, run)
    got = confirm_by_handshake(fresh, endpoint, True)
    _, reference = discover(LocalConnection(), control, run)
    assert _rows(got) == _rows(_by_hand(reference, endpoint))
    assert any(n.protocol == "https" and "not reachable" not in n.state for n in got)
