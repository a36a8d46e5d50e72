"""The lifecycle commands' input rules through the real CLI (no CA needed): exit 2 with one line
naming the option; and no CLI call pays for importing acme, josepy or dnspython."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tlsgate_testing.lifecycle import tg


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory, test_ca):  # type: ignore[no-untyped-def]
    """One inventory for the module (every case only reads it)."""
    tmp_path = tmp_path_factory.mktemp("rules")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLSGATE_HOME", str(tmp_path / "home"))
        mp.delenv("TLSGATE_MASTER_KEY", raising=False)
        yield _setup(tmp_path, test_ca)


def _setup(tmp_path, test_ca):  # type: ignore[no-untyped-def]
    leaf = test_ca.issue("store.test")
    (tmp_path / "x.pem").write_bytes(leaf.cert_pem + leaf.key_pem)
    (tmp_path / "nginx.conf").write_text("events {}\nhttp {}\n")
    tg("tls", "add", "nginx", "--name", "web", "--connection_type", "local", "--nginx_config_path",
       str(tmp_path / "nginx.conf"))
    tg("tls", "add", "pem", "--name", "store", "--connection_type", "local", "--path", str(tmp_path / "x.pem"))
    tg("dns", "add", "ns", "rfc2136", "--server", "127.0.0.1", "--zone", "example.test")
    (tmp_path / "notpem").write_text("hello\n")
    return tmp_path


@pytest.mark.parametrize("args, line", [
    (["cert", "request", "--domain", "a.test", "--via", "web"], "error: --acme: is required"),
    (["cert", "request", "--acme", "x", "--domain", "a.test", "--domain", "A.test.", "--via", "web"],
     "error: --domain: a.test is given twice"),
    (["cert", "request", "--acme", "x", "--domain", "*.a.test", "--via", "web"],
     "error: --domain: *.a.test: a wildcard needs --challenge dns-01"),
    (["cert", "request", "--acme", "x", "--domain", "a.test", "--key_type", "dsa"],
     "error: --key_type: must be one of: ec256, ec384, rsa2048, rsa3072, rsa4096"),
    (["cert", "request", "--acme", "x", "--domain", "a.test", "--challenge", "tls-alpn-01"],
     "error: --challenge: must be one of: http-01, dns-01"),
    (["cert", "request", "--acme", "x", "--domain", "a.test"], "error: --via: is required with --challenge http-01"),
    (["cert", "request", "--acme", "x", "--domain", "a.test", "--via", "store"],
     "error: --via: endpoint 'store' is of type pem, which cannot answer http-01 challenges"),
    (["cert", "request", "--acme", "x", "--domain", "a.test", "--challenge", "dns-01"],
     "error: --dns: is required with --challenge dns-01"),
    (["cert", "request", "--acme", "x", "--domain", "a.test", "--challenge", "dns-01", "--dns", "ns", "--via", "web"],
     "error: --via: is only used with --challenge http-01"),
    (["cert", "request", "--acme", "x", "--domain", "a.test", "--via", "web", "--dns", "ns"],
     "error: --dns: is only used with --challenge dns-01"),
    (["cert", "request", "--acme", "x", "--domain", "a.test", "--via", "web", "--http_port", "0"],
     "error: --http_port: must be an integer between 1 and 65535"),
    (["cert", "request", "--acme", "x", "--domain", "a.test", "--via", "web"],
     "error: --acme: no ACME account named 'x' (see: tlsgate acme list)"),
    (["cert", "request", "--acme", "x", "--domain", "a.test", "--via", "web", "--department", "D"],
     "error: --department: needs --org"),
    (["acme", "add", "a", "--email", "e@x.test"], "error: --directory: is required"),
    (["acme", "add", "a", "--directory", "ftp://x"], "error: --directory: must be an http(s) URL"),
    (["acme", "add", "a", "--directory", "https://127.0.0.1:1/dir", "--email", "nope"],
     "error: --email: must be an e-mail address"),
    (["acme", "add", "a", "--directory", "https://127.0.0.1:1/dir", "--eab_kid", "k"],
     "error: --eab_hmac_key: --eab_kid and --eab_hmac_key go together"),
    (["acme", "add", "a", "--directory", "https://127.0.0.1:1/dir", "--ca_bundle", "{tmp}/notpem"],
     "error: --ca_bundle: {tmp}/notpem: not a PEM file of certificates"),
    (["acme", "show", "nope"], "error: --acme: no ACME account named 'nope'"),
    (["dns", "add", "d", "nosuch"], "error: KIND: unknown DNS provider kind 'nosuch' (installed: rfc2136)"),
    (["dns", "add", "d", "rfc2136", "--zone", "x.test"], "error: --server: is required"),
    (["dns", "add", "d", "rfc2136", "--server", "h", "--zone", "x.test", "--tsig_key_name", "k"],
     "error: --tsig_secret: --tsig_key_name and --tsig_secret go together"),
    (["dns", "add", "d", "rfc2136", "--server", "h", "--zone", "x.test", "--tsig_algorithm", "rot13"],
     "error: --tsig_algorithm: must be one of: hmac-sha256"),
    (["dns", "add", "ns", "rfc2136", "--server", "h", "--zone", "x.test"],
     "error: NAME: a DNS provider named 'ns' already exists"),
    (["dns", "add", "d", "rfc2136", "--server", "127.0.0.1:5353", "--zone", "x.test"],
     "error: --server: '127.0.0.1:5353' is not a host name or an IP address (give the port with --port)"),
    (["dns", "add", "d", "rfc2136", "--server", "ns 1.example", "--zone", "x.test"],
     "error: --server: 'ns 1.example' is not a host name"),
    (["dns", "add", "d", "rfc2136", "--server", "h", "--zone", "bad zone.test"],
     "error: --zone: 'bad zone.test' is not a DNS name"),
    (["dns", "add", "d", "rfc2136", "--server", "h", "--zone", "x.test", "--tsig_key_name", "my key",
      "--tsig_secret", "AAAA"], "error: --tsig_key_name: 'my key' is not a DNS name"),
    (["cert", "renew", "--cert", "999"], "error: --cert: no certificate with ID 999"),
    (["cert", "renew", "--days", "-1"], "error: --days: must be between 0 and 3650"),
    (["cert", "expiring", "--days", "-1"], "error: --days: must be 0 or more"),
    (["cert", "revoke", "1", "--reason", "bored"], "error: --reason: must be one of: unspecified, keyCompromise"),
])
def test_invalid_input_is_one_line_exit_2(endpoints, args: list[str], line: str) -> None:
    args = [a.replace("{tmp}", str(endpoints)) for a in args]
    res = tg(*args, check=False)
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith(line.replace("{tmp}", str(endpoints)))


def test_dashed_spellings_are_accepted(endpoints) -> None:  # type: ignore[no-untyped-def]
    res = tg("cert", "request", "--acme", "x", "--domain", "a.test", "--via", "web", "--http-port", "0",
             "--key-type", "ec256", check=False)
    assert res.returncode == 2 and "--http_port: must be an integer" in res.stderr
    assert tg("cert", "renew", "--dry-run", "--json").returncode == 0
    assert "--dry_run" in tg("cert", "renew", "--help").stdout


def test_no_cli_call_imports_the_acme_stack(tlsgate_home) -> None:  # type: ignore[no-untyped-def]
    code = ("import sys; from tlsgate.cli import main; rc = main(['cert', 'list']); "
            "heavy = [m for m in ('acme', 'josepy', 'dns', 'dns.query') if m in sys.modules]; "
            "print(rc, heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip().endswith("0 []"), out
