"""The vault credential store against a real OpenBao (HTTPS with a test CA, KV v2, AppRole), and
an ssh connection made with credentials resolved from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from tlsgate import Credentials, NotFoundError, OperationError, Secret
from tlsgate.credstores.vault import VAULT, VaultOptions, VaultStore
from tlsgate.registry import get_registry
from tlsgate.transports import ssh
from tlsgate_testing.fixtures_core import free_port
from tlsgate_testing.openbao import OpenBaoServer
from tlsgate_testing.sshd import SshdServer

from .conftest import ssh_endpoint

pytestmark = pytest.mark.slow


def token_store(bao: OpenBaoServer, token: str | None = None, **kw: object) -> VaultStore:
    opts = VaultOptions(url=bao.url, token=Secret(token or bao.reader_token), ca_bundle=bao.ca_bundle, **kw)  # type: ignore[arg-type]
    return VaultStore("corp-vault", opts)


def approle_store(bao: OpenBaoServer, role_id: str | None = None, secret_id: str | None = None) -> VaultStore:
    opts = VaultOptions(url=bao.url, role_id=role_id or bao.role_id, secret_id=Secret(secret_id or bao.secret_id),
                        ca_bundle=bao.ca_bundle)
    return VaultStore("corp-vault", opts)


def assert_no_secret(message: str, bao: OpenBaoServer, *extra: str) -> None:
    for secret in (bao.root_token, bao.reader_token, bao.secret_id, bao.denied_secret_id, *extra):
        assert secret not in message


def test_vault_is_a_registered_credential_store(isolated_home: Path) -> None:
    assert get_registry(reload=True).credential_store("vault") is VAULT


def test_get_with_token_and_with_approle(openbao: OpenBaoServer) -> None:
    openbao.put("ssh/web1", {"username": "deploy", "password": "p@ss w;rd$(x)", "note": "ignored"})
    expected = {"user": "deploy", "password": "p@ss w;rd$(x)"}
    assert token_store(openbao).get("ssh/web1") == expected
    assert approle_store(openbao).get("ssh/web1") == expected
    assert token_store(openbao).get("/secret/data/ssh/web1") == expected  # the API path form


def test_latest_version_is_read(openbao: OpenBaoServer) -> None:
    openbao.put("ssh/rotated", {"user": "u", "password": "old"})
    openbao.put("ssh/rotated", {"user": "u", "password": "new"})
    assert token_store(openbao).get("ssh/rotated")["password"] == "new"


def test_test_reports_what_answered(openbao: OpenBaoServer) -> None:
    line = approle_store(openbao).test()
    assert "\n" not in line and "authenticated by AppRole" in line and "tlsgate-read" in line
    assert "authenticated by token" in token_store(openbao).test()
    assert_no_secret(line, openbao)


def test_not_found(openbao: OpenBaoServer) -> None:
    with pytest.raises(NotFoundError, match="--store_cred_id: no secret 'ssh/nope'"):
        token_store(openbao).get("ssh/nope")


def test_secret_without_credential_keys(openbao: OpenBaoServer) -> None:
    openbao.put("ssh/empty", {"colour": "blue"})
    with pytest.raises(OperationError, match=r"holds none of the keys .* \(it has: colour\)"):
        token_store(openbao).get("ssh/empty")


def test_permission_denied(openbao: OpenBaoServer) -> None:
    openbao.put("ssh/web1", {"user": "u", "password": "pw-denied-test"})
    denied = approle_store(openbao, openbao.denied_role_id, openbao.denied_secret_id)
    with pytest.raises(OperationError, match="permission denied for read of 'ssh/web1'") as err:
        denied.get("ssh/web1")
    assert_no_secret(str(err.value), openbao, "pw-denied-test")


def test_bad_token_and_bad_secret_id(openbao: OpenBaoServer) -> None:
    bogus = "s.NotARealToken123"
    with pytest.raises(OperationError, match="the token is invalid or expired") as err:
        token_store(openbao, bogus).get("ssh/web1")
    assert bogus not in str(err.value)
    with pytest.raises(OperationError, match="AppRole login refused") as err:
        approle_store(openbao, secret_id="wrong-secret-id").get("ssh/web1")
    assert "wrong-secret-id" not in str(err.value)


def test_tls_is_verified(openbao: OpenBaoServer, tmp_path: Path) -> None:
    system_store = VaultStore("corp-vault", VaultOptions(url=openbao.url, token=Secret(openbao.reader_token)))
    with pytest.raises(OperationError, match=r"TLS verification of the server failed .*--ca_bundle"):
        system_store.get("ssh/web1")
    other_ca = tmp_path / "other.pem"
    from cryptography.hazmat.primitives.serialization import Encoding
    from tlsgate_testing.certs import TestCA

    other_ca.write_bytes(TestCA("Someone Else").root.public_bytes(Encoding.PEM))
    wrong = VaultStore("corp-vault", VaultOptions(url=openbao.url, token=Secret(openbao.reader_token),
                                                  ca_bundle=str(other_ca)))
    with pytest.raises(OperationError, match="TLS verification of the server failed \\(check --ca_bundle\\)"):
        wrong.test()


def test_unreachable(openbao: OpenBaoServer) -> None:
    store = VaultStore("corp-vault", VaultOptions(url=f"https://127.0.0.1:{free_port()}",
                                                  token=Secret(openbao.reader_token), ca_bundle=openbao.ca_bundle))
    with pytest.raises(OperationError, match="unreachable \\(connection refused\\)") as err:
        store.get("ssh/web1")
    assert_no_secret(str(err.value), openbao)


def test_no_auth_configured(openbao: OpenBaoServer) -> None:
    store = VaultStore("corp-vault", VaultOptions(url=openbao.url, ca_bundle=openbao.ca_bundle))
    with pytest.raises(OperationError, match="give --token, or --role_id with --secret_id"):
        store.get("ssh/web1")


@pytest.mark.parametrize("auth", ["token", "approle"])
def test_ssh_password_from_openbao(openbao: OpenBaoServer, trusted: SshdServer, auth: str) -> None:
    openbao.put("ssh/sshd-password", {"user": trusted.user, "password": trusted.password})
    store = token_store(openbao) if auth == "token" else approle_store(openbao)
    secret = store.get("ssh/sshd-password")
    creds = Credentials(user=secret["user"], password=Secret(secret["password"]))
    with ssh.connect_ssh(ssh_endpoint(trusted, user=None), creds) as conn:
        assert conn.run(["id", "-un"]).stdout.strip() == trusted.user


def test_ssh_key_with_passphrase_from_openbao(openbao: OpenBaoServer, trusted: SshdServer) -> None:
    key = trusted.keys["rsa_pem"]
    openbao.put("ssh/sshd-key", {"user": trusted.user, "ssh_key": key.text, "ssh_key_password": key.passphrase or ""})
    secret = approle_store(openbao).get("ssh/sshd-key")
    creds = Credentials(user=secret["user"], ssh_key=Secret(secret["ssh_key"]),
                        ssh_key_password=Secret(secret["ssh_key_password"]))
    with ssh.connect_ssh(ssh_endpoint(trusted), creds) as conn:
        assert conn.run(["id", "-un"]).stdout.strip() == trusted.user
