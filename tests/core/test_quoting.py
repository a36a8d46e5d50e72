"""Quoting for sh and PowerShell parameters: any string is data, never code."""

from __future__ import annotations

import base64
import json
import subprocess

from hypothesis import given, settings
from hypothesis import strategies as st
from tlsgate.quoting import encode_params, encode_powershell, ps_quote, sh_join

ARG = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=150, deadline=None)
@given(st.lists(ARG, min_size=1, max_size=5))
def test_sh_join_passes_every_argument_unchanged(args: list[str]) -> None:
    """Run the quoted line in a real sh; printf gets exactly the arguments, NUL-separated."""
    line = sh_join(["printf", "%s\\0", *args])
    out = subprocess.run(["sh", "-c", line], capture_output=True, check=True).stdout
    assert out.split(b"\x00")[:-1] == [a.encode("utf-8", "surrogateescape") for a in args]


@given(st.text())
def test_ps_params_round_trip(value: str) -> None:
    params = {"path": value, "list": [value, "x"]}
    b64 = encode_params(params)
    assert set(b64) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    assert json.loads(base64.b64decode(b64).decode()) == params


@given(st.text())
def test_ps_quote_has_no_unescaped_quote(value: str) -> None:
    quoted = ps_quote(value)
    inner = quoted[1:-1]
    # every single-quote-like character is doubled, so the literal cannot end early
    i = 0
    while i < len(inner):
        if inner[i] in "'\u2018\u2019\u201a\u201b":
            assert inner[i + 1] == inner[i]
            i += 2
        else:
            i += 1


def test_encoded_command_is_utf16le_base64() -> None:
    assert base64.b64decode(encode_powershell("Write-Output 'é'")).decode("utf-16-le") == "Write-Output 'é'"


def _by_category(value: str) -> str | None:
    import unicodedata

    from tlsgate.validate import BIDI

    return next((ch for ch in value if unicodedata.category(ch) in ("Cc", "Cs") or ch in BIDI), None)


def test_bad_character_class_is_every_control_surrogate_and_bidi_code_point() -> None:
    """The one regex class (a search in C) finds exactly the code points the Unicode categories
    name: checked for every code point, not a sample."""
    from tlsgate.validate import bad_character

    wrong = [hex(cp) for cp in range(0x110000) if bad_character(chr(cp)) != _by_category(chr(cp))]
    assert wrong == []


@given(st.text(st.characters(codec=None, exclude_categories=()), max_size=30))
def test_bad_character_is_the_first_one(value: str) -> None:
    from tlsgate.validate import bad_character

    assert bad_character(value) == _by_category(value)


@given(st.recursive(st.text(st.characters(codec=None, exclude_categories=()), max_size=8) | st.integers() | st.none(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
                    max_leaves=12), st.integers(0, 2))
def test_json_output_is_utf8_json_whatever_the_text(data: object, copies: int) -> None:
    """--json output stays UTF-8 JSON when data holds lone surrogates (bytes of a Latin-1
    configuration decoded with surrogateescape): each becomes the text \\xNN / \\uNNNN, every
    other value is unchanged. Short, long (one element per line) and large documents."""
    import io
    import sys

    from tlsgate.cli.output import emit_json

    def expected(value: object) -> object:
        if isinstance(value, str):
            return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else
                           f"\\u{ord(c):04x}" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
        if isinstance(value, list):
            return [expected(v) for v in value]
        if isinstance(value, dict):
            return {expected(k): expected(v) for k, v in value.items()}
        return value

    doc = [data] * (150 * copies) if copies else data
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # strict, as a piped stdout
    saved, sys.stdout = sys.stdout, out
    try:
        emit_json(doc)
        out.flush()
    finally:
        sys.stdout = saved
    assert json.loads(out.buffer.getvalue().decode("utf-8")) == expected(doc)
