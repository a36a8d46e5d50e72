"""The library API is complete (the CLI uses nothing else): orgs, stores, remove_store (audited),
audit_log, describe; and per-invocation CLI state lives in the click context, so two in-process
``main()`` calls that each read a secret from standard input both work."""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path

import pytest
from tlsgate import NotFoundError
from tlsgate.api import Gateway

CLI_DIR = Path(__file__).parents[2] / "core" / "src" / "tlsgate" / "cli"


def test_orgs_stores_remove_store_audit_log_describe(gateway: Gateway, tmp_path: Path) -> None:
    gateway.add_org("Acme")
    gateway.add_department("Acme", "Web")
    gateway.add_org("Beta")
    assert gateway.orgs() == [{"name": "Acme", "departments": ["Web"]}, {"name": "Beta", "departments": []}]

    gateway.add_store("local", "vault1", {})
    assert [s["name"] for s in gateway.stores()] == ["vault1"]
    assert gateway.store("vault1")["kind"] == "local"
    gateway.remove_store("vault1")
    assert gateway.stores() == []
    with pytest.raises(NotFoundError, match="no credential store named 'vault1'"):
        gateway.remove_store("vault1")
    with pytest.raises(NotFoundError):
        gateway.store("vault1")
    removed = [e for e in gateway.audit_log() if e["action"] == "store remove"]
    assert [(e["result"], e["details"]) for e in removed] == [("ok", {"store": "vault1", "kind": "local"})]
    assert [e["action"] for e in gateway.audit_log(2)] == ["store add", "store remove"]

    ep = gateway.add_endpoint("folder", name="web", connection_type="local", options={"folder": str(tmp_path)})
    by_endpoint, by_name, by_id = gateway.describe(ep), gateway.describe("web"), gateway.describe(ep.instance_id)
    assert by_endpoint == by_name == by_id
    assert by_name["options"] == {"folder": str(tmp_path), "fail_after_write": False}
    assert by_name["instance_id"] == ep.instance_id


def test_cli_modules_reach_the_inventory_only_through_gateway() -> None:
    """No ``<anything>.inventory`` attribute access in the CLI: the library API is complete."""
    offenders = []
    for path in sorted(CLI_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "inventory":
                offenders.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and node.module and node.module.endswith("inventory"):
                offenders.append(f"{path.name}:{node.lineno} imports {node.module}")
    assert offenders == []


def _main(argv: list[str], stdin: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    from tlsgate.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_two_in_process_main_calls_each_read_stdin(tlsgate_home: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _main(["store", "add", "local", "--name", "s1"], "", monkeypatch, capsys)
    assert code == 0, err
    for n in (1, 2):
        code, out, err = _main(["store", "put", "s1", "--store_cred_id", f"c{n}", "--user", "u", "--password", "-",
                                "--json"], f"pw-{n}\n", monkeypatch, capsys)
        assert code == 0, err
        assert json.loads(out) == {"store": "s1", "cred_id": f"c{n}"}
    # within one invocation, a second '-' is still refused, naming the option
    code, out, err = _main(["store", "put", "s1", "--store_cred_id", "c3", "--password", "-",
                            "--ssh_key_password", "-"], "a\nb\n", monkeypatch, capsys)
    assert code == 2
    assert err.startswith("error: --ssh_key_password: only one option per command can read from standard input")
    assert "Traceback" not in err
