"""Fuzzing the model-spec parser: it returns a ModelSpec or raises SpecError, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auralens.specs import ModelSpec, SpecError, parse_spec

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

name = st.from_regex(r"[A-Za-z][A-Za-z0-9_\-]{0,8}", fullmatch=True)
value = st.text(st.characters(blacklist_characters=",@\x00", blacklist_categories=("Cs",)), max_size=12)
spec_like = st.builds(
    lambda kind, ident, opts: (f"{kind}:{ident}" if ident else kind)
    + ("@" + ",".join(f"{k}={v}" for k, v in opts) if opts else ""),
    name, st.text(max_size=20), st.lists(st.tuples(name, value), max_size=3))
anything = st.text(max_size=120)


def _check(text: str) -> None:
    try:
        spec = parse_spec(text)
    except SpecError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(spec, ModelSpec) and spec.kind and spec.raw == text
    assert all(k.isidentifier() for k in spec.params)


@SETTINGS
@given(text=st.one_of(anything, spec_like))
def test_parse_spec_never_raises_anything_but_spec_error(text: str) -> None:
    _check(text)


@SETTINGS
@given(kind=name, ident=st.from_regex(r"[A-Za-z0-9_\-]{1,10}(/[A-Za-z0-9_\-.]{1,10})?", fullmatch=True),
       layer=st.integers(-3, 48))
def test_well_formed_specs_round_trip(kind: str, ident: str, layer: int) -> None:
    spec = parse_spec(f"{kind}:{ident}@layer={layer},flag=true")
    assert (spec.kind, spec.id, spec.params) == (kind.lower(), ident, {"layer": layer, "flag": True})
    again = parse_spec(str(spec))
    assert (again.kind, again.id, again.params) == (spec.kind, spec.id, spec.params)


@pytest.mark.parametrize("text, kind, ident, params", [
    ("X" * 5000, "x" * 5000, "", {}),
    ("hf:" + "x" * 300 + "@layer=1", "hf", "x" * 300, {"layer": 1}),
])
def test_overlong_specs_parse_as_names(text: str, kind: str, ident: str, params: dict) -> None:
    """Names longer than the OS allows for a path are not local paths: they parse as
    ``kind[:id]`` specs instead of failing on the file-system check."""
    spec = parse_spec(text)
    assert (spec.kind, spec.id, spec.params, spec.raw) == (kind, ident, params, text)
    assert spec.path is None and not spec.is_local


@SETTINGS
@given(value=st.from_regex(r"[+-]?[0-9_]{1,8}(\.[0-9_]{0,4})?", fullmatch=True))
def test_number_like_option_values_never_raise(value: str) -> None:
    """Underscores where int()/float() refuse them ("1__0", "1_") leave the value as text."""
    got = parse_spec(f"nmf@n={value}").params["n"]
    if isinstance(got, str):
        assert got == value
    else:
        assert got == (float(value) if "." in value else int(value))
