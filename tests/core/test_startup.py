"""What the ``tlsgate`` command imports to start: ``--help`` must stay light (fleet scripts call
the command thousands of times), and every command still builds and runs from its lazy group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def _run(args: list[str], home: Path) -> tuple[int, str, set[str]]:
    env = {**os.environ, "TLSGATE_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True, env=env,
                          check=False)
    loaded = set(json.loads(proc.stderr.rsplit("MODULES", 1)[1]))
    return proc.returncode, proc.stdout, loaded


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


def test_type_help_builds_only_that_type_and_imports_no_driver(tmp_path: Path) -> None:
    code, out, loaded = _run(["tls", "add", "nginx", "--help"], tmp_path)
    assert code == 0 and "Usage: tlsgate tls add nginx [OPTIONS]" in out and "--nginx_config_path" in out
    assert [m for m in _heavy(loaded) if m != "ssl"] == []  # ssl: the winrm transport's entry module
    assert "tlsgate_nginx.discovery" not in loaded and "tlsgate.cli.cert" not in loaded


def test_tls_list_on_an_empty_inventory_needs_no_paramiko_pywinrm_or_requests(tmp_path: Path) -> None:
    code, out, loaded = _run(["tls", "list", "--json"], tmp_path)
    assert code == 0 and json.loads(out) == []
    assert not {"paramiko", "winrm", "requests", "jks", "hvac", "pydantic", "rich"} & {m.split(".")[0] for m in loaded}


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
