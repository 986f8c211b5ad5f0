"""Entity <-> row conversion: the one place that knows how each model maps to its table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qmcp_agents.domain import (
    AgentInstance,
    AgentType,
    Execution,
    Message,
    Result,
    Topology,
    TopologyMembership,
)
from qmcp_agents.domain.upcasting import CURRENT_SCHEMA_VERSION, upcast

Row = dict[str, Any]
RowLike = Mapping[Any, Any]
"""A result row as SQLAlchemy returns it (keys are column names)."""
_INTERNAL = ("schema_version", "last_sequence_number")


def _loaded(row: RowLike) -> Row:
    data = dict(row)
    version = data.get("schema_version")
    for key in _INTERNAL:
        data.pop(key, None)
    return upcast(data, version)


def agent_type_row(entity: AgentType) -> Row:
    return {
        "id": entity.id,
        "name": entity.name,
        "description": entity.description,
        "role": entity.role.value,
        "version": entity.version,
        "config": entity.config.model_dump(mode="json"),
        "created_at": entity.created_at,
        "updated_at": entity.updated_at,
        "revision": entity.revision,
        "schema_version": CURRENT_SCHEMA_VERSION,
    }


def agent_type_from(row: RowLike) -> AgentType:
    return AgentType.model_validate(_loaded(row))


def topology_row(entity: Topology) -> Row:
    return {
        "id": entity.id,
        "name": entity.name,
        "description": entity.description,
        "topology_type": entity.topology_type.value,
        "version": entity.version,
        "config": entity.config,
        "created_at": entity.created_at,
        "updated_at": entity.updated_at,
        "revision": entity.revision,
        "schema_version": CURRENT_SCHEMA_VERSION,
    }


def membership_row(entity: TopologyMembership, topology_id: int) -> Row:
    row = {
        "topology_id": topology_id,
        "agent_type_id": entity.agent_type_id,
        "slot_name": entity.slot_name,
        "position": entity.position,
        "config_overrides": entity.config_overrides,
    }
    if entity.id is not None:
        row["id"] = entity.id
    return row


def topology_from(row: RowLike, members: list[RowLike]) -> Topology:
    data = _loaded(row)
    data["memberships"] = [dict(m) for m in members]
    return Topology.model_validate(data)


def instance_row(entity: AgentInstance) -> Row:
    return {
        "id": entity.id,
        "agent_type_id": entity.agent_type_id,
        "execution_id": entity.execution_id,
        "state": entity.state,
        "metadata": entity.metadata,
        "created_at": entity.created_at,
        "last_active": entity.last_active,
        "revision": entity.revision,
        "schema_version": CURRENT_SCHEMA_VERSION,
    }


def instance_from(row: RowLike) -> AgentInstance:
    return AgentInstance.model_validate(_loaded(row))


def execution_row(entity: Execution) -> Row:
    return {
        "id": entity.id,
        "topology_id": entity.topology_id,
        "parent_id": entity.parent_id,
        "status": entity.status.value,
        "input_data": entity.input_data,
        "output_data": entity.output_data,
        "correlation_id": entity.correlation_id,
        "metadata": entity.metadata,
        "started_at": entity.started_at,
        "completed_at": entity.completed_at,
        "error": entity.error,
        "error_details": entity.error_details,
        "revision": entity.revision,
        "schema_version": CURRENT_SCHEMA_VERSION,
    }


def execution_from(row: RowLike) -> Execution:
    return Execution.model_validate(_loaded(row))


def message_from(row: RowLike) -> Message:
    return Message.model_validate(_loaded(row))


def result_row(entity: Result) -> Row:
    return {
        "id": entity.id,
        "execution_id": entity.execution_id,
        "agent_instance_id": entity.agent_instance_id,
        "output": entity.output,
        "confidence": entity.confidence,
        "reasoning": entity.reasoning,
        "token_usage": entity.token_usage,
        "started_at": entity.started_at,
        "completed_at": entity.completed_at,
        "revision": entity.revision,
        "schema_version": CURRENT_SCHEMA_VERSION,
    }


def result_from(row: RowLike) -> Result:
    return Result.model_validate(_loaded(row))
