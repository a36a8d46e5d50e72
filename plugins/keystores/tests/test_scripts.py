"""Install and restart scripts: argv only, after the write, root required for local endpoints."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

import pytest
from tlsgate import OperationError
from tlsgate_keystores.install import InstallScriptFailed
from tlsgate_testing.certs import Issued
from tlsgate_testing.connections import LocalConnection

PW = "changeit"
NASTY_ALIAS = "it's $(touch pwned); `id` \"x\" *"


def make_script(tmp_path: Path, name: str, body: str) -> Path:
    script = tmp_path / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def test_install_script_gets_the_alias_as_its_only_argument(driver: Any, p12_file: Path, tmp_path: Path,
                                                            leaf_b: Issued, kt: Any) -> None:
    out = tmp_path / "args"
    script = make_script(tmp_path, "install.sh", f"cd {tmp_path}\nprintf '%s\\n' \"$#\" \"$@\" > {out}\n"
                         "keytool -list -keystore \"$KS\" -storepass:env KS_TEST_PW >/dev/null 2>&1 || exit 9\n")
    ep = driver.endpoint("p12", p12_file, store_password=PW, install_script=str(script))
    os.environ["KS"], os.environ["KS_TEST_PW"] = str(p12_file), PW
    try:
        result = driver.install(ep, kt.bundle_of(leaf_b), alias=NASTY_ALIAS)
    finally:
        del os.environ["KS"], os.environ["KS_TEST_PW"]
    assert out.read_text() == f"1\n{NASTY_ALIAS}\n"
    assert not (tmp_path / "pwned").exists()
    assert result.messages[-1] == f"install script {script} exited 0"
    # the script ran after the entry was written: its keytool check (exit 9 otherwise) passed
    assert kt.keytool_list(p12_file, PW)[NASTY_ALIAS.lower()]["sha256"] == leaf_b.fingerprint


def test_failing_install_script_keeps_the_new_entry_and_says_so(driver: Any, p12_file: Path, tmp_path: Path,
                                                                leaf_b: Issued, kt: Any) -> None:
    script = make_script(tmp_path, "install.sh", "echo starting\necho 'reload failed: permission denied' >&2\nexit 3\n")
    ep = driver.endpoint("p12", p12_file, store_password=PW, install_script=str(script))
    with pytest.raises(InstallScriptFailed) as err:
        driver.install(ep, kt.bundle_of(leaf_b))
    message = str(err.value)
    assert "was updated (entry 'b.example.org')" in message
    assert "exited 3: reload failed: permission denied" in message
    assert err.value.exit_code == 1 and not err.value.rolled_back
    assert err.value.result.verified and err.value.result.alias == "b.example.org"
    assert kt.keytool_list(p12_file, PW)["b.example.org"]["sha256"] == leaf_b.fingerprint


@pytest.mark.parametrize("problem", ["missing", "not-executable"])
def test_unusable_install_script_is_refused_before_any_change(driver: Any, p12_file: Path, tmp_path: Path,
                                                              leaf_b: Issued, kt: Any, problem: str) -> None:
    script = tmp_path / "install.sh"
    if problem == "not-executable":
        script.write_text("#!/bin/sh\nexit 0\n")
        script.chmod(0o644)
    ep = driver.endpoint("p12", p12_file, store_password=PW, install_script=str(script))
    before = kt.snapshot(p12_file)
    with pytest.raises(OperationError, match="--install_script"):
        driver.install(ep, kt.bundle_of(leaf_b))
    assert kt.snapshot(p12_file) == before


class NotAdmin(LocalConnection):
    """A local connection that reports a non-root user: the refusal path with root's file access.
    (The real non-root check, the process running as ``nobody``, is the runuser test below.)"""

    def is_admin(self) -> bool:
        return False


def test_local_script_without_root_is_refused_and_nothing_changes(driver: Any, p12_file: Path, tmp_path: Path,
                                                                  leaf_b: Issued, kt: Any) -> None:
    marker = tmp_path / "ran"
    script = make_script(tmp_path, "install.sh", f"touch {marker}\n")
    ep = driver.endpoint("p12", p12_file, store_password=PW, install_script=str(script), restart_script=str(script))
    before = kt.snapshot(p12_file)
    with pytest.raises(OperationError, match="local scripts must run as root or Administrator"):
        driver.install(ep, kt.bundle_of(leaf_b), connection=NotAdmin())
    with pytest.raises(OperationError, match="local scripts must run as root or Administrator"):
        driver.registry.restart(ep, NotAdmin())
    assert kt.snapshot(p12_file) == before and not marker.exists()


def test_real_non_root_user_is_refused(tmp_path: Path) -> None:
    """Run the driver as ``nobody`` (runuser). The venv's interpreter lives under /root, which
    nobody cannot enter, so the system python3 of the same minor version runs it with the venv's
    site-packages on PYTHONPATH. /bin/true is a script nobody can stat; the refusal comes before
    the keystore is opened, so the keystore path does not need to be readable."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to nobody")
    system_python = "/usr/bin/python3"
    probe = subprocess.run([system_python, "-c", "import sys; print(sys.version_info[:2])"],
                           capture_output=True, text=True, check=False)
    if probe.stdout.strip() != str(tuple(sys.version_info[:2])):
        pytest.skip("no system python3 of the venv's version for runuser")
    import tlsgate
    import tlsgate_keystores
    import tlsgate_testing

    paths = [sysconfig.get_paths()["purelib"], str(Path(tlsgate.__file__).parents[1]),
             str(Path(tlsgate_keystores.__file__).parents[1]), str(Path(tlsgate_testing.__file__).parents[1])]
    code = textwrap.dedent("""
        from tlsgate import CertificateBundle, ConnectionSpec, Endpoint, OperationError, Secret
        from tlsgate.registry import get_registry
        from tlsgate_testing.certs import TestCA
        from tlsgate_testing.connections import LocalConnection
        issued = TestCA().issue("x.example.org")
        bundle = CertificateBundle.from_pem(issued.cert_pem, issued.key_pem)
        reg = get_registry()
        opts = reg.endpoint_types["p12"].options(path="/nonexistent/x.p12", store_password=Secret("pw"),
                                                 install_script="/bin/true", restart_script="/bin/true")
        ep = Endpoint(name="k", type="p12", connection=ConnectionSpec("local"), options=opts)
        with LocalConnection() as conn:
            print("admin", conn.is_admin())
            for call in (lambda: reg.install(ep, conn, bundle, [], dry_run=False, alias=None),
                         lambda: reg.restart(ep, conn)):
                try:
                    call()
                    print("NOT REFUSED")
                except OperationError as exc:
                    print("refused:", exc)
    """)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join(paths), "HOME": "/nonexistent",
           "TLSGATE_LOAD_PLUGINS": "keystores"}  # the other plugins' src dirs are not on PYTHONPATH
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    proc = subprocess.run([runuser, "-u", "nobody", "--", system_python, "-c", code], capture_output=True,
                          text=True, env=env, cwd="/", timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "admin False"
    assert lines[1].startswith("refused: localhost: --install_script /bin/true: local scripts must run as root")
    assert lines[2].startswith("refused: localhost: --restart_script /bin/true: local scripts must run as root")


def test_restart_runs_the_restart_script_without_arguments(driver: Any, p12_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "restarted"
    script = make_script(tmp_path, "restart.sh", f"echo \"$#\" > {out}\n")
    ep = driver.endpoint("p12", p12_file, store_password=PW, restart_script=str(script))
    with LocalConnection() as conn:
        result = driver.registry.restart(ep, conn)
    assert result.restarted and out.read_text() == "0\n"
    failing = make_script(tmp_path, "fail.sh", "echo 'service did not come back' >&2\nexit 1\n")
    ep = driver.endpoint("p12", p12_file, store_password=PW, restart_script=str(failing))
    with LocalConnection() as conn, pytest.raises(OperationError, match="exited 1: service did not come back"):
        driver.registry.restart(ep, conn)


def test_restart_without_script(driver: Any, p12_file: Path) -> None:
    with LocalConnection() as conn:
        result = driver.registry.restart(driver.endpoint("p12", p12_file, store_password=PW), conn)
    assert not result.restarted and result.message == "no restart script configured"


def test_run_script_hook_passes_args_as_argv(driver: Any, p12_file: Path, tmp_path: Path) -> None:
    script = make_script(tmp_path, "s.sh", "printf '%s|' \"$@\"\necho oops >&2\nexit 4\n")
    ep = driver.endpoint("pem", p12_file)
    with LocalConnection() as conn:
        result = driver.registry.run_script(ep, conn, str(script), ["a b", "$(x)", ";"])
    assert (result.exit_code, result.stdout, result.stderr) == (4, "a b|$(x)|;|", "oops\n")
    assert result.args == ("a b", "$(x)", ";") and not result.ok
