"""Validators: names, hosts, ports, option limits (hypothesis over generated input)."""

from __future__ import annotations

import string
import unicodedata

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tlsgate import Secret, ValidationError, option
from tlsgate.api import _check_port, _check_text
from tlsgate.options import build_options, option_specs
from tlsgate.validate import BIDI


@attrs.frozen
class Opts:
    path: str = option(help="p", required=True, min_len=1, max_len=4096)
    legacy: bool = option(help="l", default=False)
    pw: Secret | None = option(help="s", secret=True)
    count: int | None = option(help="c", min=1, max=10)


@given(st.text(min_size=0, max_size=40))
def test_name_rule(name: str) -> None:
    ok = 1 <= len(name) <= 32 and not any(unicodedata.category(c) in ("Cc", "Cs") or c in BIDI for c in name)
    if ok:
        assert _check_text(name, "--name", 1, 32) == name
    else:
        with pytest.raises(ValidationError, match=r"^--name: "):
            _check_text(name, "--name", 1, 32)


@given(st.text(alphabet=string.ascii_letters + string.digits + ".-:", min_size=0, max_size=300))
def test_host_rule(host: str) -> None:
    if 1 <= len(host) <= 255:
        assert _check_text(host, "--host", 1, 255) == host
    else:
        with pytest.raises(ValidationError, match=r"^--host: must be between 1 and 255 characters$"):
            _check_text(host, "--host", 1, 255)


@given(st.one_of(st.integers(-100000, 100000).map(str), st.text(max_size=8)))
def test_port_rule(raw: str) -> None:
    try:
        expected = int(raw.strip())
        valid = 1 <= expected <= 65535 and raw.strip().lstrip("+").isdigit()
    except ValueError:
        valid = False
    if valid:
        assert _check_port(raw, None) == expected
    else:
        with pytest.raises(ValidationError, match=r"^--port: must be an integer between 1 and 65535$"):
            _check_port(raw, None)


def test_port_default_from_connection_type() -> None:
    assert _check_port(None, 5986) == 5986


@given(st.sampled_from(["true", "false", "TRUE", "False", "yes", "no", "1", "0", "maybe", ""]))
def test_bool_option(raw: str) -> None:
    if raw.lower() in ("true", "false", "yes", "no", "1", "0"):
        assert build_options(Opts, {"path": "/x", "legacy": raw}).legacy is (raw.lower() in ("true", "yes", "1"))
    else:
        with pytest.raises(ValidationError, match=r"^--legacy: must be true or false$"):
            build_options(Opts, {"path": "/x", "legacy": raw})


def test_unknown_and_missing_options_name_the_flag() -> None:
    with pytest.raises(ValidationError, match=r"^--nope: is not an option of this endpoint type$"):
        build_options(Opts, {"path": "/x", "nope": "1"})
    with pytest.raises(ValidationError, match=r"^--path: is required$"):
        build_options(Opts, {})
    with pytest.raises(ValidationError, match=r"^--count: must be an integer between 1 and 10$"):
        build_options(Opts, {"path": "/x", "count": "11"})


def test_secret_options_are_secrets() -> None:
    opts = build_options(Opts, {"path": "/x", "pw": "hunter2"})
    assert isinstance(opts.pw, Secret) and "hunter2" not in repr(opts)
    assert [s.name for s in option_specs(Opts) if s.secret] == ["pw"]
