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
    from .app import build_app

    args = sys.argv[1:] if argv is None else argv
    try:
        # standalone mode: typer reports usage errors itself (exit 2) and exits via SystemExit
        build_app()(args=args, prog_name="tlsgate")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except TlsgateError as exc:
        if os.environ.get("TLSGATE_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
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


def run() -> None:
    sys.exit(main())
