"""Edit planning without a server: insertions, key-in-certificate files, shared snippets,
variables, several pairs, and finding apachectl."""

from __future__ import annotations

import shutil

import pytest
from tlsgate import CertificateBundle, OperationError
from tlsgate.plugin import apply_edits
from tlsgate_apache.config import load
from tlsgate_apache.control import ApacheControl, RunConfig
from tlsgate_apache.edits import Paths, plan_edits
from tlsgate_testing.connections import LocalConnection

from .conftest import MemoryConnection

ROOT = "/srv/httpd"
PATHS = Paths(cert="/var/tlsgate-certs/n.crt", key="/var/tlsgate-certs/n.key", chain="/var/tlsgate-certs/n.chain.crt")


def setup(files: dict[str, str], **extra: object):  # type: ignore[no-untyped-def]
    conn = MemoryConnection({f"{ROOT}/{k}": v.encode() for k, v in files.items()})
    main = f"{ROOT}/httpd.conf"
    run = RunConfig(server_root=ROOT, main_file=main, modules={"ssl_module"}, includes=set(conn.files), **extra)  # type: ignore[arg-type]
    return conn, load(conn, run)


def edited(conn, config, chosen_lines, bundle) -> dict[str, str]:  # type: ignore[no-untyped-def]
    sections = [s for s in config.vhosts.values() if s.line in chosen_lines]
    edits = plan_edits(config, conn, sections, bundle, PATHS)
    return {f[len(ROOT) + 1:]: apply_edits(config.files[f], e).decode() for f, e in edits.items()}


@pytest.fixture(scope="module")
def bundle(test_ca) -> CertificateBundle:  # type: ignore[no-untyped-def]
    issued = test_ca.issue("x.test")
    return CertificateBundle.from_pem(issued.cert_pem, issued.key_pem, issued.chain_pem)


def test_key_inside_the_certificate_file_gets_its_own_directive(bundle) -> None:  # type: ignore[no-untyped-def]
    conn, config = setup({"httpd.conf": "<VirtualHost *:443>\r\n\tSSLEngine on\r\n\tSSLCertificateFile both.pem\r\n"
                                        "</VirtualHost>\r\n"})
    assert edited(conn, config, {1}, bundle) == {"httpd.conf": (
        "<VirtualHost *:443>\r\n\tSSLEngine on\r\n\tSSLCertificateFile /var/tlsgate-certs/n.crt\r\n"
        "\tSSLCertificateKeyFile /var/tlsgate-certs/n.key\r\n</VirtualHost>\r\n")}


def test_inheriting_vhost_at_end_of_file_without_newline(bundle) -> None:  # type: ignore[no-untyped-def]
    conn, config = setup({"httpd.conf": "SSLCertificateFile a.pem\n  <VirtualHost *:443>"
                                        "\n  SSLEngine on\n  </VirtualHost>"})
    out = edited(conn, config, {2}, bundle)["httpd.conf"]
    assert out == ("SSLCertificateFile a.pem\n  <VirtualHost *:443>\n"
                   "      SSLCertificateFile /var/tlsgate-certs/n.crt\n"
                   "      SSLCertificateKeyFile /var/tlsgate-certs/n.key\n  SSLEngine on\n  </VirtualHost>")


def test_shared_snippet_only_when_every_user_is_chosen(bundle) -> None:  # type: ignore[no-untyped-def]
    files = {
        "httpd.conf": "<VirtualHost *:443>\nInclude ssl.inc\n</VirtualHost>\n"
                      "<VirtualHost *:443>\nInclude ssl.inc\n</VirtualHost>\n",
        "ssl.inc": "SSLCertificateFile a.pem\nSSLCertificateKeyFile a.key\n",
    }
    conn, config = setup(files)
    with pytest.raises(OperationError, match=r"ssl.inc:1: SSLCertificateFile is shared with vhosts not chosen "
                                             r"\(/srv/httpd/httpd.conf:4\)"):
        edited(conn, config, {1}, bundle)
    assert edited(conn, config, {1, 4}, bundle) == {
        "ssl.inc": "SSLCertificateFile /var/tlsgate-certs/n.crt\nSSLCertificateKeyFile /var/tlsgate-certs/n.key\n"
    }


def test_variables_are_not_replaced(bundle) -> None:  # type: ignore[no-untyped-def]
    conn, config = setup({"httpd.conf": "<VirtualHost *:443>\nSSLCertificateFile ${CERTS}/a.pem\n"
                                        "SSLCertificateKeyFile a.key\n</VirtualHost>\n"}, defines={"CERTS": "/c"})
    assert config.resolve(conn, "${CERTS}/a.pem") == "/c/a.pem"
    with pytest.raises(OperationError, match="uses a variable"):
        edited(conn, config, {1}, bundle)


def test_of_two_pairs_the_one_with_the_same_key_type_is_replaced(test_ca, bundle) -> None:  # type: ignore[no-untyped-def]
    rsa = test_ca.issue("x.test", key_type="rsa")
    ec = test_ca.issue("x.test")
    conn, config = setup({"httpd.conf": "<VirtualHost *:443>\nSSLCertificateFile rsa.pem\nSSLCertificateKeyFile rsa.key\n"
                                        "SSLCertificateFile ec.pem\nSSLCertificateKeyFile ec.key\n</VirtualHost>\n"})
    conn.files[f"{ROOT}/rsa.pem"] = rsa.cert_pem
    conn.files[f"{ROOT}/ec.pem"] = ec.cert_pem
    out = edited(conn, config, {1}, bundle)["httpd.conf"]  # bundle's key is EC
    assert out == ("<VirtualHost *:443>\nSSLCertificateFile rsa.pem\nSSLCertificateKeyFile rsa.key\n"
                   f"SSLCertificateFile {PATHS.cert}\nSSLCertificateKeyFile {PATHS.key}\n</VirtualHost>\n")


def test_apachectl_is_found_when_not_given() -> None:
    found = shutil.which("apachectl") or shutil.which("apache2ctl") or shutil.which("httpd")
    if found is None:
        pytest.skip("no apachectl on this host")
    assert ApacheControl.find(LocalConnection(), None).apachectl == found
    assert ApacheControl.find(LocalConnection(), "/opt/x/apachectl").apachectl == "/opt/x/apachectl"


class RecordingConnection(MemoryConnection):
    """Answers as a systemd host with a loaded apache2.service would."""

    def __init__(self, systemd: bool) -> None:
        super().__init__({})
        self.systemd = systemd
        self.ran: list[tuple[str, ...]] = []

    def run(self, argv, **_: object):  # type: ignore[no-untyped-def,override]
        from tlsgate import CommandResult

        self.ran.append(tuple(argv))
        if argv[:2] == ["sh", "-c"] and "systemd" in argv[2]:
            return CommandResult(tuple(argv), 0 if self.systemd else 1)
        if argv[:2] == ["systemctl", "show"]:
            return CommandResult(tuple(argv), 0, "loaded\n" if argv[-1] == "apache2.service" else "not-found\n")
        return CommandResult(tuple(argv), 0)


@pytest.mark.parametrize(("systemd", "pid_file", "expected"), [
    (True, "/run/apache2/apache2.pid", ("systemctl", "start", "apache2.service")),
    (False, "/run/apache2/apache2.pid", ("/usr/sbin/apache2ctl", "-k", "start")),
    (True, "/srv/private/httpd.pid", ("/usr/sbin/apache2ctl", "-k", "start")),  # not the packaged instance
])
def test_start_uses_the_systemd_unit_of_the_packaged_instance(systemd, pid_file, expected) -> None:  # type: ignore[no-untyped-def]
    conn = RecordingConnection(systemd)
    ApacheControl(conn, "/usr/sbin/apache2ctl").start(RunConfig(server_root="/etc/apache2", pid_file=pid_file))
    assert conn.ran[-1] == expected
