"""Site names and host headers are data: quotes, ``$()``, backticks, ``;``, newlines reach the host
unchanged in ``$P``, and every script the host receives is exactly the fixed template plus the
encoded parameters (nothing interpolated)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from iis_scene import Scene, der
from iis_sim import IISSim, install_iis
from tlsgate import CertificateBundle, ConnectionSpec, Endpoint
from tlsgate.quoting import ps_script
from tlsgate.registry import get_registry
from tlsgate_iis import plugin
from tlsgate_iis.scripts import TEMPLATES
from tlsgate_testing.connections import STDIN_PRELUDE
from tlsgate_testing.winhost import LoopbackWindowsConnection, SimulatedWindowsHost
from tlsgate_testing.winrm_fixtures import winrm_credentials, winrm_endpoint

ENDPOINT = Endpoint(name="iis1", type="iis", connection=ConnectionSpec("winrm_http", host="127.0.0.1", port=5985))

NASTY = ["'", '"', "$(", ")", "`", ";", "\n", "\r\n", "|", "&", "$env:PATH", "${x}", "@(", "#", "<#", "\u2019", " "]
names = st.lists(st.one_of(st.sampled_from(NASTY), st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=6)),
    min_size=1, max_size=6).map("".join).filter(lambda s: s.strip() != "")


def scene(site: str, host_header: str, certs: Scene) -> tuple[SimulatedWindowsHost, str]:
    host = SimulatedWindowsHost()
    sim = IISSim()
    info = f"*:443:{host_header}"
    sim.add_site(site, ("http", f"*:80:{host_header}"), ("https", info, 1 if host_header else 0))
    sim.bind(site, info, sim.add_certificate(der(certs.shop), key=certs.shop.key))
    install_iis(host, sim)
    return host, info


def check_calls(host: SimulatedWindowsHost) -> None:
    """Each IIS script is the fixed template with the parameters only in the encoded prelude (the
    transport's own templates are checked by the host against their registered text)."""
    for call in host.calls:
        if call.template in TEMPLATES:
            stdin = STDIN_PRELUDE if call.secret_params is not None else ""
            assert call.script == ps_script(stdin + TEMPLATES[call.template], call.params), call.template


def run_and_check(conn, endpoint, host: SimulatedWindowsHost, site: str, header: str, info: str,  # type: ignore[no-untyped-def]
                  bundle: CertificateBundle) -> None:
    nodes = plugin.discover_nodes(endpoint, conn)
    https = [n for n in nodes if n.protocol == "https"]
    assert [(n.name, n.alias, n.locator) for n in https] == [(header or site, (site,), f"{site}|https|{info}")]
    result = plugin.install(endpoint, conn, bundle, https, False)
    assert result.nodes == (header or site,)
    binds = [c.params for c in host.calls if c.template == "iis-bind"]
    assert binds == [{"site": site, "binding": info, "thumbprint": binds[0]["thumbprint"], "store": "My"}]
    check_calls(host)
    assert IISSim.load(host).bound(IISSim.load(host).binding(site, info))[0] == binds[0]["thumbprint"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(site=names, header=st.one_of(st.just(""), names))
def test_names_reach_the_host_unchanged(site: str, header: str, scene_certs: Scene) -> None:
    host, info = scene(site, header, scene_certs)
    new = scene_certs.blog
    bundle = CertificateBundle.from_pem(new.cert_pem, new.key_pem, new.chain_pem)
    run_and_check(LoopbackWindowsConnection(host), ENDPOINT, host, site, header, info, bundle)


def test_nasty_names_over_winrm(winrm_peer_factory, tlsgate_home, scene_certs: Scene) -> None:  # type: ignore[no-untyped-def]
    site = "Shop's \"$(Remove-Item C:\\ -Recurse)\" `n; exit 1\nnext"
    header = "a'b;$(calc)`x.example.com"
    host, info = scene(site, header, scene_certs)
    peer = winrm_peer_factory("http", host=host)
    endpoint = winrm_endpoint(peer, "winrm_http", type="iis")
    new = scene_certs.blog
    bundle = CertificateBundle.from_pem(new.cert_pem, new.key_pem, new.chain_pem)
    with get_registry().connect(endpoint, winrm_credentials()) as conn:
        run_and_check(conn, endpoint, host, site, header, info, bundle)


def test_templates_fit_cmd_exe_with_the_longest_names() -> None:
    """A 255-character site name and host header still fit cmd.exe's 8,191-character line."""
    from tlsgate_testing.connections import CMD_EXE_LIMIT, powershell_command_line

    site, info = "S" * 255, "[2001:db8::1]:65535:" + "h" * 255
    params = {
        "iis-discover": {},
        "iis-import-chain": {"path": "C:\\Windows\\Temp\\tlsgate-0123456789abcdef.p7b"},
        "iis-import-pfx": {"path": "C:\\Windows\\Temp\\tlsgate-0123456789abcdef.pfx", "thumbprint": "A" * 40},
        "iis-bind": {"site": site, "binding": info, "thumbprint": "A" * 40, "store": "WebHosting"},
        "iis-unbind": {"site": site, "binding": info, "httpsys": "hostnameport=" + "h" * 255 + ":65535"},
        "iis-remove-certs": {"store": "My", "thumbprints": ["A" * 40] * 4},
        "iis-restart": {"timeout": 60},
    }
    assert set(params) == set(TEMPLATES)
    for name, template in TEMPLATES.items():
        stdin = STDIN_PRELUDE if name == "iis-import-pfx" else ""
        line = powershell_command_line(ps_script(stdin + template, params[name]))
        assert len(line) < CMD_EXE_LIMIT - 400, (name, len(line))
        assert template.startswith(f"# tlsgate:{name}\n")
