"""What the ``tlsgate`` command imports to start: ``--help`` must stay light (fleet scripts call
the command thousands of times), and every command still builds and runs from its lazy group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HEAVY = ("cryptography", "paramiko", "winrm", "requests", "jks", "rich", "hvac", "acme", "psycopg", "pydantic",
         "ssl", "sqlite3")
# the CLI's main() with the given arguments, then the top-level names of the modules it loaded
PROBE = (
    "import sys, json\n"
    "from tlsgate.cli import main\n"
    "code = main(json.loads(sys.argv[1]))\n"
    "sys.stdout.flush()\n"
    "print('\\nMODULES', json.dumps(sorted({m for m in sys.modules})), file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _run(args: list[str], home: Path, **env_extra: str) -> tuple[int, str, set[str]]:
    # the plugin declarations' cache under home; the probe runs in a directory nothing writes to
    # (``python -c`` puts its working directory on sys.path, and the cache watches sys.path)
    cwd = home / "cwd"
    if not cwd.exists():
        cwd.mkdir()
        os.utime(cwd, (1_600_000_000, 1_600_000_000))
    env = {**os.environ, "TLSGATE_HOME": str(home), "TLSGATE_CACHE_DIR": str(home / "cache"), **env_extra}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True, env=env,
                          check=False, cwd=cwd)
    loaded = set(json.loads(proc.stderr.rsplit("MODULES", 1)[1]))
    return proc.returncode, proc.stdout, loaded


def _run_cached(args: list[str], home: Path) -> tuple[str, tuple[int, str, set[str]]]:
    """The command's output with no cache (it loads the plugins and writes the cache), then the
    command again, answered from the cache. A source file changed in the last two seconds keeps
    the cache from being written (tlsgate.declarations.RACY_SECONDS): then once more later."""
    from tlsgate.declarations import RACY_SECONDS

    code, first, loaded = _run(args, home)
    assert code == 0 and "tlsgate_nginx" in loaded  # built from the plugins themselves
    if not list((home / "cache").glob("plugins-*.json")):
        time.sleep(RACY_SECONDS + 0.1)
        _run(args, home)
    return first, _run(args, home)


def _heavy(loaded: set[str]) -> list[str]:
    return sorted(m for m in loaded if m.split(".")[0] in HEAVY)


def test_help_imports_no_heavy_module_no_plugin_and_no_command_module(tmp_path: Path) -> None:
    code, out, loaded = _run(["--help"], tmp_path)
    assert code == 0
    assert _heavy(loaded) == []
    assert not [m for m in loaded if m.startswith("tlsgate_")]  # no plugin loaded
    assert not {"tlsgate.registry", "tlsgate.api", "tlsgate.inventory", "tlsgate.cli.tls", "tlsgate.bundle",
                "rich.table"} & loaded
    # the help still lists every group with its one-line help
    for line in ("tls      Endpoints: add, discover, install, restart.", "org      Organizations and departments.",
                 "cert     Certificates in the inventory.", "store    Credential stores.",
                 "plugins  Installed plugins.", "log      The audit log"):
        assert line in out


#: what loading the plugins costs: none of it is needed to answer from their declarations
PLUGIN_LOADING = ("attr", "attrs", "pluggy", "importlib.metadata", "tlsgate.registry", "tlsgate.models",
                  "tlsgate.options", "tlsgate.api", "tlsgate.transports", "tlsgate.credstores")


def _plugin_loading(loaded: set[str]) -> list[str]:
    return sorted(m for m in loaded if m.startswith("tlsgate_")
                  or any(m == p or m.startswith(p + ".") for p in PLUGIN_LOADING))


def test_type_help_imports_no_plugin_once_their_declarations_are_cached(tmp_path: Path) -> None:
    first, (code, out, loaded) = _run_cached(["tls", "add", "nginx", "--help"], tmp_path)
    assert code == 0 and "Usage: tlsgate tls add nginx [OPTIONS]" in out and "--nginx_config_path" in out
    assert out == first  # the same help as built from the plugins themselves
    assert _heavy(loaded) == []
    assert _plugin_loading(loaded) == []
    # only the group on the way is built: no other group's command module, not the tls commands'
    assert not {"tlsgate.cli.cert", "tlsgate.cli.store", "tlsgate.cli.dns", "tlsgate.inventory"} & loaded


def test_tls_list_on_an_empty_inventory_imports_no_plugin_models_or_cryptography(tmp_path: Path) -> None:
    code, out, loaded = _run(["tls", "list", "--json"], tmp_path)
    assert code == 0 and json.loads(out) == []
    assert _heavy(loaded) == ["sqlite3", "sqlite3.dbapi2"]
    assert _plugin_loading(loaded) == []
    code, out, loaded = _run(["tls", "list"], tmp_path)  # the text table too
    assert code == 0 and out.split()[:2] == ["Name", "Type"] and _plugin_loading(loaded) == []
    assert "rich" not in loaded  # piped: plain aligned text


@pytest.mark.parametrize(("args", "expect"), [
    (["tls", "add", "--help"], "nginx"),
    (["store", "add", "--help"], "vault"),
    (["tls", "--help"], "discover"),
])
def test_group_help_lists_lazy_commands_with_their_help(tmp_path: Path, args: list[str], expect: str) -> None:
    code, out, _ = _run(args, tmp_path)
    assert code == 0 and any(line.split()[:1] == [expect] for line in out.splitlines())


def test_a_typo_in_a_lazy_group_suggests_the_command_and_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "TLSGATE_HOME": str(tmp_path)}
    tlsgate = str(Path(sys.executable).parent / "tlsgate")
    proc = subprocess.run([tlsgate, "tls", "lst"], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 2 and "No such command 'lst'. Did you mean 'list'" in proc.stderr
    proc = subprocess.run([tlsgate, "sotre"], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 2 and "Did you mean 'store'?" in proc.stderr


def test_piped_text_output_escapes_control_characters_without_rich() -> None:
    code = ("import sys; from tlsgate.cli.output import say; say('ok \\x1b[31mred\\r\\x07 done\\nnext\\tcol'); "
            "print('rich' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # say() prints one line: a newline or tab in the text cannot start a fake line (say_lines
    # is for several lines of data)
    assert out == "ok \\x1b[31mred\\r\\x07 done\\nnext\\tcol\nFalse\n"


def test_discover_parses_its_options_without_pydantic(tmp_path: Path) -> None:
    """``tls discover NAME`` (an Optional[str] argument, an int and bool defaults) is a fleet
    script's most frequent call: Typer's pydantic coercion is not needed for those values."""
    code, _out, loaded = _run(["tls", "discover", "no-such-endpoint"], tmp_path)
    assert code == 2 and "tlsgate.api" in loaded  # parsed and run: no such endpoint
    assert "pydantic" not in {m.split(".")[0] for m in loaded}
    code, _out, loaded = _run(["tls", "discover", "no-such-endpoint", "--parallel", "x"], tmp_path)
    assert code == 2 and "tlsgate.api" not in loaded  # a value given on the command line: Typer's coercion


FAKE_PLUGIN = '''
import attrs
from tlsgate.plugin import EndpointType, impl, option


@attrs.frozen
class FakeOptions:
    fake_path: str = option(help="HELP-ONE of the fake path.")


@impl
def tlsgate_endpoint_types():
    return [EndpointType(name="fake", description="A fake type.", connection_types=("local",), options=FakeOptions)]
'''


def _age(*paths: Path, when: int) -> None:
    """Set mtimes in the past (a file changed a moment ago keeps the cache from being written)."""
    for path in paths:
        for p in [path, *(path.rglob("*") if path.is_dir() else ())]:
            os.utime(p, (when, when))


def _listed(out: str) -> set[str]:
    return {line.split()[0] for line in out.split("Commands:", 1)[1].splitlines() if line.strip()}


def test_the_declarations_cache_follows_installs_source_edits_removals_and_the_plugin_filter(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    module = site / "tlsgate_fakeplug.py"
    module.write_text(FAKE_PLUGIN)
    _age(site, when=1_600_000_000)
    env = {"PYTHONPATH": str(site)}
    code, out, _ = _run(["tls", "add", "--help"], tmp_path, **env)
    assert code == 0 and "nginx" in _listed(out) and "fake" not in _listed(out)
    if not list((tmp_path / "cache").glob("plugins-*.json")):  # a source file changed a moment ago
        from tlsgate.declarations import RACY_SECONDS

        time.sleep(RACY_SECONDS + 0.1)
        _run(["tls", "add", "--help"], tmp_path, **env)
    assert list((tmp_path / "cache").glob("plugins-*.json"))
    # a distribution installed into a directory on sys.path
    dist = site / "tlsgate_fakeplug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tlsgate-fakeplug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[tlsgate]\nfakeplug = tlsgate_fakeplug\n")
    code, out, loaded = _run(["tls", "add", "--help"], tmp_path, **env)
    assert code == 0 and "fake" in _listed(out) and "tlsgate_fakeplug" in loaded
    # once nothing changed for a while, answered from the cache without importing the plugin
    _age(site, when=1_600_000_100)
    _run(["tls", "add", "--help"], tmp_path, **env)
    code, out, loaded = _run(["tls", "add", "fake", "--help"], tmp_path, **env)
    assert code == 0 and "HELP-ONE of the fake path." in out and "tlsgate_fakeplug" not in loaded
    # its source edited in place (same size): the new help, not the cached one
    module.write_text(FAKE_PLUGIN.replace("HELP-ONE", "HELP-TWO"))
    _age(module, when=1_600_000_200)
    code, out, loaded = _run(["tls", "add", "fake", "--help"], tmp_path, **env)
    assert code == 0 and "HELP-TWO of the fake path." in out and "tlsgate_fakeplug" in loaded
    # blocked by the plugin filter, then uninstalled
    code, out, _ = _run(["tls", "add", "--help"], tmp_path, **env, TLSGATE_DISABLE_PLUGINS="fakeplug")
    assert code == 0 and "fake" not in _listed(out) and "nginx" in _listed(out)
    for p in dist.iterdir():
        p.unlink()
    dist.rmdir()
    full = {**os.environ, "TLSGATE_HOME": str(tmp_path), "TLSGATE_CACHE_DIR": str(tmp_path / "cache"), **env}
    proc = subprocess.run([str(Path(sys.executable).parent / "tlsgate"), "tls", "add", "fake", "--help"],
                          capture_output=True, text=True, env=full, check=False)
    assert proc.returncode == 2 and "unknown endpoint type 'fake'" in proc.stderr


def test_an_int_option_left_at_its_default_needs_no_pydantic(tmp_path: Path) -> None:
    """Typer coerces every value through pydantic (~0.15 s to import): ``cert expiring``'s
    ``--days`` default, and plain digits, are ints without it; other text still gets Typer's
    own answer and message."""
    for args in (["cert", "expiring", "--json"], ["cert", "expiring", "--days", "400", "--json"]):
        code, out, loaded = _run(args, tmp_path)
        assert code == 0 and json.loads(out) == [] and "pydantic" not in loaded
    env = {**os.environ, "TLSGATE_HOME": str(tmp_path)}
    proc = subprocess.run([str(Path(sys.executable).parent / "tlsgate"), "cert", "expiring", "--days", "1e3"],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 2 and "Invalid value for '--days'" in proc.stderr
