"""Entity <-> BSON document conversion, and the escaping that lets any JSON key be stored.

MongoDB gives field names that start with ``$`` or contain ``.`` special meaning (and
older servers refuse them), and the empty name is awkward in paths. JSON payloads may use
any key, so payload keys are escaped on the way in and unescaped on the way out:
``%`` -> ``%25``, ``$`` -> ``%24``, ``.`` -> ``%2E``, and the empty key becomes ``%``
(which no escaped non-empty key can be). Values are stored as native BSON: documents,
arrays, strings, 64-bit ints, doubles, booleans and nulls; datetimes as BSON dates and
UUIDs as standard binary UUIDs. Nothing is pickled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bson.int64 import Int64

from qmcp_agents.domain import AgentInstance, AgentType, Execution, Message, Result, Topology
from qmcp_agents.domain.upcasting import CURRENT_SCHEMA_VERSION, upcast

Document = dict[str, Any]
_SPECIAL = ("%", "$", ".")


def _escape_key(key: str) -> str:
    if not key:
        return "%"
    if "%" in key or "$" in key or "." in key:
        return key.replace("%", "%25").replace("$", "%24").replace(".", "%2E")
    return key


def _unescape_key(key: str) -> str:
    if "%" not in key:
        return key
    if key == "%":
        return ""
    return key.replace("%2E", ".").replace("%24", "$").replace("%25", "%")


def escape(value: Any) -> Any:
    """A JSON value with every object key made safe for MongoDB."""
    kind = type(value)
    if kind is dict:
        return {_escape_key(k): escape(v) if type(v) in (dict, list) else v for k, v in value.items()}
    if kind is list:
        return [escape(v) if type(v) in (dict, list) else v for v in value]
    return value


def unescape(value: Any) -> Any:
    """The inverse of :func:`escape`; BSON's ``Int64`` comes back as a plain ``int``."""
    if isinstance(value, dict):
        return {_unescape_key(k): unescape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unescape(v) for v in value]
    if type(value) is Int64:
        return int(value)
    return value


def _maybe(value: Any) -> Any:
    return None if value is None else escape(value)


def _loaded(document: Mapping[str, Any], payloads: tuple[str, ...]) -> dict[str, Any]:
    data = dict(document)
    data["id"] = data.pop("_id")
    version = data.pop("schema_version", None)
    data.pop("last_sequence_number", None)
    data.pop("incarnation", None)
    data.pop("closing_killed", None)  # see adapters/mongo/closing.py
    for field in payloads:
        if data.get(field) is not None:
            data[field] = unescape(data[field])
    return upcast(data, version)


def agent_type_document(entity: AgentType) -> Document:
    return {
        "_id": entity.id,
        "name": entity.name,
        "description": entity.description,
        "role": entity.role.value,
        "version": entity.version,
        "config": escape(entity.config.model_dump(mode="json")),
        "created_at": entity.created_at,
        "updated_at": entity.updated_at,
        "revision": entity.revision,
        "schema_version": CURRENT_SCHEMA_VERSION,
    }


def agent_type_from(document: Mapping[str, Any]) -> AgentType:
    return AgentType.model_validate(_loaded(document, ("config",)))


def topology_document(entity: Topology) -> Document:
    return {
        "_id": entity.id,
        "name": entity.name,
        "description": entity.description,
        "topology_type": entity.topology_type.value,
        "version": entity.version,
        "config": escape(entity.config),
        "memberships": [
            {
                "id": m.id,
                "agent_type_id": m.agent_type_id,
                "slot_name": m.slot_name,
                "position": m.position,
                "config_overrides": escape(m.config_overrides),
            }
            for m in entity.memberships
        ],
        "created_at": entity.created_at,
        "updated_at": entity.updated_at,
        "revision": entity.revision,
        "schema_version": CURRENT_SCHEMA_VERSION,
    }


def topology_from(document: Mapping[str, Any]) -> Topology:
    data = _loaded(document, ("config",))
    data["memberships"] = [
        {**m, "topology_id": data["id"], "config_overrides": unescape(m["config_overrides"])}
        for m in data.get("memberships", [])
    ]
    return Topology.model_validate(data)


_INSTANCE_PAYLOADS = ("state", "metadata")


def instance_document(entity: AgentInstance) -> Document:
    return {
        "_id": entity.id,
        "agent_type_id": entity.agent_type_id,
        "execution_id": entity.execution_id,
        "state": escape(entity.state),
        "metadata": escape(entity.metadata),
        "created_at": entity.created_at,
        "last_active": entity.last_active,
        "revision": entity.revision,
        "schema_version": CURRENT_SCHEMA_VERSION,
    }


def instance_from(document: Mapping[str, Any]) -> AgentInstance:
    return AgentInstance.model_validate(_loaded(document, _INSTANCE_PAYLOADS))


_EXECUTION_PAYLOADS = ("input_data", "output_data", "metadata", "error_details")


def execution_document(entity: Execution) -> Document:
    return {
        "_id": entity.id,
        "topology_id": entity.topology_id,
        "parent_id": entity.parent_id,
        "status": entity.status.value,
        "input_data": escape(entity.input_data),
        "output_data": _maybe(entity.output_data),
        "correlation_id": entity.correlation_id,
        "metadata": escape(entity.metadata),
        "started_at": entity.started_at,
        "completed_at": entity.completed_at,
        "error": entity.error,
        "error_details": _maybe(entity.error_details),
        "revision": entity.revision,
        "schema_version": CURRENT_SCHEMA_VERSION,
    }


def execution_from(document: Mapping[str, Any]) -> Execution:
    return Execution.model_validate(_loaded(document, _EXECUTION_PAYLOADS))


_RESULT_PAYLOADS = ("output", "token_usage")


def result_document(entity: Result) -> Document:
    return {
        "_id": entity.id,
        "execution_id": entity.execution_id,
        "agent_instance_id": entity.agent_instance_id,
        "output": escape(entity.output),
        "confidence": entity.confidence,
        "reasoning": entity.reasoning,
        "token_usage": _maybe(entity.token_usage),
        "started_at": entity.started_at,
        "completed_at": entity.completed_at,
        "revision": entity.revision,
        "schema_version": CURRENT_SCHEMA_VERSION,
    }


def result_from(document: Mapping[str, Any]) -> Result:
    return Result.model_validate(_loaded(document, _RESULT_PAYLOADS))


def message_item(message: Message) -> Document:
    """One message inside a batch document (see ``repositories.MongoMessages``)."""
    return {
        "id": message.id,
        "sender_id": message.sender_id,
        "recipient_id": message.recipient_id,
        "message_type": message.message_type.value,
        "content": escape(message.content),
        "round_number": message.round_number,
        "sequence_number": message.sequence_number,
    }


def part_item(message: Message) -> Document:
    """One message inside a part document: its sequence number is only known when the
    head is written, so it is computed on reading (``messages_from_part``)."""
    item = message_item(message)
    del item["sequence_number"]
    return item


def messages_from_part(part: Mapping[str, Any], head: Mapping[str, Any]) -> list[Message]:
    """The messages of one part of ``head``'s append, numbered from the head's ``first``."""
    version = head.get("schema_version")
    shared = {"execution_id": head["execution_id"], "created_at": head["created_at"], "revision": 1}
    first = int(head["first"]) + int(part["offset"])
    out = []
    for offset, item in enumerate(part["items"]):
        data = {**item, **shared, "content": unescape(item["content"]), "sequence_number": first + offset}
        out.append(Message.model_validate(upcast(data, version)))
    return out


def messages_from(batch: Mapping[str, Any]) -> list[Message]:
    """The messages of one batch document, validated on the way out."""
    version = batch.get("schema_version")
    shared = {"execution_id": batch["execution_id"], "created_at": batch["created_at"], "revision": 1}
    out = []
    for item in batch["items"]:
        data = {**item, **shared, "content": unescape(item["content"])}
        out.append(Message.model_validate(upcast(data, version)))
    return out
