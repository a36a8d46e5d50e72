"""The ``tlsgate`` command line: a thin layer over :mod:`tlsgate.api`.

Exit status: 0 done; 2 invalid input (one line naming the option and the rule); 1 the operation
failed (with the reason). Tracebacks only with ``TLSGATE_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys

from ..errors import TlsgateError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tlsgate`` script."""
    from .. import early

    args = sys.argv[1:] if argv is None else argv
    early.start_for_cli(args)  # `tls discover NAME`: its driver's slow first command, started now
    try:
        return _main(args)
    finally:
        early.end()


def _main(args: list[str]) -> int:
    from .app import build_app

    try:
        _check_endpoint_type(args)
        args = _bare_switches(args)
        # standalone mode: typer reports usage errors itself (exit 2) and exits via SystemExit
        build_app()(args=args, prog_name="tlsgate")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except TlsgateError as exc:
        if os.environ.get("TLSGATE_DEBUG"):
            raise
        from .output import escape

        print(f"error: {escape(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if os.environ.get("TLSGATE_DEBUG"):
            raise
        print(f"error: internal error: {type(exc).__name__}: {exc} (TLSGATE_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1
    return 0


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
