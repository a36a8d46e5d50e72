"""The IIS driver's PowerShell, checked without a Windows host: every template parses with a real
PowerShell grammar (tree-sitter-powershell) in every form a transport sends it, and hostile site
names, host headers and paths never appear in the script text (they travel as base64 JSON in
``$P``)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from iis_scene import Scene, der
from iis_sim import TEMP_DIR, IISSim, install_iis
from tlsgate import CertificateBundle, ConnectionSpec, Endpoint
from tlsgate_iis import install, plugin, scripts
from tlsgate_testing.powershell_grammar import full_scripts, syntax_errors, templates_of
from tlsgate_testing.winhost import LoopbackWindowsConnection, SimulatedWindowsHost

ENDPOINT = Endpoint(name="iis1", type="iis", connection=ConnectionSpec("winrm_http", host="127.0.0.1", port=5985))
TEMPLATES = templates_of(scripts, install)


def test_every_template_is_collected() -> None:
    assert set(TEMPLATES) == set(scripts.TEMPLATES)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_parses_with_a_powershell_grammar(name: str) -> None:
    for kind, script in full_scripts(TEMPLATES[name]).items():
        assert syntax_errors(script) == [], (name, kind)


#: A marker no template contains, so "the value is not in the script" is a real check.
CANARY = "zq7Canary"
hostile = st.lists(st.sampled_from(["'", '"', "$(", ")", "`", ";", "\n", "|", "&", "$env:PATH", "${x}", "@(", "#",
                                    "<#", "\u2019", " ", "}", "{", "--%", "\r\n"]), min_size=1, max_size=6).map(
    lambda parts: CANARY + "".join(parts) + CANARY)


def scripts_sent(host: SimulatedWindowsHost) -> list[str]:
    return [c.script for c in host.calls]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(site=hostile, header=hostile)
def test_hostile_names_and_paths_never_reach_the_script_text(site: str, header: str, scene_certs: Scene) -> None:
    host = SimulatedWindowsHost()
    sim = IISSim()
    info = f"*:443:{header}"
    sim.add_site(site, ("https", info, 1))  # SNI: the host header is also the HTTP.sys key
    sim.bind(site, info, sim.add_certificate(der(scene_certs.shop), key=scene_certs.shop.key))
    install_iis(host, sim)
    conn = LoopbackWindowsConnection(host)
    nodes = [n for n in plugin.discover_nodes(ENDPOINT, conn) if n.protocol == "https"]
    bundle = CertificateBundle.from_pem(scene_certs.blog.cert_pem, scene_certs.blog.key_pem, scene_certs.blog.chain_pem)
    plugin.install(ENDPOINT, conn, bundle, nodes, False)
    # rollback to "no certificate" passes the host header twice (binding, HTTP.sys key)
    b = install.read_state(conn).find(nodes[0].locator)
    assert b is not None
    install.unbind(conn, b)
    conn.write_file(TEMP_DIR + "\\" + CANARY + "'$(x)`;.txt", b"data")  # a hostile path, through the core
    sent = scripts_sent(host)
    assert {"iis-discover", "iis-bind", "iis-unbind", "iis-import-pfx", "file-write-begin"} <= set(host.templates_run())
    assert sent and not [s for s in sent if CANARY in s]
    assert not [line for line in host.command_lines if CANARY in line]
    # ... and they did arrive, exactly, as data
    binds = [c.params for c in host.calls if c.template in ("iis-bind", "iis-unbind")]
    assert all(p["site"] == site and p["binding"] == info for p in binds)
    assert [c.params["httpsys"] for c in host.calls if c.template == "iis-unbind"] == [
        f"hostnameport={header.lower()}:443"]
    prelude = next(c.script for c in host.calls if c.template == "iis-unbind")
    b64 = prelude.split("FromBase64String('", 1)[1].split("'", 1)[0]
    assert json.loads(base64.b64decode(b64))["site"] == site
