"""The plugin boundary: what tlsgate.plugin exports, the rule that holds plugins to it, the
contract version check, the hook contract (validate named on a crash, declarations through
pluggy, no defaulted hook arguments), and that importing tlsgate stays light."""

from __future__ import annotations

import inspect
import pkgutil
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest
import tlsgate
import tlsgate.plugin as plugin_api
from tlsgate import hookspecs
from tlsgate.plugin import ConnectionSpec, Endpoint, EndpointType, PluginError, Problem, impl
from tlsgate.registry import Registry, get_registry

ROOT = Path(__file__).resolve().parents[2]


def test_every_exported_name_resolves_and_import_stays_light() -> None:
    for name in plugin_api.__all__:
        assert getattr(plugin_api, name) is not None, name
    for name in tlsgate.__all__:
        assert getattr(tlsgate, name) is not None, name
    code = ("import sys, tlsgate, tlsgate.plugin; "
            "print(sorted(m for m in ('cryptography', 'ssl', 'tlsgate.bundle', 'tlsgate.api', 'tlsgate.inventory',"
            " 'tlsgate.probe', 'tlsgate.transports.windows') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    # ``import tlsgate`` alone does not even load the models (attrs) or the errors.
    code = "import sys, tlsgate; print([m for m in sys.modules if m.startswith('tlsgate.') or m == 'attrs'])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_loading_every_installed_plugin_imports_no_crypto_or_driver_code() -> None:
    """Every CLI call loads every plugin's entry module: none may pull in cryptography, pyjks,
    paramiko or the core's certificate and inventory modules at load (they load when a hook runs)."""
    code = ("import sys; from tlsgate.registry import get_registry; get_registry(); "
            "print(sorted(m for m in ('cryptography', 'jks', 'paramiko', 'winrm', 'hvac', 'tlsgate.bundle', "
            "'tlsgate.certs', 'tlsgate.probe', 'tlsgate.api', 'tlsgate.inventory') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_old_spellings_still_work() -> None:
    from tlsgate import CertificateBundle, Gateway, ValidationError
    from tlsgate.bundle import CertificateBundle as Direct

    assert CertificateBundle is Direct and Gateway.__name__ == "Gateway" and issubclass(ValidationError, Exception)
    with pytest.raises(AttributeError):
        tlsgate.NoSuchThing  # noqa: B018


def test_the_banned_api_rule_names_every_tlsgate_module_and_name_but_plugin() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    banned = set(config["flake8-tidy-imports"]["banned-api"])
    modules = {f"tlsgate.{m.name}" for m in pkgutil.iter_modules(tlsgate.__path__)} - {"tlsgate.plugin"}
    names = {f"tlsgate.{n}" for n in tlsgate.__all__} - {"tlsgate.PLUGIN_API", "tlsgate.__version__"}
    assert modules | names <= banned
    assert "tlsgate.plugin" not in banned
    assert "TID251" in config["select"]


def test_ruff_refuses_a_core_import_in_plugin_code_only(tmp_path: Path) -> None:
    ruff = Path(sys.executable).with_name("ruff")
    source = "from tlsgate.transaction import current_backup_sink\nfrom tlsgate.plugin import impl\n\nprint(current_backup_sink, impl)\n"
    where = {"plugins/nginx/src/tlsgate_nginx/_boundary_probe.py": 1, "tests/core/_boundary_probe.py": 0}
    for rel, expected in where.items():
        res = subprocess.run([str(ruff), "check", "--select", "TID251", "--stdin-filename", rel, "-"],
                             input=source, capture_output=True, text=True, cwd=ROOT, check=False)
        assert res.returncode == expected, (rel, res.stdout)
        if expected:
            assert "tlsgate.transaction" in res.stdout and "tlsgate.plugin" in res.stdout


def test_no_plugin_or_example_file_imports_a_core_internal() -> None:
    """The issue's check, ``grep -rn "from tlsgate\\.\\(transaction\\|transports\\|inventory\\|api\\)"
    plugins/ examples/``, over every text file there: sources and tests alike (tests import the
    core's transports from tlsgate_testing.connections)."""
    import re

    pattern = re.compile(r"from tlsgate\.(transaction|transports|inventory|api)")
    hits = []
    for top in ("plugins", "examples"):
        for path in sorted((ROOT / top).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            try:
                text = path.read_text()
            except (UnicodeDecodeError, OSError):
                continue
            hits += [f"{path.relative_to(ROOT)}:{n}" for n, line in enumerate(text.splitlines(), 1)
                     if pattern.search(line)]
    assert hits == []


def _module(name: str, api: object) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.PLUGIN_API = api  # type: ignore[attr-defined]

    @impl
    def tlsgate_endpoint_types() -> list[EndpointType]:
        return [EndpointType(name=f"{name}-type", description="", connection_types=("local",))]

    mod.tlsgate_endpoint_types = tlsgate_endpoint_types  # type: ignore[attr-defined]
    return mod


def test_a_plugin_written_for_a_newer_major_is_refused_naming_it() -> None:
    reg = Registry()
    with pytest.raises(PluginError) as err:
        reg.register(_module("future", "2.0"), name="future", distribution="tlsgate-future", version="3.1")
    msg = str(err.value)
    assert "'future'" in msg and "tlsgate-future 3.1" in msg and "2.0" in msg and tlsgate.PLUGIN_API in msg
    assert "future-type" not in reg.endpoint_types
    with pytest.raises(PluginError, match="must be a version string"):
        reg.register(_module("odd", 2), name="odd", distribution="tlsgate-odd")
    reg.register(_module("same", "1.7"), name="same", distribution="tlsgate-same")  # newer minor: fine
    reg.register(_module("plain", None), name="plain", distribution="tlsgate-plain")  # undeclared: fine
    assert {"same-type", "plain-type"} <= set(reg.endpoint_types)


def test_bundled_plugins_declare_the_contract_they_were_written_for() -> None:
    import importlib

    outside = [info for info in get_registry().plugins.values() if info.distribution != "tlsgate"]
    assert outside
    for info in outside:
        declared = importlib.import_module(info.module).PLUGIN_API
        assert declared.split(".")[0] == tlsgate.PLUGIN_API.split(".")[0], info


def test_a_crash_in_validate_names_the_plugin_and_problems_are_collected() -> None:
    class Fine:
        @impl
        def validate(self, endpoint):  # type: ignore[no-untyped-def]
            return [Problem("looks wrong", option="--x")]

    class Crashing:
        @impl
        def validate(self, endpoint):  # type: ignore[no-untyped-def]
            raise KeyError("options")

    ep = Endpoint(name="e", type="t", connection=ConnectionSpec("local"))
    reg = Registry()
    reg.register(Fine(), name="fine", distribution="dist-fine")
    assert reg.validate(ep) == [Problem("looks wrong", option="--x")]
    reg.register(Crashing(), name="crashing", distribution="dist-crash", version="0.3")
    with pytest.raises(PluginError, match=r"'crashing' \(dist-crash 0\.3\) failed in validate: KeyError"):
        reg.validate(ep)


def test_declarations_are_read_through_pluggy_not_by_attribute_name() -> None:
    class Renamed:
        @impl(specname="tlsgate_endpoint_types")
        def my_types(self):  # type: ignore[no-untyped-def]
            return [EndpointType(name="renamed", description="", connection_types=("local",))]

        def tlsgate_connection_types(self):  # not marked: not a hook implementation
            raise AssertionError("an unmarked function is not called")

    reg = Registry()
    reg.register(Renamed(), name="renamed", distribution="dist-r")
    assert "renamed" in reg.endpoint_types and reg.plugins["renamed"].endpoint_types == ("renamed",)


def test_no_bundled_hook_implementation_has_a_defaulted_hook_argument() -> None:
    """pluggy never passes an argument that has a default; such an argument is always the default."""
    reg = get_registry()
    spec_args = {name: set(inspect.signature(getattr(hookspecs, name)).parameters)
                 for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "tlsgate_spec")}
    bad = []
    for hook, args in spec_args.items():
        for hookimpl in getattr(reg.pm.hook, hook).get_hookimpls():
            for p in inspect.signature(hookimpl.function).parameters.values():
                if p.name in args and p.default is not inspect.Parameter.empty:
                    bad.append(f"{hookimpl.plugin_name}.{hook}({p.name}=...)")
    assert spec_args and not bad


def test_the_core_decides_by_declared_fields_not_transport_names() -> None:
    reg = get_registry()
    assert {n for n, c in reg.connection_types.items() if c.host_keys} == {"ssh", "ssh_windows"}
    assert {n for n, c in reg.connection_types.items() if not c.remote} == {"local"}
    assert {n for n, s in reg.credential_stores.items() if s.writable} == {"local"}
    core = [p for p in (ROOT / "core/src/tlsgate").rglob("*.py") if "transports" not in p.parts]
    offenders = [str(p) for p in core if 'startswith("ssh' in p.read_text() or 'kind != "local"' in p.read_text()]
    assert offenders == []


def test_delegate_loads_its_driver_on_first_call_and_passes_the_arguments_it_names(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tlsgate.plugin import delegate

    calls: list[dict[str, object]] = []
    driver = types.ModuleType("boundary_driver_probe")

    def install(endpoint, nodes, dry_run, alias=None):  # type: ignore[no-untyped-def]
        calls.append({"endpoint": endpoint, "nodes": nodes, "dry_run": dry_run, "alias": alias})
        return "installed"

    driver.install = install  # type: ignore[attr-defined]
    entry = types.ModuleType("boundary_entry_probe")
    entry.install = delegate("install", "boundary_driver_probe:install")  # type: ignore[attr-defined]
    reg = Registry()
    reg.register(entry, name="lazy", distribution="dist-lazy")
    (hookimpl,) = reg.pm.hook.install.get_hookimpls()
    assert hookimpl.argnames == ("endpoint", "connection", "bundle", "nodes", "dry_run", "alias")
    monkeypatch.setitem(sys.modules, "boundary_driver_probe", driver)  # "installed" only now
    answer = reg.pm.hook.install(endpoint="ep", connection="conn", bundle="b", nodes=["n"], dry_run=True, alias="x")
    assert answer == "installed" and calls == [{"endpoint": "ep", "nodes": ["n"], "dry_run": True, "alias": "x"}]
    with pytest.raises(AttributeError):
        delegate("instal", "boundary_driver_probe:install")
    with pytest.raises(ValueError, match=r"package\.module:function"):
        delegate("install", "boundary_driver_probe")
