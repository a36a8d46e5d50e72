"""Domain lists of an ACME order (hypothesis): IDNA, wildcards only with dns-01, duplicates and
case, each problem one line naming --domain."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlsgate.errors import ValidationError
from tlsgate.lifecycle.domains import normalise_domain, validate_domains

LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True).filter(lambda s: s[2:4] != "--")
NAME = st.lists(LABEL, min_size=1, max_size=4).map(lambda labels: ".".join([*labels, "test"]))


def _one_line(exc: ValidationError) -> None:
    text = str(exc)
    assert text.startswith("--domain: ") and "\n" not in text and exc.option == "--domain"


@settings(max_examples=150, deadline=None)
@given(NAME, st.sampled_from(["http-01", "dns-01"]), st.booleans(), st.booleans())
def test_valid_names_normalise_idempotently(name: str, challenge: str, upper: bool, dot: bool) -> None:
    raw = (name.upper() if upper else name) + ("." if dot else "")
    out = normalise_domain(raw, challenge=challenge)
    assert out == name and normalise_domain(out, challenge=challenge) == out


@settings(max_examples=100, deadline=None)
@given(NAME)
def test_wildcards_only_with_dns01(name: str) -> None:
    assert validate_domains([f"*.{name}"], challenge="dns-01") == [f"*.{name}"]
    with pytest.raises(ValidationError) as err:
        validate_domains([f"*.{name}"], challenge="http-01")
    _one_line(err.value)
    assert "needs --challenge dns-01" in str(err.value)


@settings(max_examples=100, deadline=None)
@given(st.lists(NAME, min_size=1, max_size=5, unique=True), st.data())
def test_duplicates_are_refused_case_insensitively(names: list[str], data: st.DataObject) -> None:
    assert validate_domains(names) == names
    dup = data.draw(st.sampled_from(names))
    with pytest.raises(ValidationError) as err:
        validate_domains([*names, dup.upper() + "."])
    _one_line(err.value)
    assert f"{dup} is given twice" in str(err.value)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", categories=["Ll", "Lu", "Nd"]), min_size=1, max_size=12))
def test_international_names_become_ascii_or_one_line_error(label: str) -> None:
    try:
        out = normalise_domain(f"{label}.test")
    except ValidationError as exc:
        _one_line(exc)
        return
    assert out.isascii() and out.endswith(".test") and out == out.lower()
    import idna

    if not idna.uts46_remap(label).isascii():  # e.g. a mathematical bold A maps to plain "a"
        assert out.startswith("xn--")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_is_a_name_or_one_line_error(raw: str) -> None:
    try:
        out = normalise_domain(raw, challenge="dns-01")
    except ValidationError as exc:
        _one_line(exc)
        return
    assert out.isascii() and len(out) <= 255 and "\n" not in out


@pytest.mark.parametrize("raw, rule", [
    ("bücher.test", None),
    ("xn--bcher-kva.test", None),
    ("a*.test", "only allowed as the whole leftmost label"),
    ("*.*.test", "only allowed as the whole leftmost label"),
    ("localhost", "at least two labels"),
    ("127.0.0.1", "IP addresses are not supported"),
    ("a..test", "empty label"),
    ("-a.test", "must be 1 to 63"),
    ("a_b.test", "must be 1 to 63"),
    ("ab--c.test", "reserved for IDNA"),
    ("xn--zz.test", "not a valid IDNA label"),
    ("a.123", "must not be all digits"),
    ("x" * 64 + ".test", "must be 1 to 63"),
])
def test_examples(raw: str, rule: str | None) -> None:
    if rule is None:
        assert normalise_domain(raw, challenge="dns-01") == "xn--bcher-kva.test"
        return
    with pytest.raises(ValidationError, match=rule) as err:
        normalise_domain(raw, challenge="dns-01")
    _one_line(err.value)


def test_empty_and_too_many() -> None:
    with pytest.raises(ValidationError, match="--domain: is required"):
        validate_domains([])
    with pytest.raises(ValidationError, match="at most 100 names"):
        validate_domains([f"n{i}.test" for i in range(101)])


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60))
def test_a_cas_problem_detail_becomes_one_safe_line(detail: str) -> None:
    from acme import messages
    from tlsgate.lifecycle.acme import describe

    err = messages.Error.with_code("rejectedIdentifier", detail=detail)
    line = str(describe(err, "order", "shop.test"))
    assert line.startswith("ACME order for shop.test: ")
    assert line.endswith("(rejectedIdentifier)" if detail.strip() else ": rejectedIdentifier")
    assert line.isprintable()
