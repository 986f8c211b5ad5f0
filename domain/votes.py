"""What consensus and aggregation work on: agents' answers, compared as JSON values."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .json_payload import check_json


def canonical(value: Any) -> str:
    """A key under which equal JSON values meet.

    Object keys are sorted, and a float with an integral value meets the equal int
    (``1`` and ``1.0`` are the same answer, as in JSON); ``True`` is not ``1``.
    """
    return json.dumps(_numbers_as_values(check_json(value)), sort_keys=True, separators=(",", ":"))


def _numbers_as_values(value: Any) -> Any:
    if type(value) is float and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _numbers_as_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_as_values(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Answer:
    """One agent's answer: its value, the weight of its say, its confidence, and its place.

    ``position`` is the agent's member position (the order of concatenation and the
    tie-breaker: the lower position wins); ``arrival`` is the order answers came in (used
    only by ``first_agree``).
    """

    agent: str
    value: Any
    weight: float = 1.0
    confidence: float | None = None
    position: int = 0
    arrival: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.weight, int | float) and math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(
                f"answer of {self.agent!r}: weight must be a finite number >= 0, got {self.weight!r}"
            )
        if self.confidence is not None and not 0.0 <= self.confidence <= 1.0:
            raise ValueError(
                f"answer of {self.agent!r}: confidence must be in [0, 1], got {self.confidence!r}"
            )


class NoAnswers(ValueError):
    """Consensus or aggregation was asked of an empty list of answers."""


def require_answers(answers: list[Answer], what: str) -> None:
    if not answers:
        raise NoAnswers(f"{what}: no answers to work with")
    names = [a.agent for a in answers]
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: each agent answers once, got {sorted(names)}")


def tally(answers: list[Answer]) -> dict[str, float]:
    """Total weight per canonical value."""
    totals: dict[str, float] = {}
    for answer in answers:
        key = canonical(answer.value)
        totals[key] = totals.get(key, 0.0) + answer.weight
    return totals


def counts(answers: list[Answer]) -> dict[str, int]:
    """How many answers give each canonical value (weights ignored)."""
    totals: dict[str, int] = {}
    for answer in answers:
        key = canonical(answer.value)
        totals[key] = totals.get(key, 0) + 1
    return totals


def earliest(answers: list[Answer], key: str) -> Answer:
    """The answer with value ``key`` from the lowest member position."""
    return min((a for a in answers if canonical(a.value) == key), key=lambda a: (a.position, a.agent))
