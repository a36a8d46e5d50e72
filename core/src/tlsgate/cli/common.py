"""What every command module shares: the context settings, ``--json``, the endpoint argument,
the gateway, and reading secrets and certificate files from the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

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
# the install policy of tls install and cert deploy (issue 14)
ApplyPendingOpt = Annotated[bool, typer.Option(
    "--apply_pending", "--apply-pending",
    help="Go ahead although the running server has not loaded some of its configuration files "
         "(the reload/restart applies them too).")]
AllowNameMismatchOpt = Annotated[bool, typer.Option(
    "--allow_name_mismatch", "--allow-name-mismatch",
    help="Install on nodes whose names the certificate does not all cover.")]


def gateway() -> Gateway:
    from ..api import Gateway

    return Gateway()


#: Key in the click context's ``meta`` (shared by every nested context of one invocation): set
#: once an option has read standard input, so a second ``-`` in the same command is refused.
#: It lives in the context, not in a module global, so each ``main()`` call starts afresh.
STDIN_READ = "tlsgate.stdin_read"


def read_secret(ctx: typer.Context, value: str | None, flag: str) -> Secret | None:
    """A secret option's value; '-' reads one line from standard input (once per command)."""
    if value is None:
        return None
    if value == "-":
        if ctx.meta.get(STDIN_READ):
            raise ValidationError(
                f"only one option per command can read from standard input ({ctx.meta[STDIN_READ]} already did)",
                option=flag)
        ctx.meta[STDIN_READ] = flag
        line = sys.stdin.readline()
        if not line:
            raise ValidationError("'-' given but standard input is empty", option=flag)
        return Secret(line.rstrip("\r\n"))
    return Secret(value)


def read_pem_inputs(ctx: typer.Context, cert: Path | None, key: Path | None, chain: Path | None, pfx: Path | None,
                    pfx_password: str | None, key_password: str | None) -> CertificateBundle:
    from ..bundle import CertificateBundle

    if pfx is not None:
        if cert or key or chain:
            raise ValidationError("give either --pfx or --cert/--key/--chain, not both", option="--pfx")
        return CertificateBundle.from_pfx_file(pfx, read_secret(ctx, pfx_password, "--pfx_password"))
    if cert is None or key is None:
        raise ValidationError("is required (or give --pfx)", option="--cert" if cert is None else "--key")
    return CertificateBundle.from_pem_files(cert, key, chain, key_password=read_secret(ctx, key_password, "--key_password"))


def parse_set_args(ctx: typer.Context, gw: Gateway, ref: str, args: list[str]) -> dict[str, Any]:
    """``--option value`` / ``--option=value`` pairs of ``tls set`` against the options the
    endpoint's type and transport declare (and the connection flags); secret ones read '-' from
    standard input. Both ``--store_password`` and ``--store-password`` spellings are accepted."""
    from ..options import option_specs

    endpoint = gw.endpoint(ref)
    etype = gw.endpoint_type(endpoint.type)
    ctype = gw.registry.connection_types.get(endpoint.connection.type)
    specs = (*option_specs(etype.options), *option_specs(ctype.options if ctype else None))
    secret = {"password", "ssh_key_password"} | {s.name for s in specs if s.secret}
    repeat = {s.name: s.repeat for s in specs if s.repeat}
    changes: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise ValidationError(f"unexpected argument {arg!r}: give --option value pairs")
        name, eq, value = arg[2:].partition("=")
        name = name.replace("-", "_")
        if not eq:
            if i + 1 >= len(args):
                raise ValidationError("needs a value", option=f"--{name}")
            i += 1
            value = args[i]
        if name in changes and name in repeat:
            changes[name] += repeat[name] + value  # as the flag's own joined form
        elif name in changes:
            raise ValidationError("given twice", option=f"--{name}")
        else:
            changes[name] = read_secret(ctx, value, f"--{name}") if name in secret else value
        i += 1
    return changes
