"""Declared endpoint types and ``validate`` (what ``tls add`` checks without connecting)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from tlsgate import ConnectionSpec, Endpoint, ValidationError
from tlsgate.options import build_options, option_specs
from tlsgate_keystores.plugin import validate
from tlsgate_testing.certs import Issued

PW = "changeit"
VENDOR_ORDER = ("local", "ssh", "ssh_windows", "winrm_http", "winrm_https", "winrm_https_insecure")


def test_declared_types(registry: Any) -> None:
    assert registry.plugins["keystores"].endpoint_types == ("p12", "jks", "pem")
    flags = {}
    for name in ("p12", "jks", "pem"):
        et = registry.endpoint_types[name]
        assert et.connection_types == VENDOR_ORDER
        assert et.local_platforms == ("windows", "linux") and not et.needs_restart
        flags[name] = {s.flag: s for s in option_specs(et.options)}
    assert list(flags["p12"]) == ["--path", "--store_password", "--install_script", "--restart_script", "--is_legacy",
                                   "--script_sudo"]
    assert list(flags["jks"]) == ["--path", "--store_password", "--install_script", "--restart_script", "--script_sudo"]
    assert list(flags["pem"]) == ["--path", "--install_script", "--restart_script", "--key_path", "--key_password",
                                   "--script_sudo"]
    assert flags["p12"]["--store_password"].secret and flags["pem"]["--key_password"].secret
    assert flags["p12"]["--is_legacy"].type is bool and flags["p12"]["--is_legacy"].default is False
    assert flags["p12"]["--path"].required and flags["jks"]["--store_password"].required
    assert not flags["pem"]["--key_path"].required


def test_options_refuse_what_the_type_does_not_have(registry: Any) -> None:
    p12, jks, pem = (registry.endpoint_types[n].options for n in ("p12", "jks", "pem"))
    with pytest.raises(ValidationError, match="--is_legacy: is not an option"):
        build_options(jks, {"path": "/x", "store_password": PW, "is_legacy": "true"})
    with pytest.raises(ValidationError, match="--store_password: is not an option"):
        build_options(pem, {"path": "/x", "store_password": PW})
    with pytest.raises(ValidationError, match="--store_password: is required"):
        build_options(p12, {"path": "/x"})
    with pytest.raises(ValidationError, match="--is_legacy: must be true or false"):
        build_options(p12, {"path": "/x", "store_password": PW, "is_legacy": "maybe"})
    assert build_options(p12, {"path": "/x", "store_password": PW, "is_legacy": "true"}).is_legacy is True
    assert build_options(p12, {"path": "/x", "store_password": PW}).is_legacy is False


def _ep(registry: Any, type_: str, connection: str = "local", **options: Any) -> Endpoint:
    values = build_options(registry.endpoint_types[type_].options, options)
    return Endpoint(name="k", type=type_, connection=ConnectionSpec(connection, host="h"), options=values)


def problems(ep: Endpoint) -> list[tuple[str | None, str]]:
    return [(p.option, p.message) for p in validate(ep)]


def test_local_keystore_must_exist_and_open(registry: Any, p12_file: Path, tmp_path: Path) -> None:
    assert problems(_ep(registry, "p12", path=str(p12_file), store_password=PW)) == []
    missing = problems(_ep(registry, "p12", path=str(tmp_path / "no.p12"), store_password=PW))
    assert missing == [("--path", f"{tmp_path / 'no.p12'}: no such file (the file must already exist)")]
    wrong = problems(_ep(registry, "p12", path=str(p12_file), store_password="nope"))
    assert [o for o, _ in wrong] == ["--store_password"] and "wrong store password" in wrong[0][1]
    assert "nope" not in str(wrong)
    as_jks = problems(_ep(registry, "jks", path=str(p12_file), store_password=PW))  # PKCS#12 behind jks: fine
    assert as_jks == []
    garbage = tmp_path / "garbage.jks"
    garbage.write_bytes(b"not a keystore at all")
    assert problems(_ep(registry, "jks", path=str(garbage), store_password=PW)) == [
        ("--path", f"{garbage}: not a JKS, JCEKS or PKCS#12 keystore")
    ]
    assert problems(_ep(registry, "p12", path=str(tmp_path), store_password=PW))[0][1].endswith("is a directory")
    assert problems(_ep(registry, "p12", path="relative.p12", store_password=PW)) == [
        ("--path", "must be an absolute path")
    ]


def test_local_pem_checks(registry: Any, tmp_path: Path, leaf_a: Issued) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = tmp_path / "a.pem"
    pem.write_bytes(leaf_a.cert_pem)
    assert problems(_ep(registry, "pem", path=str(pem))) == []
    assert problems(_ep(registry, "pem", path=str(pem), key_path=str(tmp_path / "new.key"))) == []
    assert problems(_ep(registry, "pem", path=str(pem), key_path="/no/such/dir/k.key")) == [
        ("--key_path", "/no/such/dir/k.key: neither the file nor its directory exists")
    ]
    enc = tmp_path / "enc.pem"
    enc.write_bytes(leaf_a.cert_pem + leaf_a.key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    assert [o for o, _ in problems(_ep(registry, "pem", path=str(enc)))] == ["--key_password"]
    assert [o for o, _ in problems(_ep(registry, "pem", path=str(enc), key_password="bad"))] == ["--key_password"]
    assert problems(_ep(registry, "pem", path=str(enc), key_password="secret")) == []
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert [o for o, _ in problems(_ep(registry, "pem", path=str(text)))] == ["--path"]


def test_local_scripts_must_exist_and_be_executable(registry: Any, p12_file: Path, tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    got = problems(_ep(registry, "p12", path=str(p12_file), store_password=PW, install_script=str(script),
                       restart_script=str(tmp_path / "missing.sh")))
    assert got == [("--install_script", f"{script}: is not executable"),
                   ("--restart_script", f"{tmp_path / 'missing.sh'}: no such file (add the script to the host first)")]
    script.chmod(0o755)
    assert problems(_ep(registry, "p12", path=str(p12_file), store_password=PW, install_script=str(script))) == []


@pytest.mark.parametrize(("connection", "path", "ok"), [
    ("ssh", "/etc/ssl/remote.p12", True),
    ("ssh", "C:\\certs\\x.pfx", False),
    ("ssh_windows", "C:\\certs\\x.pfx", True),
    ("winrm_https", "D:/certs/x.pfx", True),
    ("winrm_http", "certs\\x.pfx", False),
])
def test_remote_endpoints_are_not_touched(registry: Any, connection: str, path: str, ok: bool) -> None:
    got = problems(_ep(registry, "p12", connection, path=path, store_password=PW))
    assert got == ([] if ok else [("--path", "must be an absolute path")])


def test_validate_ignores_other_types(registry: Any) -> None:
    ep = Endpoint(name="n", type="nginx", connection=ConnectionSpec("local"), options=None)
    assert validate(ep) == []
    assert os.path.exists("/") and validate(Endpoint(name="x", type="p12", connection=ConnectionSpec("local"))) == []


def test_entry_module_imports_no_heavy_library() -> None:
    """Every CLI call loads every plugin: the entry module imports only tlsgate and attrs."""
    import subprocess
    import sys

    code = ("import sys, tlsgate_keystores.plugin; "
            "print(sorted(m for m in ('jks', 'pyasn1', 'Cryptodome', 'tlsgate_keystores.p12_codec') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_contract_suite_accepts_the_declarations(registry: Any) -> None:
    from tlsgate_testing.contract import check_declaration

    for name in ("p12", "jks", "pem"):
        assert check_declaration(registry, registry.endpoint_types[name]) == []
