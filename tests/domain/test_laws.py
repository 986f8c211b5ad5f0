"""The domain's laws, as Hypothesis properties."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from qmcp_agents.domain import Execution, ExecutionStatus, InvalidTransition, to_utc_ms
from qmcp_agents.domain.base import normalize_name
from qmcp_agents.domain.json_payload import JsonPayloadError, check_json_object
from qmcp_agents.testing.stateful import LEGAL
from qmcp_agents.testing.strategies import json_objects, objects_with_one_bad_leaf

# --- names -----------------------------------------------------------------------------


@given(st.text(max_size=70))
def test_name_normalisation_is_idempotent_and_exact(raw: str) -> None:
    expected_ok = raw.isascii() and re.fullmatch(r"[a-z0-9_-]{1,64}", raw.lower()) is not None
    if not expected_ok:
        with pytest.raises(ValueError, match=re.escape(repr(raw))):
            normalize_name(raw)
        return
    name = normalize_name(raw)
    assert name == raw.lower()
    assert normalize_name(name) == name


@given(st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True))
def test_every_well_formed_name_is_accepted(raw: str) -> None:
    assert normalize_name(raw) == raw.lower()


# --- JSON payloads -----------------------------------------------------------------------


@given(json_objects)
def test_json_payload_is_accepted_and_survives_json_round_trip(payload: dict[str, Any]) -> None:
    checked = check_json_object(payload)
    assert checked == payload
    assert json.loads(json.dumps(checked)) == checked
    assert checked is not payload  # the model owns its copy


@given(objects_with_one_bad_leaf())
def test_non_json_payload_is_rejected_naming_the_path(payload: dict[str, Any]) -> None:
    with pytest.raises(JsonPayloadError, match=r"^\$"):
        check_json_object(payload)
    with pytest.raises(ValidationError, match="input_data"):
        Execution(topology_id=1, input_data=payload)


# --- timestamps --------------------------------------------------------------------------

offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@given(st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(9998, 1, 1)), st.none() | offsets)
def test_timestamps_are_utc_milliseconds(value: datetime, tz: timezone | None) -> None:
    given_value = value if tz is None else value.replace(tzinfo=tz)
    normalised = to_utc_ms(given_value)
    instant = given_value if tz is not None else value.replace(tzinfo=UTC)
    assert normalised.tzinfo is UTC
    assert normalised.microsecond % 1000 == 0
    assert normalised <= instant < normalised + timedelta(milliseconds=1)
    assert to_utc_ms(normalised) == normalised


# --- the execution status machine --------------------------------------------------------

# The status machine's moves, written out independently of domain/execution.py (shared
# with the conformance suite's state machine).
S = ExecutionStatus
MOVES = ["start", "pause", "resume", "cancel", "mark_complete", "mark_failed"]


def _apply(execution: Execution, move: str) -> None:
    if move == "mark_complete":
        execution.mark_complete({"answer": 42})
    elif move == "mark_failed":
        execution.mark_failed("boom", {"step": 1})
    else:
        getattr(execution, move)()


@given(st.lists(st.sampled_from(MOVES), max_size=12))
def test_random_status_moves_only_reach_legal_states(moves: list[str]) -> None:
    execution = Execution(topology_id=1, input_data={})
    for move in moves:
        before = execution.model_dump()
        expected = LEGAL.get((execution.status, move))
        if expected is None:
            with pytest.raises(InvalidTransition, match=str(execution.id)):
                _apply(execution, move)
            assert execution.model_dump() == before
        else:
            _apply(execution, move)
            assert execution.status is expected
        final = execution.status in {S.COMPLETED, S.FAILED, S.CANCELLED}
        assert (execution.completed_at is not None) == final
        if execution.completed_at is None:
            assert execution.duration_ms is None
        else:
            delta = execution.completed_at - execution.started_at
            assert (
                execution.duration_ms
                == delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
            )
            assert execution.duration_ms >= 0
        # The invariant survives a round trip through validation.
        assert Execution.model_validate(execution.model_dump()) == execution
