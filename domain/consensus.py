"""Consensus: do several agents agree, and on what? Pure functions, one per method.

Every function takes the agents' :class:`~.votes.Answer` s and returns a
:class:`Consensus`. Values are compared as JSON (see :func:`~.votes.canonical`). Rules
for the edge cases, all deterministic:

* no answers: :class:`~.votes.NoAnswers` (a ``ValueError``);
* an agent answering twice: ``ValueError``;
* ``majority``: reached when one value has *strictly more than half* of the answers; a tie
  or a plurality is not a majority (``reached=False``, ``value=None``);
* ``unanimous``: reached when every answer is the same value;
* ``weighted``: reached when one value has strictly more than half of the total weight;
  a total weight of zero is a ``ValueError``;
* ``mediator``: the mediator's answer is the decision (``ValueError`` without one);
* ``first_agree``: scanning answers in arrival order, the first value given by a second
  agent; none: not reached.

For every method except ``first_agree`` (which is about order by definition) the result
does not depend on the order of the answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .enums import ConsensusMethod
from .votes import Answer, canonical, counts, earliest, require_answers, tally


@dataclass(frozen=True, slots=True)
class Consensus:
    """``value`` is the agreed answer when ``reached``; ``support`` its share (0..1)."""

    method: ConsensusMethod
    reached: bool
    value: Any
    support: float


def _none(method: ConsensusMethod, support: float) -> Consensus:
    return Consensus(method, False, None, support)


def majority(answers: Sequence[Answer]) -> Consensus:
    votes = list(answers)
    require_answers(votes, "majority")
    key, count = max(counts(votes).items(), key=lambda item: item[1])
    support = count / len(votes)
    if count * 2 > len(votes):
        return Consensus(ConsensusMethod.MAJORITY_VOTE, True, earliest(votes, key).value, support)
    return _none(ConsensusMethod.MAJORITY_VOTE, support)


def unanimous(answers: Sequence[Answer]) -> Consensus:
    votes = list(answers)
    require_answers(votes, "unanimous")
    keys = {canonical(a.value) for a in votes}
    if len(keys) == 1:
        return Consensus(ConsensusMethod.UNANIMOUS, True, earliest(votes, keys.pop()).value, 1.0)
    return _none(ConsensusMethod.UNANIMOUS, max(counts(votes).values()) / len(votes))


def weighted(answers: Sequence[Answer]) -> Consensus:
    votes = list(answers)
    require_answers(votes, "weighted")
    totals = tally(votes)
    whole = sum(totals.values())
    if whole <= 0:
        raise ValueError("weighted: the answers' weights add up to zero")
    key, weight = max(totals.items(), key=lambda item: item[1])
    if weight * 2 > whole:
        return Consensus(ConsensusMethod.WEIGHTED_VOTE, True, earliest(votes, key).value, weight / whole)
    return _none(ConsensusMethod.WEIGHTED_VOTE, weight / whole)


def mediator(answers: Sequence[Answer], decision: Answer | None) -> Consensus:
    """The mediator decides; ``answers`` are the positions it weighed (may be empty)."""
    if decision is None:
        raise ValueError("mediator: no mediator answer to decide with")
    votes = list(answers)
    key = canonical(decision.value)
    support = sum(1 for a in votes if canonical(a.value) == key) / len(votes) if votes else 1.0
    return Consensus(ConsensusMethod.MEDIATOR_DECISION, True, decision.value, support)


def first_agree(answers: Sequence[Answer]) -> Consensus:
    votes = sorted(answers, key=lambda a: a.arrival)
    require_answers(votes, "first_agree")
    seen: dict[str, Answer] = {}
    for answer in votes:
        key = canonical(answer.value)
        if key in seen:
            count = sum(1 for a in votes if canonical(a.value) == key)
            return Consensus(ConsensusMethod.FIRST_AGREEMENT, True, seen[key].value, count / len(votes))
        seen[key] = answer
    return _none(ConsensusMethod.FIRST_AGREEMENT, 1 / len(votes))


def decide(
    method: ConsensusMethod, answers: Sequence[Answer], mediator_answer: Answer | None = None
) -> Consensus:
    """Consensus by ``method``."""
    if method is ConsensusMethod.MAJORITY_VOTE:
        return majority(answers)
    if method is ConsensusMethod.UNANIMOUS:
        return unanimous(answers)
    if method is ConsensusMethod.WEIGHTED_VOTE:
        return weighted(answers)
    if method is ConsensusMethod.MEDIATOR_DECISION:
        return mediator(answers, mediator_answer)
    return first_agree(answers)


__all__ = ["Consensus", "decide", "first_agree", "majority", "mediator", "unanimous", "weighted"]
