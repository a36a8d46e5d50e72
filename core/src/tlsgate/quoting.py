"""Quoting for remote shells: the one place tlsgate turns data into command text.

POSIX: every argument becomes a single-quoted word (``shlex.quote``), so spaces, quotes, ``;``,
``$()``, backticks and newlines are data. PowerShell: scripts are fixed templates and their
parameters travel as one base64-encoded JSON document decoded inside the script, so no value is
ever parsed as PowerShell. ``encode_powershell`` builds the ``-EncodedCommand`` argument
(base64 of UTF-16LE), the form both pywinrm and Windows OpenSSH accept.
"""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any


def sh_join(argv: Sequence[str]) -> str:
    """A POSIX sh command line that runs ``argv`` exactly."""
    if not argv:
        raise ValueError("empty command")
    for arg in argv:
        if "\x00" in arg:
            raise ValueError("a command argument cannot contain NUL")
    return " ".join(shlex.quote(a) for a in argv)


def ps_quote(value: str) -> str:
    """A PowerShell single-quoted string literal: '' doubles the quote, nothing else is special.

    PowerShell also treats the typographic quotes U+2018..U+201B as single quotes, so they are
    doubled as well."""
    out = []
    for ch in value:
        out.append(ch)
        if ch in "'\u2018\u2019\u201a\u201b":
            out.append(ch)
    return "'" + "".join(out) + "'"


PARAMS_PRELUDE = (
    "$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'; "
    "$P = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{b64}')) | ConvertFrom-Json; "
)


def encode_params(params: Mapping[str, Any] | None) -> str:
    """Parameters as base64 of UTF-8 JSON: only [A-Za-z0-9+/=] reaches the script text."""
    return base64.b64encode(json.dumps(dict(params or {}), ensure_ascii=False).encode()).decode()


def ps_script(template: str, params: Mapping[str, Any] | None = None) -> str:
    """The full script: the parameter prelude (``$P``) followed by the fixed template."""
    return PARAMS_PRELUDE.replace("{b64}", encode_params(params)) + template


def encode_powershell(script: str) -> str:
    """Base64 of UTF-16LE, for ``powershell -EncodedCommand``."""
    return base64.b64encode(script.encode("utf-16-le")).decode()


def ps_argv_script(argv: Sequence[str]) -> str:
    """A PowerShell template that runs a program with arguments taken from ``$P.argv``."""
    del argv  # the values travel in params; the template is fixed
    return (
        "$a = @($P.argv); $exe = $a[0]; $rest = @(); if ($a.Count -gt 1) { $rest = $a[1..($a.Count-1)] }; "
        "& $exe @rest; exit $LASTEXITCODE"
    )
