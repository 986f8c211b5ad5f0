"""Laws of consensus and aggregation, as Hypothesis properties, plus every documented edge."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qmcp_agents.domain import AggregationMethod, ConsensusMethod
from qmcp_agents.domain.aggregation import aggregate, average, best_of, concat, synthesis, vote
from qmcp_agents.domain.aggregation import weighted as weighted_aggregate
from qmcp_agents.domain.consensus import decide, first_agree, majority, mediator, unanimous, weighted
from qmcp_agents.domain.votes import Answer, NoAnswers, canonical

values = st.sampled_from(["a", "b", "c", 1, 2.0, {"k": 1}, [1, 2]])


@st.composite
def answer_lists(
    draw: st.DrawFn, value_strategy: st.SearchStrategy[Any] = values, weights: bool = False
) -> list[Answer]:
    chosen = draw(st.lists(value_strategy, min_size=1, max_size=9))
    weight_values = (
        draw(st.lists(st.floats(0.0, 10.0), min_size=len(chosen), max_size=len(chosen)))
        if weights
        else [1.0] * len(chosen)
    )
    confidences = draw(st.lists(st.none() | st.floats(0.0, 1.0), min_size=len(chosen), max_size=len(chosen)))
    return [
        Answer(f"agent-{i}", v, w, c, position=i, arrival=i)
        for i, (v, w, c) in enumerate(zip(chosen, weight_values, confidences, strict=True))
    ]


def reordered(answers: list[Answer], permutation: list[int]) -> list[Answer]:
    return [
        Answer(a.agent, a.value, a.weight, a.confidence, a.position, arrival)
        for arrival, a in enumerate(answers[i] for i in permutation)
    ]


@given(st.data())
def test_order_of_equal_weight_votes_does_not_matter(data: st.DataObject) -> None:
    answers = data.draw(answer_lists())
    permutation = data.draw(st.permutations(list(range(len(answers)))))
    shuffled = reordered(answers, permutation)
    for method in (ConsensusMethod.MAJORITY_VOTE, ConsensusMethod.UNANIMOUS, ConsensusMethod.WEIGHTED_VOTE):
        assert decide(method, answers) == decide(method, shuffled)
    for aggregation in (AggregationMethod.VOTE, AggregationMethod.CONCAT, AggregationMethod.BEST_OF):
        assert canonical(aggregate(aggregation, answers).value) == canonical(
            aggregate(aggregation, shuffled).value
        )


@given(answer_lists())
def test_unanimous_implies_majority(answers: list[Answer]) -> None:
    if unanimous(answers).reached:
        result = majority(answers)
        assert result.reached
        assert canonical(result.value) == canonical(unanimous(answers).value)


@given(answer_lists())
def test_weighted_vote_with_equal_weights_is_majority(answers: list[Answer]) -> None:
    a, b = weighted(answers), majority(answers)
    assert (a.reached, canonical(a.value) if a.reached else None) == (
        b.reached,
        canonical(b.value) if b.reached else None,
    )


@given(answer_lists())
def test_majority_means_strictly_more_than_half(answers: list[Answer]) -> None:
    result = majority(answers)
    if result.reached:
        assert sum(canonical(a.value) == canonical(result.value) for a in answers) * 2 > len(answers)
    else:
        assert result.value is None


@given(answer_lists())
def test_best_of_returns_a_reply_of_maximal_confidence(answers: list[Answer]) -> None:
    best = best_of(answers).value
    top = max((a.confidence if a.confidence is not None else -1.0) for a in answers)
    assert any(
        canonical(a.value) == canonical(best) and (a.confidence if a.confidence is not None else -1.0) == top
        for a in answers
    )


@given(st.floats(-1e12, 1e12, allow_nan=False) | st.integers(-(10**12), 10**12), st.integers(1, 12))
def test_average_of_equal_numbers_is_that_number(number: float, count: int) -> None:
    answers = [Answer(f"a{i}", number, position=i) for i in range(count)]
    assert average(answers).value == number


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=8), st.data())
def test_average_is_order_independent_and_bounded(numbers: list[float], data: st.DataObject) -> None:
    answers = [Answer(f"a{i}", n, position=i) for i, n in enumerate(numbers)]
    permutation = data.draw(st.permutations(list(range(len(answers)))))
    assert average(answers).value == average(reordered(answers, permutation)).value
    assert min(numbers) <= average(answers).value <= max(numbers)


@given(st.lists(st.sampled_from(["x", "y"]), min_size=2, max_size=8))
def test_first_agree_is_the_first_repeated_value_in_arrival_order(choices: list[str]) -> None:
    answers = [Answer(f"a{i}", v, arrival=i) for i, v in enumerate(choices)]
    seen: set[str] = set()
    expected = None
    for value in choices:
        if value in seen:
            expected = value
            break
        seen.add(value)
    result = first_agree(answers)
    assert result.reached == (expected is not None)
    assert result.value == expected


# --- documented edges ----------------------------------------------------------------------


def test_empty_input_is_an_error_everywhere() -> None:
    for method in ConsensusMethod:
        if method is not ConsensusMethod.MEDIATOR_DECISION:
            with pytest.raises(NoAnswers):
                decide(method, [])
    for aggregation in AggregationMethod:
        with pytest.raises(NoAnswers):
            aggregate(aggregation, [])


def test_ties() -> None:
    tie = [Answer("x", "a", position=1), Answer("y", "b", position=0)]
    assert not majority(tie).reached
    assert majority(tie).value is None
    assert vote(tie).value == "b"  # lowest position wins a tie
    assert (
        best_of(
            [Answer("x", "a", confidence=0.5, position=1), Answer("y", "b", confidence=0.5, position=0)]
        ).value
        == "b"
    )
    assert not weighted([Answer("x", "a", 2.0), Answer("y", "b", 2.0)]).reached


def test_numbers_compare_as_json() -> None:
    assert majority([Answer("x", 1), Answer("y", 1.0), Answer("z", 2)]).reached
    assert not majority([Answer("x", True), Answer("y", 1), Answer("z", 2)]).reached


def test_type_mismatches_and_bad_inputs() -> None:
    with pytest.raises(TypeError, match=r"'b'.*not a number"):
        average([Answer("a", 1), Answer("b", "two")])
    with pytest.raises(TypeError, match="not a number"):
        average([Answer("a", True)])
    with pytest.raises(ValueError, match="weights add up to zero"):
        weighted([Answer("a", "x", 0.0)])
    with pytest.raises(ValueError, match="no mediator"):
        mediator([Answer("a", "x")], None)
    with pytest.raises(ValueError, match="answers once"):
        majority([Answer("a", "x"), Answer("a", "y")])
    with pytest.raises(ValueError, match="weight"):
        Answer("a", "x", weight=-1.0)


def test_mediator_decides_even_against_the_majority() -> None:
    result = mediator([Answer("a", "x"), Answer("b", "x")], Answer("judge", "y"))
    assert (result.reached, result.value, result.support) == (True, "y", 0.0)


def test_weighted_aggregation() -> None:
    assert weighted_aggregate([Answer("a", 1.0, 3.0), Answer("b", 3.0, 1.0)]).value == 1.5
    assert (
        weighted_aggregate([Answer("a", "x", 1.0), Answer("b", "y", 2.0), Answer("c", "x", 0.5)]).value == "y"
    )
    # diversity: a lone answer gets its weight multiplied by (1 + diversity_weight)
    answers = [Answer("a", "x", 1.0), Answer("b", "x", 1.0), Answer("c", "y", 1.5, position=2)]
    assert weighted_aggregate(answers, diversity_weight=0.0).value == "x"
    assert weighted_aggregate(answers, diversity_weight=0.5).value == "y"


def test_concat_and_synthesis() -> None:
    answers = [Answer("b", "second", position=1), Answer("a", "first", position=0)]
    assert concat(answers).value == "first\n\nsecond"
    assert concat([Answer("a", {"x": 1}), Answer("b", 2, position=1)]).value == [{"x": 1}, 2]
    assert synthesis(answers, lambda items: {"joined": [a.value for a in items]}).value == {
        "joined": ["first", "second"]
    }
    fallback = synthesis(answers, lambda items: 1 / 0)
    assert (fallback.value, fallback.fallback) == ("first\n\nsecond", True)
    assert synthesis(answers, lambda items: {1, 2}).fallback
    assert synthesis(answers).fallback
