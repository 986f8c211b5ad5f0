"""``for_update_matching`` says exactly what ``for_update`` checks of the stored entity: a
stored entity matches if and only if ``for_update`` accepts ``new`` over it, and then it
writes what the match says (issue 16: a store may write in one conditional statement)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from qmcp_agents.domain import FINAL_STATUSES, AgentInstance, AgentRole, AgentType, Execution, ExecutionStatus
from qmcp_agents.domain.integrity import UpdateMatch, for_update, for_update_matching

T0 = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
T1 = T0 + timedelta(days=1)


class _Int(int):
    """An int that a store would write as a plain one."""


def _matches(stored: Any, match: UpdateMatch) -> bool:
    return (
        stored.id == match.id
        and stored.revision == match.revision
        and all(getattr(stored, field) == value for field, value in match.unchanged.items())
        and (match.statuses is None or stored.status in match.statuses)
        and (match.not_after is None or stored.updated_at <= match.not_after)
    )


def _execution(status: ExecutionStatus, **fields: Any) -> Execution:
    final = status in FINAL_STATUSES
    data: dict[str, Any] = {"topology_id": 1, "input_data": {}, "started_at": T0, "revision": 3}
    data.update(fields)
    return Execution.model_validate({**data, "status": status, "completed_at": T1 if final else None})


def _accepts(stored: Any, new: Any) -> Any:
    try:
        return for_update(stored, new)
    except Exception:
        return None


def test_an_execution_matches_exactly_the_stored_entities_for_update_accepts_it_over() -> None:
    key, parent = uuid4(), uuid4()
    variants: list[dict[str, Any]] = [
        {},
        {"revision": 2},
        {"topology_id": 2},
        {"parent_id": parent},
        {"started_at": T0 + timedelta(milliseconds=1)},
    ]
    for source, target, variant in itertools.product(ExecutionStatus, ExecutionStatus, variants):
        new = _execution(target, id=key, output_data={"answer": 1})
        matched = for_update_matching(new)
        assert matched is not None
        written, match = matched
        stored = _execution(source, id=key, **variant)
        accepted = _accepts(stored, new)
        assert _matches(stored, match) == (accepted is not None), (source, target, variant)
        if accepted is not None:
            assert written == accepted


def test_an_agent_type_matches_only_while_its_stored_updated_at_is_not_ahead() -> None:
    new = AgentType(id=4, name="a", description="d", role=AgentRole.PLANNER, revision=1)
    matched = for_update_matching(new)
    assert matched is not None
    written, match = matched
    assert match.not_after == written.updated_at
    assert match.unchanged == {"name": "a"}
    behind = new.model_copy(update={"updated_at": written.updated_at - timedelta(days=1)})
    ahead = new.model_copy(update={"updated_at": written.updated_at + timedelta(days=1)})
    assert _matches(behind, match)
    assert not _matches(ahead, match)
    assert for_update(ahead, new).updated_at == ahead.updated_at  # what the match leaves to it


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # values forged past validation
@pytest.mark.parametrize(
    "forged",
    [
        {"started_at": T0 + timedelta(microseconds=5)},  # truncated for the store
        {"started_at": T0.replace(tzinfo=None)},  # taken to be UTC by the store
        {"status": "running"},  # text, not the enum
        {"revision": "3"},
        {"id": "not a uuid"},
        {"id": None},
        {"topology_id": True},  # equal to 1, another type
        {"topology_id": _Int(1)},  # equal to 1, another type (validated to a plain int)
        {"completed_at": T0},  # invalid: not final
    ],
)
def test_values_a_store_would_convert_leave_the_entity_to_the_checked_path(forged: dict[str, Any]) -> None:
    new = _execution(ExecutionStatus.RUNNING).model_copy(update=forged)
    assert for_update_matching(new) is None


def test_an_instance_match_holds_its_binding_and_creation_time() -> None:
    execution_id = uuid4()
    instance = AgentInstance(agent_type_id=1, execution_id=execution_id, created_at=T0, revision=5)
    matched = for_update_matching(instance)
    assert matched is not None
    written, match = matched
    assert (match.id, match.revision, match.statuses, match.not_after) == (instance.id, 5, None, None)
    assert match.unchanged == {"created_at": T0, "execution_id": execution_id}
    assert written.revision == 6
    assert written.model_copy(update={"revision": 5}) == instance
