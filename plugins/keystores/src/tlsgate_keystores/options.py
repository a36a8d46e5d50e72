"""The p12, jks and pem endpoint types and their options (the reference document's flags).

PEM adds two optional flags that the reference document's command form does not have (it has no
password for a PEM file at all): ``--key_path``, a separate key file, and ``--key_password``, the
passphrase of an encrypted key. All three types add ``--script_sudo`` (run the scripts through the
ssh transport's sudo). All are optional, so every reference command form still works.
"""

from __future__ import annotations

import attrs
from tlsgate.plugin import EndpointType, Secret, option

#: The reference document's connection types for p12, jks and pem, in its order.
CONNECTION_TYPES = ("local", "ssh", "ssh_windows", "winrm_http", "winrm_https", "winrm_https_insecure")
LOCAL_PLATFORMS = ("windows", "linux")
_PATH_HELP = "The path to the keystore or certificate file."
_INSTALL_HELP = "The path to the install script (run with the new entry's alias as its argument)."
_RESTART_HELP = "The path to the restart script (run by tls restart)."
_SCRIPT_SUDO_HELP = ("Run the install and restart scripts as root through sudo (with the ssh connection's "
                     "--sudo; as the login account otherwise).")


@attrs.frozen
class P12Options:
    path: str = option(help=_PATH_HELP, required=True, min_len=1, max_len=4096, metavar="<file-path>")
    store_password: Secret = option(
        help="The keystore password.", required=True, secret=True, min_len=1, metavar="<password>"
    )
    install_script: str | None = option(
        help=_INSTALL_HELP, min_len=1, max_len=4096, metavar="<custom-install-script-path>"
    )
    restart_script: str | None = option(
        help=_RESTART_HELP, min_len=1, max_len=4096, metavar="<custom-restart-script-path>"
    )
    is_legacy: bool = option(
        help="Specifies which password-based encryption (PBE) scheme is used to encrypt the PKCS#8 private key "
        "inside the PKCS#12 ShroudedKeyBag: true = old PKCS#12 legacy PBE (SHA-1 + 3DES, HMAC-SHA1 MAC: old Java, "
        "Windows Server 2016); false (recommended) = modern PKCS#5 PBES2 (PBKDF2-SHA256 + AES-256-CBC, "
        "HMAC-SHA256 MAC). Defaults to false.",
        default=False,
        metavar="<true-or-false>",
    )
    script_sudo: bool = option(help=_SCRIPT_SUDO_HELP, default=False, metavar="<true-or-false>")


@attrs.frozen
class JksOptions:
    path: str = option(help=_PATH_HELP, required=True, min_len=1, max_len=4096, metavar="<file-path>")
    store_password: Secret = option(
        help="The keystore password.", required=True, secret=True, min_len=1, metavar="<password>"
    )
    install_script: str | None = option(
        help=_INSTALL_HELP, min_len=1, max_len=4096, metavar="<custom-install-script-path>"
    )
    restart_script: str | None = option(
        help=_RESTART_HELP, min_len=1, max_len=4096, metavar="<custom-restart-script-path>"
    )
    script_sudo: bool = option(help=_SCRIPT_SUDO_HELP, default=False, metavar="<true-or-false>")


@attrs.frozen
class PemOptions:
    path: str = option(help="The path to the file.", required=True, min_len=1, max_len=4096, metavar="<file-path>")
    install_script: str | None = option(
        help=_INSTALL_HELP, min_len=1, max_len=4096, metavar="<custom-install-script-path>"
    )
    restart_script: str | None = option(
        help=_RESTART_HELP, min_len=1, max_len=4096, metavar="<custom-restart-script-path>"
    )
    key_path: str | None = option(
        help="A separate private key file (default: the key is in the --path file).",
        min_len=1, max_len=4096, metavar="<key-file-path>",
    )
    key_password: Secret | None = option(
        help="The passphrase of the encrypted private key; the new key is written encrypted with it.",
        secret=True, min_len=1, metavar="<key-password>",
    )
    script_sudo: bool = option(help=_SCRIPT_SUDO_HELP, default=False, metavar="<true-or-false>")


OPTIONS = {"p12": P12Options, "jks": JksOptions, "pem": PemOptions}


def endpoint_types() -> list[EndpointType]:
    described = {
        "p12": "PKCS#12 keystore file (.p12, .pfx)",
        "jks": "Java keystore file (JKS; a PKCS#12 file behind a .jks name is kept PKCS#12)",
        "pem": "PEM file: certificate, chain and private key (or a separate key file)",
    }
    vendors = {"p12": "PKCS#12", "jks": "JKS", "pem": "PEM"}
    return [
        EndpointType(
            name=name,
            description=described[name],
            connection_types=CONNECTION_TYPES,
            local_platforms=LOCAL_PLATFORMS,
            options=OPTIONS[name],
            needs_restart=False,
            vendor=vendors[name],
        )
        for name in ("p12", "jks", "pem")
    ]
