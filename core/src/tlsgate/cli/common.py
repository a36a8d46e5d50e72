"""What every command module shares: the context settings, ``--json``, the endpoint argument,
the gateway, and reading secrets and certificate files from the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..errors import ValidationError
from ..secret import Secret

if TYPE_CHECKING:
    from ..api import Gateway
    from ..bundle import CertificateBundle

CONTEXT = {"help_option_names": ["-h", "--help"]}

Ref = Annotated[str, typer.Argument(help="Endpoint name or instance ID.", metavar="ENDPOINT")]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

# the certificate inputs of tls install and cert deploy
CertFileOpt = Annotated[Optional[Path], typer.Option("--cert", help="Certificate (PEM or DER); may hold the chain.")]  # noqa: UP045
KeyFileOpt = Annotated[Optional[Path], typer.Option("--key", help="Private key (PEM or DER).")]  # noqa: UP045
ChainFileOpt = Annotated[Optional[Path], typer.Option("--chain", help="Intermediate certificates (PEM).")]  # noqa: UP045
KeyPasswordOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--key_password", help="Password of an encrypted --key ('-': stdin).")]
PfxOpt = Annotated[Optional[Path], typer.Option("--pfx", help="PKCS#12 file with key, certificate and chain.")]  # noqa: UP045
PfxPasswordOpt = Annotated[Optional[str], typer.Option("--pfx_password", help="Password of --pfx ('-': stdin).")]  # noqa: UP045


def gateway() -> Gateway:
    from ..api import Gateway

    return Gateway()


_stdin_used = False


def read_secret(value: str | None, flag: str) -> Secret | None:
    """A secret option's value; '-' reads one line from standard input (once per command)."""
    global _stdin_used
    if value is None:
        return None
    if value == "-":
        if _stdin_used:
            raise ValidationError("only one option per command can read from standard input", option=flag)
        _stdin_used = True
        line = sys.stdin.readline()
        if not line:
            raise ValidationError("'-' given but standard input is empty", option=flag)
        return Secret(line.rstrip("\r\n"))
    return Secret(value)



def read_pem_inputs(cert: Path | None, key: Path | None, chain: Path | None, pfx: Path | None,
                    pfx_password: str | None, key_password: str | None) -> CertificateBundle:
    from ..bundle import CertificateBundle

    if pfx is not None:
        if cert or key or chain:
            raise ValidationError("give either --pfx or --cert/--key/--chain, not both", option="--pfx")
        return CertificateBundle.from_pfx_file(pfx, read_secret(pfx_password, "--pfx_password"))
    if cert is None or key is None:
        raise ValidationError("is required (or give --pfx)", option="--cert" if cert is None else "--key")
    return CertificateBundle.from_pem_files(cert, key, chain, key_password=read_secret(key_password, "--key_password"))
