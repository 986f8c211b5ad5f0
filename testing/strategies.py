"""Hypothesis strategies for domain values, shared by the domain and conformance tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from qmcp_agents.domain.json_payload import INT64_MAX, INT64_MIN

json_text = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=12)
special_keys = st.sampled_from(["$set", "a.b", "", "$", ".", "_id", "$where", "é", "\U0001f600"])
json_keys = st.one_of(json_text, special_keys)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    json_text,
)

json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(json_keys, children, max_size=4),
    ),
    max_leaves=20,
)

json_objects: st.SearchStrategy[dict[str, Any]] = st.dictionaries(json_keys, json_values, max_size=5)

bad_leaves = st.one_of(
    st.just(float("nan")),
    st.just(float("inf")),
    st.just(float("-inf")),
    st.integers(min_value=INT64_MAX + 1),
    st.integers(max_value=INT64_MIN - 1),
    st.just("nul\x00inside"),
    st.tuples(st.integers()),
    st.frozensets(st.integers(), max_size=2),
    st.binary(max_size=3),
    st.just(object()),
)


@st.composite
def objects_with_one_bad_leaf(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON object with exactly one non-JSON value (or non-str key) buried somewhere."""
    bad = draw(bad_leaves)
    depth = draw(st.integers(min_value=0, max_value=3))
    value: Any = bad
    for _ in range(depth):
        if draw(st.booleans()):
            value = [*draw(st.lists(json_scalars, max_size=2)), value]
        else:
            value = {**draw(st.dictionaries(json_text, json_scalars, max_size=2)), "k": value}
    if draw(st.booleans()):
        return {**draw(st.dictionaries(json_text, json_scalars, max_size=2)), "top": value}
    key: Any = draw(st.sampled_from([1, 2.5, None, (1,), "nul\x00key"]))
    return {key: 1}
