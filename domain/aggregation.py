"""Aggregation: one output from an ensemble's answers. Pure functions, one per method.

Rules for the edge cases, all deterministic and independent of the order of the answers
(ties go to the lowest member ``position``):

* no answers: :class:`~.votes.NoAnswers`;
* ``vote``: the most common value (JSON equality); tie -> lowest position;
* ``average``: the arithmetic mean, computed exactly (as fractions) and rounded once, so
  the average of equal numbers is that number; every value must be a number (not a bool),
  else ``TypeError`` naming the agent and the value;
* ``weighted``: numbers -> the weighted mean; anything else -> the value with the most
  weight; an answer whose value no other agent gave gets its weight multiplied by
  ``1 + diversity_weight``; zero total weight is a ``ValueError``;
* ``concat``: the values in position order; strings are joined with a blank line,
  anything else comes back as a list;
* ``best_of``: the value with the highest confidence (no confidence counts as lowest);
  an answer no other agent gave has its confidence multiplied by ``1 + diversity_weight``
  for the ranking; tie -> lowest position;
* ``synthesis``: ``synthesizer(answers)``, the answers carrying their diversity-adjusted
  weights (see :func:`diversified`); without one, or if it raises or returns a non-JSON
  value, the ``concat`` result, with ``fallback=True``.

``diversity_weight`` has no effect on ``vote`` (each agent has one vote: a bonus for a lone
answer would either change nothing or let one dissenter outvote two), ``average`` (the plain
mean; ``weighted`` is the mean with weights) or ``concat`` (every answer is kept).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .enums import AggregationMethod
from .json_payload import check_json
from .votes import Answer, canonical, counts, earliest, require_answers, tally

Synthesizer = Callable[[list[Answer]], Any]


@dataclass(frozen=True, slots=True)
class Aggregate:
    method: AggregationMethod
    value: Any
    fallback: bool = False


def _by_position(answers: Sequence[Answer]) -> list[Answer]:
    return sorted(answers, key=lambda a: (a.position, a.agent))


def _number(answer: Answer, what: str) -> Fraction:
    value = answer.value
    if type(value) not in (int, float):
        raise TypeError(f"{what}: the answer of {answer.agent!r} is {value!r}, not a number")
    return Fraction(value)


def vote(answers: Sequence[Answer]) -> Aggregate:
    values = list(answers)
    require_answers(values, "vote")
    frequency = counts(values)
    best = max(frequency.values())
    winners = [earliest(values, key) for key, count in frequency.items() if count == best]
    return Aggregate(AggregationMethod.VOTE, min(winners, key=lambda a: (a.position, a.agent)).value)


def average(answers: Sequence[Answer]) -> Aggregate:
    values = list(answers)
    require_answers(values, "average")
    numbers = [_number(a, "average") for a in values]
    return Aggregate(AggregationMethod.AVERAGE, float(sum(numbers) / len(numbers)))


def lone(answers: Sequence[Answer]) -> set[str]:
    """The agents whose answer no other agent gave."""
    frequency = counts(list(answers))
    return {a.agent for a in answers if frequency[canonical(a.value)] == 1}


def diversified(answers: Sequence[Answer], diversity_weight: float = 0.0) -> list[Answer]:
    """``answers`` with the weight of each lone answer multiplied by ``1 + diversity_weight``."""
    unique = lone(answers)
    return [
        Answer(
            a.agent,
            a.value,
            a.weight * (1 + diversity_weight) if a.agent in unique else a.weight,
            a.confidence,
            a.position,
            a.arrival,
        )
        for a in answers
    ]


def weighted(answers: Sequence[Answer], diversity_weight: float = 0.0) -> Aggregate:
    values = list(answers)
    require_answers(values, "weighted")
    scaled = diversified(values, diversity_weight)
    whole = sum(Fraction(a.weight) for a in scaled)
    if whole <= 0:
        raise ValueError("weighted: the answers' weights add up to zero")
    if all(type(a.value) in (int, float) for a in scaled):
        mean = sum(Fraction(a.weight) * _number(a, "weighted") for a in scaled) / whole
        return Aggregate(AggregationMethod.WEIGHTED, float(mean))
    totals = tally(scaled)
    best = max(totals.values())
    winners = [earliest(scaled, key) for key, weight in totals.items() if weight == best]
    return Aggregate(AggregationMethod.WEIGHTED, min(winners, key=lambda a: (a.position, a.agent)).value)


def concat(answers: Sequence[Answer]) -> Aggregate:
    values = _by_position(answers)
    require_answers(values, "concat")
    if all(isinstance(a.value, str) for a in values):
        return Aggregate(AggregationMethod.CONCAT, "\n\n".join(a.value for a in values))
    return Aggregate(AggregationMethod.CONCAT, [a.value for a in values])


def best_of(answers: Sequence[Answer], diversity_weight: float = 0.0) -> Aggregate:
    values = list(answers)
    require_answers(values, "best_of")
    unique = lone(values)

    def score(a: Answer) -> float:
        if a.confidence is None:
            return -1.0
        return a.confidence * (1 + diversity_weight) if a.agent in unique else a.confidence

    best = min(values, key=lambda a: (-score(a), a.position, a.agent))
    return Aggregate(AggregationMethod.BEST_OF, best.value)


def synthesis(
    answers: Sequence[Answer], synthesizer: Synthesizer | None = None, diversity_weight: float = 0.0
) -> Aggregate:
    values = _by_position(answers)
    require_answers(values, "synthesis")
    if synthesizer is not None:
        try:
            return Aggregate(
                AggregationMethod.SYNTHESIS, check_json(synthesizer(diversified(values, diversity_weight)))
            )
        except Exception:  # any failure falls back to concat, by definition
            pass
    return Aggregate(AggregationMethod.SYNTHESIS, concat(values).value, fallback=True)


def aggregate(
    method: AggregationMethod,
    answers: Sequence[Answer],
    *,
    synthesizer: Synthesizer | None = None,
    diversity_weight: float = 0.0,
) -> Aggregate:
    """Aggregate ``answers`` by ``method``."""
    if method is AggregationMethod.VOTE:
        return vote(answers)
    if method is AggregationMethod.AVERAGE:
        return average(answers)
    if method is AggregationMethod.WEIGHTED:
        return weighted(answers, diversity_weight)
    if method is AggregationMethod.CONCAT:
        return concat(answers)
    if method is AggregationMethod.BEST_OF:
        return best_of(answers, diversity_weight)
    return synthesis(answers, synthesizer, diversity_weight)


__all__ = [
    "Aggregate",
    "Synthesizer",
    "aggregate",
    "average",
    "best_of",
    "concat",
    "diversified",
    "lone",
    "synthesis",
    "vote",
    "weighted",
]
