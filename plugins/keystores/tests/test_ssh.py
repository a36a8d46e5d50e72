"""The unchanged driver over the real sshd fixture, as the unprivileged test user (password login):
every read, write and script run goes through SSH/SFTP. keytool/openssl read the results back
(remote and local are the same machine here)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tlsgate import ConnectionSpec, Credentials, Endpoint, OperationError, Secret
from tlsgate_testing.certs import Issued
from tlsgate_testing.connections import ssh
from tlsgate_testing.sshd import SshdServer

pytestmark = pytest.mark.slow
PW = "changeit"


@pytest.fixture
def remote_dir(sshd: SshdServer, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh directory owned by the test user inside its workdir."""
    path = Path(sshd.user_path(f"ks-{request.node.name[:40]}"))
    path.mkdir()
    os.chown(path, sshd.uid, sshd.gid)
    yield path


def own(sshd: SshdServer, path: Path, mode: int = 0o600) -> Path:
    os.chown(path, sshd.uid, sshd.gid)
    path.chmod(mode)
    return path


@pytest.fixture
def connect(sshd: SshdServer, tlsgate_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # never read the real ~/.ssh/known_hosts
    ssh.trust_host_key(sshd.host, sshd.port, sshd.host_key_public)

    def open_for(endpoint: Endpoint) -> Any:
        return ssh.connect_ssh(endpoint, Credentials(user=sshd.user, password=Secret(sshd.password)))

    return open_for


def ssh_endpoint(registry: Any, sshd: SshdServer, type_: str, **options: Any) -> Endpoint:
    et = registry.endpoint_types[type_]
    spec = ConnectionSpec("ssh", host=sshd.host, port=sshd.port, user=sshd.user)
    return Endpoint(name="remote", type=type_, connection=spec, options=et.options(**options))


def test_p12_over_ssh_with_install_script(registry: Any, sshd: SshdServer, connect: Any, remote_dir: Path,
                                          leaf_a: Issued, leaf_b: Issued, kt: Any) -> None:
    store = remote_dir / "app.p12"
    store.write_bytes(leaf_a.pfx(PW))
    own(sshd, store, 0o640)
    script = remote_dir / "after install.sh"  # a space in the path: argv, not a shell string
    script.write_text(f"#!/bin/sh\nid -u > '{remote_dir}/who'\nprintf '%s\\n' \"$@\" > '{remote_dir}/args'\n")
    own(sshd, script, 0o755)
    ep = ssh_endpoint(registry, sshd, "p12", path=str(store), store_password=Secret(PW),
                      install_script=str(script), is_legacy=True)
    with connect(ep) as conn:
        assert [n.fingerprint for n in registry.discover_nodes(ep, conn)] == [leaf_a.fingerprint]
        plan = registry.install(ep, conn, kt.bundle_of(leaf_b), [], dry_run=True, alias="Web App")
        assert [s.action for s in plan.plan] == ["add-entry", "replace", "run"]
        result = registry.install(ep, conn, kt.bundle_of(leaf_b), [], dry_run=False, alias="Web App")
    assert result.verified and result.alias == "Web App"
    assert (remote_dir / "args").read_text() == "Web App\n"
    assert (remote_dir / "who").read_text().strip() == str(sshd.uid)  # ran as the remote user, no root needed
    st = store.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (sshd.uid, 0o640)
    assert "MAC: sha1" in kt.openssl_info(store, PW)
    listed = kt.keytool_list(store, PW)
    assert set(listed) == {"leaf", "web app"} and listed["web app"]["sha256"] == leaf_b.fingerprint


def test_jks_over_ssh_wrong_password_and_restart(registry: Any, sshd: SshdServer, connect: Any, remote_dir: Path,
                                                 leaf_a: Issued, leaf_b: Issued, kt: Any) -> None:
    from tlsgate_keystores import jks_codec, p12_codec

    content = p12_codec.load(leaf_a.pfx(PW), PW, decrypt_keys=True)
    content.format = "jks"
    store = remote_dir / "tomcat.jks"
    store.write_bytes(jks_codec.dump(content, PW))
    own(sshd, store)
    restart = remote_dir / "restart.sh"
    restart.write_text("#!/bin/sh\necho restarted\n")
    own(sshd, restart, 0o755)
    bad = ssh_endpoint(registry, sshd, "jks", path=str(store), store_password=Secret("nope-nope"))
    before = store.read_bytes()
    with connect(bad) as conn, pytest.raises(OperationError, match="wrong store password"):
        registry.install(bad, conn, kt.bundle_of(leaf_b), [], dry_run=False, alias=None)
    assert store.read_bytes() == before
    ep = ssh_endpoint(registry, sshd, "jks", path=str(store), store_password=Secret(PW), restart_script=str(restart))
    with connect(ep) as conn:
        registry.install(ep, conn, kt.bundle_of(leaf_b), [], dry_run=False, alias=None)
        assert registry.restart(ep, conn).restarted
    listed = kt.keytool_list(store, PW)
    assert set(listed) == {"leaf", "b.example.org"} and listed["leaf"]["store_type"] == "JKS"
