"""Plugin loading and dispatch: owner-only dispatch, duplicates refused, failures named."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
from tlsgate import hookspecs
from tlsgate.errors import PluginError
from tlsgate.models import ConnectionSpec, Endpoint
from tlsgate.plugin import EndpointType, impl
from tlsgate.registry import Registry
from tlsgate.transports.local import LocalConnection
from tlsgate_testing.certs import TestCA


def _bundle(ca: TestCA):
    from tlsgate import CertificateBundle

    issued = ca.issue("folder.example.org")
    return CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)


def test_install_goes_to_the_owner_and_policy_plugins_still_run(registry: Registry, test_ca: TestCA, tmp_path) -> None:
    et = registry.endpoint_types["folder"]
    ep = Endpoint(name="f", type="folder", connection=ConnectionSpec("local"), options=et.options(folder=str(tmp_path)))
    other = Endpoint(name="o", type="other", connection=ConnectionSpec("local"))
    with LocalConnection() as conn:
        result = registry.install(ep, conn, _bundle(test_ca), [], False, None)
        assert result.nodes == ("folder.example.org",)
        assert (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600
        # the other type's install is answered by its own plugin, not by 'folder'
        assert registry.install(other, conn, _bundle(test_ca), [], False, None).nodes == ("other-was-called",)
    policy = registry._objects["policy"]
    assert policy.seen == ["folder", "other"]


def test_two_plugins_declaring_one_type_are_refused_with_both_names() -> None:
    class Dup:
        @impl
        def tlsgate_endpoint_types(self):  # type: ignore[no-untyped-def]
            return [EndpointType(name="same", description="", connection_types=("local",))]

    reg = Registry()
    reg.register(Dup(), name="first", distribution="dist-a")
    with pytest.raises(PluginError, match=r"'same'.*first \(dist-a\).*second \(dist-b\)"):
        reg.register(Dup(), name="second", distribution="dist-b")


def test_misspelt_hook_fails_loudly_naming_the_plugin() -> None:
    class Typo:
        @impl
        def discover_node(self, endpoint, connection):  # type: ignore[no-untyped-def]  # missing 's'
            return []

    reg = Registry()
    reg.register(Typo(), name="typo", distribution="dist-typo")
    with pytest.raises(PluginError, match="typo"):
        reg.finish()


def test_a_crash_inside_a_driver_names_the_plugin(registry: Registry, tmp_path) -> None:
    class Crashing:
        @impl
        def tlsgate_endpoint_types(self):  # type: ignore[no-untyped-def]
            return [EndpointType(name="crash", description="", connection_types=("local",))]

        @impl
        def discover_nodes(self, endpoint, connection):  # type: ignore[no-untyped-def]
            raise KeyError("boom")

    registry.register(Crashing(), name="crasher", distribution="dist-crash", version="9.9")
    ep = Endpoint(name="c", type="crash", connection=ConnectionSpec("local"))
    with LocalConnection() as conn, pytest.raises(PluginError, match=r"crasher.*dist-crash 9\.9.*discover_nodes"):
        registry.discover_nodes(ep, conn)


def test_facade_methods_match_the_hookspec_arguments() -> None:
    for name in ("connect", "discover_nodes", "install", "restart", "run_script"):
        spec_args = list(inspect.signature(getattr(hookspecs, name)).parameters)
        facade_args = list(inspect.signature(getattr(Registry, name)).parameters)[1:]
        assert facade_args == spec_args, name


def _plugins_json(env: dict[str, str]) -> list[dict]:
    import json
    import os

    out = subprocess.run([sys.executable, "-m", "tlsgate", "plugins", "list", "--json"], capture_output=True,
                         text=True, env={**os.environ, **env}, check=True)
    return json.loads(out.stdout)


def test_blocklist_and_allowlist(tmp_path) -> None:
    env = {"TLSGATE_HOME": str(tmp_path)}
    names = {p["name"] for p in _plugins_json(env)}
    assert {"local", "ssh", "winrm", "credstores"} <= names
    blocked = {p["name"] for p in _plugins_json({**env, "TLSGATE_DISABLE_PLUGINS": "winrm"})}
    assert "winrm" not in blocked and "local" in blocked
    only_core = _plugins_json({**env, "TLSGATE_LOAD_PLUGINS": "no-such-plugin"})
    assert {p["distribution"] for p in only_core} == {"tlsgate"}


def test_core_alone_says_no_endpoint_types_are_installed(tmp_path) -> None:
    import os

    env = {**os.environ, "TLSGATE_HOME": str(tmp_path), "TLSGATE_LOAD_PLUGINS": "no-such-plugin"}
    res = subprocess.run([sys.executable, "-m", "tlsgate", "tls", "add", "p12", "--name", "x"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: unknown endpoint type 'p12': no endpoint types are installed (install a plugin such as tlsgate-keystores)"
    ]
    res = subprocess.run([sys.executable, "-m", "tlsgate", "plugins", "list"], capture_output=True, text=True, env=env)
    assert res.returncode == 0 and "no endpoint types are installed" in res.stderr


# -- a registry from the declarations' cache: each plugin imported when first used ----------------

_DEFERRED_PROBE = """
import json, sys
from tlsgate.registry import get_registry
reg = get_registry()
out = {"pending_at_start": sorted(reg._pending), "types": list(reg.endpoint_types),
       "owners": {t: reg.owner_of_type(t) for t in reg.endpoint_types},
       "plugins": {n: i.to_json() for n, i in reg.plugins.items()}}
reg.endpoint_types["nginx"]  # its plugin only
out["loaded_after_nginx"] = sorted(m for m in sys.modules if m.startswith("tlsgate_"))
reg.connection_types["local"]
out["pending_after"] = sorted(reg._pending)
reg._load_all()
out["order"] = [i.plugin_name for i in reg._full_load_order(reg.pm.hook.validate.get_hookimpls())]
print(json.dumps(out))
"""


def _probe(code: str, env: dict[str, str], cwd) -> dict:  # type: ignore[no-untyped-def]
    import json
    import os

    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **env}, cwd=cwd, check=True)
    return json.loads(res.stdout)


def test_a_registry_from_the_cache_imports_a_plugin_when_it_is_used(tmp_path) -> None:
    import os
    import time

    from tlsgate.declarations import RACY_SECONDS

    env = {"TLSGATE_HOME": str(tmp_path / "home"), "TLSGATE_CACHE_DIR": str(tmp_path / "cache")}
    cwd = tmp_path / "cwd"  # on sys.path (python -c): nothing writes to it
    cwd.mkdir()
    os.utime(cwd, (1_600_000_000, 1_600_000_000))
    full = _probe(_DEFERRED_PROBE, env, cwd)  # no cache: every plugin loaded, the cache written
    assert full["pending_at_start"] == []
    if not list((tmp_path / "cache").glob("plugins-*.json")):
        time.sleep(RACY_SECONDS + 0.1)  # a source file changed a moment ago (tlsgate.declarations)
        _probe(_DEFERRED_PROBE, env, cwd)
    deferred = _probe(_DEFERRED_PROBE, env, cwd)
    assert {"nginx", "apache", "keystores", "local"} <= set(deferred["pending_at_start"])
    # the same names, owners and plugin facts as a full load, before anything was imported
    for key in ("types", "owners", "plugins", "order"):
        assert deferred[key] == full[key], key
    assert "tlsgate_nginx" in deferred["loaded_after_nginx"]
    assert not {"tlsgate_apache", "tlsgate_keystores", "tlsgate_f5"} & set(deferred["loaded_after_nginx"])
    assert "nginx" not in deferred["pending_after"] and "local" not in deferred["pending_after"]
    assert "apache" in deferred["pending_after"]


def _full_and_deferred():  # type: ignore[no-untyped-def]
    from tlsgate.registry import plugin_table

    full = Registry()
    full.load_entry_points()
    return full, plugin_table(full)


def test_a_deferred_registry_keeps_the_full_loads_hook_order() -> None:
    full, table = _full_and_deferred()
    reg = Registry.deferred(table)
    reg.endpoint_types["tomcat"], reg.connection_types["ssh"], reg.endpoint_types["apache"]
    assert {n for n, _ in reg.pm.list_name_plugin()} == {"tomcat", "ssh", "apache"}
    ep = Endpoint(name="x", type="apache", connection=ConnectionSpec("local"),
                  options=reg.endpoint_types["apache"].options())
    assert reg.validate(ep) == full.validate(ep)  # every plugin loaded, called in the full load's order
    assert [i.plugin_name for i in reg._full_load_order(reg.pm.hook.validate.get_hookimpls())] == [
        i.plugin_name for i in full.pm.hook.validate.get_hookimpls()]
    assert list(reg.endpoint_types.items()) == list(full.endpoint_types.items())


def test_a_deferred_registry_loads_each_plugin_once_for_concurrent_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    _, table = _full_and_deferred()
    for _ in range(5):
        reg = Registry.deferred(table)
        names = [t for e in table for t in e["endpoint_types"]] * 4
        with ThreadPoolExecutor(16) as pool:
            got = list(pool.map(lambda n: reg.endpoint_types[n].name, names))  # noqa: B023
        assert got == names


def test_a_plugin_that_declares_nothing_loads_every_plugin_in_order() -> None:
    _, table = _full_and_deferred()
    silent = {"name": "zz-policy", "value": "tlsgate.gcpause", "distribution": "test", "version": "1",
              "module": "tlsgate.gcpause", **{k: [] for k in ("endpoint_types", "connection_types",
                                                          "credential_stores", "dns_providers")}}
    reg = Registry.deferred([*table, silent])
    reg.endpoint_types["nginx"]
    assert reg._pending == {}
    assert [n for n, _ in reg.pm.list_name_plugin()] == [e["name"] for e in table] + ["zz-policy"]


def test_a_plugin_declaring_otherwise_than_the_cache_says_reloads_every_plugin() -> None:
    _, table = _full_and_deferred()
    stale = [dict(e, endpoint_types=[*e["endpoint_types"], "gone"]) if e["name"] == "nginx" else e for e in table]
    reg = Registry.deferred(stale)
    assert "gone" in reg.endpoint_types
    types = reg.endpoint_types
    assert types["nginx"].name == "nginx"  # loading nginx showed the table wrong: a full load
    assert reg._pending == {} and "gone" not in reg.endpoint_types and "gone" not in types
    assert reg.owner_of_type("nginx") == "nginx"


def test_a_plugin_that_no_longer_loads_is_named(tmp_path) -> None:
    _, table = _full_and_deferred()
    broken = [dict(e, value="tlsgate_no_such_module.plugin") if e["name"] == "f5" else e for e in table]
    reg = Registry.deferred(broken)
    assert reg.endpoint_types["nginx"].name == "nginx"
    with pytest.raises(PluginError, match=r"plugin 'f5' \(distribution tlsgate-f5 .*\) failed to load"):
        reg.endpoint_types["f5"]
