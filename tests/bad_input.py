"""Bad input for the property tests: odd numbers, odd JSON, and real replies made wrong.

A real reply (a fixture) is mutated the ways device and API output goes wrong: one value
replaced by one of the wrong type or out of range, a key taken away or added, a list
emptied; its text cut short, re-encoded or made huge.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

# Derandomized by default, so CI and every run test the same examples; HYPOTHESIS_PROFILE=explore
# draws new ones (then add any failure it finds as an explicit test).
settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True)
settings.register_profile("explore", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ODD_NUMBERS = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.floats(),
                        st.sampled_from([2**63, 2**64, -1, "NaN", "inf", "-inf", "1e999", "", " ", "1,5", "x"]))
JSON_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), ODD_NUMBERS, st.text(max_size=10)),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=3), max_leaves=10)
# What replaces one value of a real reply: JSON_VALUES, and the extremes every parser must refuse.
BAD_VALUES = st.one_of(JSON_VALUES, st.sampled_from([2**63, 2**64, 10**400, -(2**63) - 1, -1, -5.5, float("nan"),
                                                     float("inf"), float("-inf"), 1e308, [], {}, "", "x" * 100_000]))


def leaves(node: Any, path: tuple = ()) -> Any:
    """The path of every value that is not a list or an object."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from leaves(value, (*path, index))
    else:
        yield path


def _nodes(node: Any, path: tuple = ()) -> Any:
    """The path of every value, lists and objects too."""
    yield path
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in children:
        yield from _nodes(value, (*path, key))


@st.composite
def mutated(draw: Any, document: Any, values: st.SearchStrategy = BAD_VALUES) -> Any:
    """A copy of `document` with one thing wrong: a value replaced, a key missing or added, a list emptied."""
    document = copy.deepcopy(document)
    where = draw(st.sampled_from(list(_nodes(document))))
    if not where:
        return draw(values)
    parent = document
    for key in where[:-1]:
        parent = parent[key]
    how = draw(st.sampled_from(["replace", "remove", "add", "empty"]))
    if how == "remove":
        del parent[where[-1]]
    elif how == "add" and isinstance(parent, dict):
        parent[draw(st.text(max_size=8))] = draw(values)
    elif how == "empty" and isinstance(parent[where[-1]], list | dict):
        parent[where[-1]].clear()
    else:
        parent[where[-1]] = draw(values)
    return document


@st.composite
def garbled(draw: Any, text: str) -> bytes:
    """The reply's bytes as sent, cut short, re-encoded (UTF-16, latin-1 of its UTF-8) or padded huge."""
    how = draw(st.sampled_from(["as is", "cut", "utf-16", "latin-1", "huge"]))
    if how == "cut":
        return text.encode()[:draw(st.integers(min_value=0, max_value=max(0, len(text.encode()) - 1)))]
    if how == "utf-16":
        return text.encode("utf-16")
    if how == "latin-1":
        return text.encode().decode("latin-1").encode("utf-8")
    if how == "huge":
        return text.encode() + b" " * 1_000_000
    return text.encode()
