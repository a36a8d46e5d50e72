"""The domain list of an ACME order: normalised, checked, one clear line per problem.

Rules: names are compared and sent in lower case with no trailing dot; international names are
converted to their ASCII (IDNA 2008 / UTS #46) form, as CAs require; a wildcard is only ``*.``
as the whole leftmost label and only with dns-01 (RFC 8555 section 7.1.3); the same name twice
(after normalisation) is refused rather than silently dropped, since it is usually a typo;
IP addresses are not names.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from ..errors import ValidationError

OPTION = "--domain"
MAX_NAMES = 100  # the common CA limit (Let's Encrypt's) on names per certificate
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalise_domain(raw: str, *, challenge: str = "http-01") -> str:
    """One name as the CA will see it; raises ValidationError naming ``--domain``."""
    shown = raw.encode("unicode_escape").decode("ascii")
    name = raw.strip()
    if not name:
        raise ValidationError("a domain must not be empty", option=OPTION)
    if name.endswith("."):
        name = name[:-1]
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        raise ValidationError(f"{shown}: IP addresses are not supported, give a DNS name", option=OPTION)
    wildcard = name.startswith("*.")
    if wildcard:
        name = name[2:]
        if challenge != "dns-01":
            raise ValidationError(f"{shown}: a wildcard needs --challenge dns-01", option=OPTION)
    if "*" in name:
        raise ValidationError(f"{shown}: '*' is only allowed as the whole leftmost label ('*.example.org')",
                              option=OPTION)
    labels = name.split(".")
    if len(labels) < 2:
        raise ValidationError(f"{shown}: needs at least two labels (like example.org)", option=OPTION)
    ascii_labels = []
    for label in labels:
        if not label:
            raise ValidationError(f"{shown}: empty label", option=OPTION)
        ascii_labels.append(_ascii_label(label, shown))
    out = ".".join(ascii_labels)
    if len(out) > 253:
        raise ValidationError(f"{shown}: longer than 253 characters", option=OPTION)
    if out.split(".")[-1].isdigit():
        raise ValidationError(f"{shown}: the last label must not be all digits", option=OPTION)
    return ("*." if wildcard else "") + out


def _ascii_label(label: str, shown: str) -> str:
    if label.isascii():
        low = label.lower()
        if low.startswith("xn--"):
            try:
                import idna

                idna.decode(low)
            except (idna.IDNAError, UnicodeError):
                raise ValidationError(f"{shown}: {low!r} is not a valid IDNA label", option=OPTION) from None
        elif low[2:4] == "--":
            raise ValidationError(f"{shown}: {low!r}: '--' in the third and fourth place is reserved for IDNA",
                                  option=OPTION)
    else:
        import idna

        try:
            low = idna.encode(label, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise ValidationError(f"{shown}: {label!r} is not a valid international label ({exc})",
                                  option=OPTION) from None
    if not _LABEL.match(low):
        raise ValidationError(
            f"{shown}: label {low!r} must be 1 to 63 letters, digits or '-', not starting or ending with '-'",
            option=OPTION)
    return low


def validate_domains(domains: Sequence[str], *, challenge: str = "http-01") -> list[str]:
    """The order's names, normalised, in the order given; the first is the certificate's CN."""
    if not domains:
        raise ValidationError("is required (at least one)", option=OPTION)
    if len(domains) > MAX_NAMES:
        raise ValidationError(f"at most {MAX_NAMES} names per certificate", option=OPTION)
    out: list[str] = []
    for raw in domains:
        name = normalise_domain(raw, challenge=challenge)
        if name in out:
            raise ValidationError(f"{name} is given twice", option=OPTION)
        out.append(name)
    return out
