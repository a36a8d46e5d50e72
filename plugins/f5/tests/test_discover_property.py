"""Discovery over generated device layouts: every (virtual server, client-ssl profile) pair, and
nothing else, with the right address, port, route domain and certificate."""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tlsgate_f5.discovery import discover

PARTITIONS = ["Common", "Tenant_A", "Tenant_B"]
CERT_NAMES = ["www", "api", "shop"]


@st.composite
def layouts(draw):  # type: ignore[no-untyped-def]
    profiles = {}
    for i in range(draw(st.integers(0, 4))):
        part = draw(st.sampled_from(PARTITIONS))
        profiles[f"/{part}/cs{i}"] = (draw(st.sampled_from(CERT_NAMES)),
                                     draw(st.one_of(st.none(), st.sampled_from(["a.example", "b.example"]))))
    virtuals = {}
    for i in range(draw(st.integers(0, 5))):
        part = draw(st.sampled_from(PARTITIONS))
        ip = draw(st.one_of(st.ip_addresses(v=4, network="10.0.0.0/8"), st.ip_addresses(v=6, network="2001:db8::/64")))
        rd = draw(st.one_of(st.none(), st.integers(1, 9)))
        port = draw(st.integers(1, 65535))
        sep = "." if isinstance(ip, ipaddress.IPv6Address) else ":"
        dest = f"/{part}/{ip}{'' if rd is None else f'%{rd}'}{sep}{port}"
        attached = draw(st.lists(st.sampled_from([*sorted(profiles), "/Common/tcp", "/Common/http"]), unique=True,
                                 max_size=4)) if profiles else ["/Common/tcp"]
        virtuals[f"/{part}/vs{i}"] = (dest, attached, str(ip) if rd is None else f"{ip}%{rd}", port)
    return profiles, virtuals


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=layouts())
def test_discovery_matches_any_layout(session, peer, web_certs, layout):
    profiles, virtuals = layout
    dev = peer.device
    dev.partitions |= set(PARTITIONS)
    dev.profiles = {k: v for k, v in dev.profiles.items() if k == "/Common/clientssl"}
    for path, (cert, server_name) in profiles.items():
        part = path.split("/")[1]
        dev.add_cert(f"/{part}/{cert}.crt", web_certs[cert].cert_pem)
        dev.add_key(f"/{part}/{cert}.key", web_certs[cert].key_pem)
        dev.add_profile(path, f"/{part}/{cert}.crt", f"/{part}/{cert}.key", server_name=server_name)
    dev.virtuals = {}
    for path, (dest, attached, _ip, _port) in virtuals.items():
        dev.add_virtual(path, dest, [(p, "clientside" if p in profiles else "all") for p in attached])

    nodes = discover(session, probe=False)

    expected = sorted(
        (vs, prof, ip, port, web_certs[profiles[prof][0]].fingerprint, profiles[prof][1])
        for vs, (_d, attached, ip, port) in virtuals.items() for prof in attached if prof in profiles
    )
    got = sorted((n.name, n.alias[0], n.ip, n.port, n.fingerprint, n.alias[1] if len(n.alias) > 1 else None)
                 for n in nodes)
    assert got == expected
