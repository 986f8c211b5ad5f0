"""Laws of the seating rule (domain/seating.py), of diversity in aggregation, and of the
run budget, as Hypothesis properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qmcp_agents.domain import AgentRole
from qmcp_agents.domain.aggregation import best_of, diversified, lone, synthesis
from qmcp_agents.domain.engine.budget import Budget, LimitExceeded, Limits, add_usage, tokens_of
from qmcp_agents.domain.seating import (
    MEDIATOR_ROLES,
    MEDIATOR_SLOT,
    SYNTHESIZER_SLOT,
    Seat,
    chain_slots,
    mediator_seat,
    synthesizer_seat,
)
from qmcp_agents.domain.votes import Answer, canonical

from .test_consensus_laws import answer_lists

slots = st.sampled_from(["a", "b", "c", "d", MEDIATOR_SLOT, SYNTHESIZER_SLOT])
roles = st.sampled_from([r.value for r in AgentRole])
types = st.sampled_from(["t1", "t2", "t3"])


@st.composite
def seat_lists(draw: st.DrawFn) -> list[Seat]:
    names = draw(st.lists(slots, unique=True, max_size=6))
    return [Seat(slot, draw(types), draw(roles), draw(st.integers(0, 5))) for slot in names]


@given(seat_lists(), st.randoms(use_true_random=False), st.none() | types)
def test_who_mediates_does_not_depend_on_the_order_of_members(
    seats: list[Seat], random: Any, named: str | None
) -> None:
    shuffled = list(seats)
    random.shuffle(shuffled)
    assert mediator_seat(seats, named) == mediator_seat(shuffled, named)
    assert synthesizer_seat(seats) == synthesizer_seat(shuffled)


@given(seat_lists(), st.none() | types)
def test_the_mediator_follows_name_then_slot_then_role(seats: list[Seat], named: str | None) -> None:
    chosen = mediator_seat(seats, named)
    if named is not None:
        assert (chosen is None) == all(s.agent_type != named for s in seats)
        assert chosen is None or chosen.agent_type == named
    elif any(s.slot == MEDIATOR_SLOT for s in seats):
        assert chosen is not None
        assert chosen.slot == MEDIATOR_SLOT
    elif any(s.role in MEDIATOR_ROLES for s in seats):
        assert chosen is not None
        first_role = next(r for r in MEDIATOR_ROLES if any(s.role == r for s in seats))
        assert chosen.role == first_role
        assert chosen.position == min(s.position for s in seats if s.role == first_role)
    else:
        assert chosen is None


@given(seat_lists())
def test_the_synthesizer_is_the_slot_else_the_role(seats: list[Seat]) -> None:
    chosen = synthesizer_seat(seats)
    if any(s.slot == SYNTHESIZER_SLOT for s in seats):
        assert chosen is not None
        assert chosen.slot == SYNTHESIZER_SLOT
    else:
        assert (chosen is None) == all(s.role != AgentRole.SYNTHESIZER.value for s in seats)


@given(st.lists(st.text(min_size=1), unique=True, min_size=1, max_size=5), st.lists(types, max_size=7))
def test_a_chain_seats_agents_top_down_one_per_level(levels: list[str], agents: list[str]) -> None:
    if len(agents) > len(levels):
        with pytest.raises(ValueError, match="seat one agent each"):
            chain_slots(levels, agents)
    else:
        assert chain_slots(levels, agents) == levels[: len(agents)]


@given(answer_lists(), st.floats(0.0, 1.0))
def test_diversity_raises_only_lone_answers(answers: list[Answer], diversity: float) -> None:
    unique = lone(answers)
    for before, after in zip(answers, diversified(answers, diversity), strict=True):
        if before.agent in unique:
            assert after.weight == pytest.approx(before.weight * (1 + diversity))
        else:
            assert after.weight == before.weight
        assert (after.value, after.confidence, after.position) == (
            before.value,
            before.confidence,
            before.position,
        )
    assert diversified(answers, 0.0) == answers


@given(answer_lists(), st.floats(0.0, 1.0))
def test_best_of_with_diversity_picks_the_plain_winner_or_a_lone_answer(
    answers: list[Answer], diversity: float
) -> None:
    plain = best_of(answers).value
    assert canonical(best_of(answers, 0.0).value) == canonical(plain)
    chosen = best_of(answers, diversity).value
    lone_values = {canonical(a.value) for a in answers if a.agent in lone(answers)}
    assert canonical(chosen) == canonical(plain) or canonical(chosen) in lone_values
    reversed_answers = list(reversed(answers))
    assert canonical(best_of(reversed_answers, diversity).value) == canonical(chosen)


@given(answer_lists(), st.floats(0.0, 1.0))
def test_a_synthesizer_sees_the_diversity_weights(answers: list[Answer], diversity: float) -> None:
    seen = synthesis(answers, lambda given: [a.weight for a in given], diversity).value
    expected = [
        a.weight for a in sorted(diversified(answers, diversity), key=lambda a: (a.position, a.agent))
    ]
    assert seen == pytest.approx(expected)


usages = st.dictionaries(
    st.sampled_from(["input", "output", "requests", "tool_calls"]), st.integers(0, 10**6)
)


@given(st.lists(usages, max_size=8), st.integers(0, 10**6))
def test_a_budget_fails_exactly_when_input_plus_output_exceed_it(
    spent: list[dict[str, int]], budget: int
) -> None:
    run = Budget(Limits(token_budget=budget))
    total: dict[str, int] = {}
    for usage in spent:
        run.add(usage)
        add_usage(total, usage)
    assert tokens_of(run.usage) == tokens_of(total)
    over = tokens_of(total) > budget
    if over:
        with pytest.raises(LimitExceeded) as raised:
            run.check_tokens()
        assert raised.value.details == {
            "limit": "token_budget",
            "token_budget": budget,
            "used": tokens_of(total),
        }
    else:
        run.check_tokens()
    assert run.child_limits().token_budget == max(0, budget - tokens_of(total))
