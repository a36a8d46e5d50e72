"""The ``tlsgate`` command line: a thin layer over :mod:`tlsgate.api`.

Exit status: 0 done; 2 invalid input (one line naming the option and the rule); 1 the operation
failed (with the reason). Tracebacks only with ``TLSGATE_DEBUG=1``.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, TextIO

from ..errors import TlsgateError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tlsgate`` script."""
    from .. import early

    args = sys.argv[1:] if argv is None else argv
    early.start_for_cli(args)  # `tls discover NAME`: its driver's slow first command, started now
    if _one_discovery(args):
        # the process ends with the command, which disables the cyclic collector anyway (see
        # tls_discover): from the start, its imports make ~50 young collections (~2% of the run)
        import gc

        gc.disable()
    try:
        return _json_or_plain(args)
    finally:
        early.end()


def _one_discovery(args: list[str]) -> bool:
    """``tls discover NAME [--json]``: one endpoint, in this process (not a job)."""
    rest = [a for a in args[2:] if a != "--json"]
    return args[:2] == ["tls", "discover"] and len(rest) == 1 and not rest[0].startswith("-")


def _json_or_plain(args: list[str]) -> int:
    # ``--json`` (before a ``--`` that ends the options): a failure is one JSON document on
    # stdout too, {"error": ..., "exit_code": N}, unless the command already wrote its own
    if "--json" not in (args[: args.index("--")] if "--" in args else args):
        return _main(args, json_mode=False)
    stdout = sys.stdout
    sys.stdout = _Recording(stdout)  # type: ignore[assignment]
    try:
        return _main(args, json_mode=True)
    finally:
        sys.stdout = stdout


def _main(args: list[str], *, json_mode: bool) -> int:
    try:
        code, message = _run(args)
    except TlsgateError as exc:
        if os.environ.get("TLSGATE_DEBUG"):
            raise
        from .output import escape

        code, message = exc.exit_code, escape(str(exc))
        print(f"error: {message}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code, message = 130, "interrupted"
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if os.environ.get("TLSGATE_DEBUG"):
            raise
        message = f"internal error: {type(exc).__name__}: {exc} (TLSGATE_DEBUG=1 shows the traceback)"
        print(f"error: {message}", file=sys.stderr)
        code = 1
    if code and json_mode and not getattr(sys.stdout, "used", True):  # nothing of the command's own
        from .output import emit_json

        emit_json({"error": message or f"exit status {code} (see standard error)", "exit_code": code})
    return code


class _Recording:
    """``sys.stdout`` under ``--json``: notes whether the command wrote anything (its own JSON
    document, by whichever writer), so that a failure adds an error document only to an empty stdout."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.used = False

    def write(self, text: str) -> int:
        self.used = self.used or bool(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _run(args: list[str]) -> tuple[int, str | None]:
    """Run the command: its exit status and, for a usage error, the parser's message."""
    import typer
    from typer._click.exceptions import ClickException, UsageError  # Typer 0.26+ vendors Click

    from .app import build_app

    _check_endpoint_type(args)
    args = _bare_switches(args)
    _missing_values(args)
    try:
        # not standalone: the parser's errors come here (their message goes into --json's
        # document); a typer.Exit(N) comes back as N, a normal end as the command's None
        returned = build_app()(args=args, prog_name="tlsgate", standalone_mode=False)
    except ClickException as exc:
        if isinstance(exc, UsageError) and exc.message.startswith("Got unexpected extra argument"):
            # click lists the words, and a stray word is often half of an unquoted password
            exc.message = ("Got unexpected extra argument(s) (not shown: one may be part of a secret; quote a "
                           "value that holds spaces)")
        exc.show()
        return exc.exit_code, exc.format_message()
    except typer.Abort:
        print("Aborted!", file=sys.stderr)
        return 1, "aborted"
    except typer.Exit as exc:  # typer.Exit raised outside the command's own invoke
        return exc.exit_code, None
    except SystemExit as exc:
        return (exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)), None
    return (returned if isinstance(returned, int) and not isinstance(returned, bool) else 0), None


#: an option spelling (``--user``, ``--ssh-key-path``): as the value of another option, it is the
#: next option, the value having been left out
_FLAG = re.compile(r"--[A-Za-z][A-Za-z0-9_-]*")
#: ``tls add`` / ``tls set`` flags that take no value
_NO_VALUE = frozenset({"--json", "--help", "-h"})


def _missing_values(args: list[str]) -> None:
    """``tls add|set ... --user --password S``: click would take ``--password`` as the user name
    (and then print the password as an unexpected argument); say that ``--user`` has no value."""
    if len(args) < 3 or args[0] != "tls" or args[1] not in ("add", "set"):
        return
    from ..errors import ValidationError

    for i in range(3, len(args) - 1):
        arg, following = args[i], args[i + 1]
        if arg == "--":
            return
        if arg.startswith("--") and "=" not in arg and arg not in _NO_VALUE and _FLAG.fullmatch(following):
            raise ValidationError(f"needs a value ({following} is the next option)", option=arg)
    if args[1] == "add":
        _given_twice(args)


def _given_twice(args: list[str]) -> None:
    """``tls add T ... --name a ... --name b``: click keeps the last value; refuse it as ``tls set``
    does (a declared repeatable option such as ``--ssh_jump`` may repeat)."""
    from ..declarations import declarations
    from ..errors import ValidationError

    decl = declarations()
    etype = decl.endpoint_types.get(args[2])
    if etype is None:
        return
    repeatable = {spec.flag for spec in etype.options if spec.repeat}
    for ctype in etype.connection_types:
        declared = decl.connection_types.get(ctype)
        repeatable |= {spec.flag for spec in (declared.options if declared else ()) if spec.repeat}
    seen: set[str] = set()
    for arg in args[3:]:
        if arg == "--":
            return
        if not _FLAG.fullmatch(arg.split("=", 1)[0]) or arg in _NO_VALUE:
            continue
        flag = "--" + arg.split("=", 1)[0][2:].replace("-", "_")
        if flag in seen and flag not in repeatable:
            raise ValidationError("given twice", option=flag)
        seen.add(flag)


def _check_endpoint_type(args: list[str]) -> None:
    """``tls add X`` for a type no plugin serves: say which types are installed (or that none are)."""
    if len(args) >= 3 and args[:2] == ["tls", "add"] and not args[2].startswith("-"):
        from ..declarations import declarations
        from ..errors import ValidationError

        types = sorted(declarations().endpoint_types)
        if args[2] not in types:
            if not types:
                raise ValidationError(
                    f"unknown endpoint type {args[2]!r}: no endpoint types are installed "
                    "(install a plugin such as tlsgate-keystores)"
                )
            raise ValidationError(f"unknown endpoint type {args[2]!r} (installed: {', '.join(types)})")


def _bare_switches(args: list[str]) -> list[str]:
    """``tls add|set ... --sudo``: a yes/no option of a connection type may be given bare (it
    means ``--sudo true``), as operators write it; ``--sudo false`` still works. (Typer has no
    optional-value options, so the bare form is completed here.)"""
    if len(args) < 2 or args[0] != "tls" or args[1] not in ("add", "set"):
        return args
    from ..declarations import declarations

    switches = {spellings for ct in declarations().connection_types.values()
                for spec in ct.options if spec.type is bool
                for spellings in (spec.flag, spec.flag.replace("_", "-"))}
    out: list[str] = []
    for i, arg in enumerate(args):
        out.append(arg)
        following = args[i + 1] if i + 1 < len(args) else None
        if arg in switches and (following is None or following.startswith("-")):
            out.append("true")
    return out


def run() -> None:
    sys.exit(main())
