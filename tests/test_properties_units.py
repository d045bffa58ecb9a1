"""Bad input to the config's small parsers: durations, sizes and secret references fail with
ValueError (which pydantic turns into a config error with a line), never with another exception."""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import secrets, units

# Derandomized by default, so CI and every run test the same examples; HYPOTHESIS_PROFILE=explore
# draws new ones (then add any failure it finds as an explicit test).
settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True)
settings.register_profile("explore", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ANYTHING = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary(),
                     st.lists(st.integers(), max_size=3),
                     st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
DURATION_TEXT = st.from_regex(r"\A\s*[0-9.]{0,30}(ms|s|m|h|d|w|x|)([0-9.]{0,30}(ms|s|m|h|d|w))?\s*\Z")
SIZE_TEXT = st.from_regex(r"\A\s*[0-9.]{0,40}\s*[KMGTPkmgtpEi]{0,2}[Bb]?\s*\Z")


@given(st.one_of(ANYTHING, DURATION_TEXT))
def test_a_duration_is_finite_seconds_or_a_value_error(value):
    try:
        seconds = units.parse_duration(value)
    except ValueError as exc:
        assert str(exc)
    else:
        assert math.isfinite(seconds) and seconds <= units.MAX_DURATION


@given(st.one_of(ANYTHING, SIZE_TEXT, st.integers(min_value=2**62, max_value=2**80)))
def test_a_size_is_bytes_in_range_or_a_value_error(value):
    try:
        size = units.parse_size(value)
    except ValueError as exc:
        assert str(exc)
    else:
        assert isinstance(size, int) and size <= units.MAX_SIZE


@pytest.mark.parametrize("value", [2**63, "8EiB", "9999999PiB", str(2**70)])
def test_a_size_of_2_63_and_more_is_refused(value):
    with pytest.raises(ValueError):
        units.parse_size(value)


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(min_value=-(2**70), max_value=2**70))
def test_a_duration_as_a_number_is_refused_when_not_finite(value):
    try:
        assert math.isfinite(units.parse_duration(value))
    except ValueError:
        pass


REFERENCE = st.builds(lambda source, name: f"${{{source}:{name}}}",
                      st.sampled_from(["env", "file", "cred", "ENV", "other", ""]),
                      st.text(st.characters(blacklist_categories=["Cs"]), max_size=20))


@given(st.one_of(ANYTHING, REFERENCE, st.text()))
def test_a_secret_reference_resolves_or_fails_with_a_value_error(value):
    try:
        secret = secrets.resolve_reference(value)
    except ValueError as exc:
        assert str(exc)
    else:
        assert secret.get_secret_value()


@given(st.one_of(ANYTHING, REFERENCE))
def test_a_value_or_reference_resolves_or_fails_with_a_value_error(value):
    try:
        secrets.resolve_if_reference(value)
    except ValueError as exc:
        assert str(exc)


def test_a_secret_file_in_another_encoding_is_a_clear_error(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes("pässwort".encode("latin-1"))
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        secrets.resolve_reference(f"${{file:{path}}}")
