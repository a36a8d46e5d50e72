"""Validators for names, aliases, host names and script paths given on the command line.

Each returns the accepted value or raises :class:`ValidationError` naming the option and the
rule, in one line. Shared by the library API and the CLI, so both refuse the same things.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re

from .errors import ValidationError

#: Unicode bidirectional controls: they make a name display as something else (U+202E).
BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


#: One class of every character :func:`bad_character` looks for: Unicode's Cc (C0, DEL, C1:
#: fixed by the standard's stability policy), Cs (surrogates, unpaired in a str) and BIDI. A
#: search in C; the loop over ``unicodedata.category`` it replaces was 2.5 s of printing a
#: 100,000-row table (tests/core/test_quoting.py checks both agree).
BAD_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff" + "".join(sorted(BIDI)) + "]")


#: Lone surrogates: what a byte that is not UTF-8 becomes when read with surrogateescape (a
#: Latin-1 file name or server_name), U+DC80..U+DCFF, or any other unpaired one.
SURROGATES = re.compile("[\ud800-\udfff]")


def shown_surrogate(ch: str) -> str:
    r"""A lone surrogate as text: ``\xNN`` for the byte surrogateescape kept (U+DCNN), else
    ``\uNNNN``. How the inventory stores it and every output shows it."""
    code = ord(ch)
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def without_surrogates(text: str) -> str:
    """``text`` with each lone surrogate as :func:`shown_surrogate` writes it."""
    return SURROGATES.sub(lambda found: shown_surrogate(found.group()), text)


def bad_character(value: str) -> str | None:
    """The first control, bidi-control or unpaired-surrogate character of ``value``, or None."""
    found = BAD_CHARACTERS.search(value)
    return found.group() if found else None


def check_text(value: str | None, option: str, lo: int = 1, hi: int = 255) -> str:
    """Free text such as a user name or path: a length range and no control characters."""
    if value is None:
        raise ValidationError("is required", option=option)
    if not (lo <= len(value) <= hi):
        raise ValidationError(f"must be between {lo} and {hi} characters", option=option)
    if bad_character(value) is not None:
        raise ValidationError("must not contain control or bidirectional-control characters", option=option)
    return value


def check_name(value: str | None, option: str, lo: int = 1, hi: int = 32) -> str:
    """A name (endpoint, organization, department, store): text, not made only of spaces."""
    value = check_text(value, option, lo, hi)
    if not value.strip():
        raise ValidationError("must not be only spaces", option=option)
    return value


def check_alias(value: str | None, option: str = "--alias", hi: int = 255) -> str:
    """A keystore alias or node name passed on to scripts: a name that does not start with '-'
    (an install script would take ``-rf`` or ``--help`` for an option)."""
    value = check_name(value, option, 1, hi)
    if value.startswith("-"):
        raise ValidationError("must not start with '-' (scripts would read it as an option)", option=option)
    return value


def check_host(value: str | None, option: str = "--host") -> str:
    """A DNS host name (RFC 1123 labels, at most 253 characters), an IPv4 address or an IPv6
    address (``::1`` or ``[::1]``; stored without brackets)."""
    if value is None or not value:
        raise ValidationError("is required", option=option)
    if len(value) > 255:
        raise ValidationError("must be between 1 and 255 characters", option=option)
    text = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        ip = None
    if ip is not None:
        if isinstance(ip, ipaddress.IPv4Address) and text != value:
            raise ValidationError(f"{value!r}: brackets are for IPv6 addresses only", option=option)
        return str(ip)
    if text != value:
        raise ValidationError(f"{value!r} is not an IPv6 address", option=option)
    name = value[:-1] if value.endswith(".") else value
    if len(name) > 253 or not name or not all(_LABEL.match(label) for label in name.split(".")):
        raise ValidationError(
            f"{value!r} is not a host name (letters, digits, '-' in dot-separated labels of at most 63, "
            "253 in all) or an IP address", option=option)
    if re.fullmatch(r"[0-9.]+", name):
        raise ValidationError(f"{value!r} is not a valid IPv4 address", option=option)
    return value


def check_script_path(value: str, option: str = "SCRIPT", windows: bool = False) -> str:
    """A script to run on the endpoint's host: an absolute path (a relative one would be looked
    up in PATH by the remote shell, which is not the file that was checked)."""
    check_text(value, option, 1, 4096)
    if windows:
        if not re.match(r"^(?:[A-Za-z]:[\\/]|\\\\)", value):
            raise ValidationError(f"{value!r}: give an absolute path (C:\\...)", option=option)
        return value
    if not posixpath.isabs(value):
        raise ValidationError(f"{value!r}: give an absolute path (it would be looked up in PATH)", option=option)
    return value
