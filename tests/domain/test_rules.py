"""One example test per rule of the domain model (API.md §3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest
from pydantic import ValidationError

from qmcp_agents.domain import (
    AgentCapability,
    AgentConfig,
    AgentInstance,
    AgentRole,
    AgentType,
    AgentTypeCreate,
    AgentTypeRead,
    AgentTypeUpdate,
    ChainOfCommandConfig,
    CompoundConfig,
    ConsensusMethod,
    CrossCheckConfig,
    DebateConfig,
    DelegationConfig,
    EnsembleConfig,
    Execution,
    ExecutionCreate,
    ExecutionRead,
    ExecutionStatus,
    InvalidTransition,
    Message,
    MessageCreate,
    MessageRead,
    MessageType,
    PipelineConfig,
    Result,
    Topology,
    TopologyCreate,
    TopologyMembership,
    TopologyRead,
    TopologyType,
    TopologyUpdate,
    uuid7,
)
from qmcp_agents.domain.ids import uuid7_many
from qmcp_agents.domain.upcasting import CURRENT_SCHEMA_VERSION, upcast


def make_type(**overrides: object) -> AgentType:
    fields: dict[str, object] = {"name": "planner", "description": "plans", "role": AgentRole.PLANNER}
    fields.update(overrides)
    return AgentType.model_validate(fields)


# --- seed defaults and behaviours ---------------------------------------------------------


def test_seed_defaults() -> None:
    config = AgentConfig()
    assert (config.model, config.temperature, config.max_tokens) == ("claude-sonnet-4-20250514", 0.7, 4096)
    assert (config.max_retries, config.timeout_seconds, config.max_tool_calls) == (3, 300, 10)
    debate = DebateConfig()
    assert (debate.max_rounds, debate.consensus_method, debate.convergence_threshold) == (
        3,
        ConsensusMethod.MEDIATOR_DECISION,
        0.8,
    )
    assert CrossCheckConfig().num_checkers == 3
    ensemble = EnsembleConfig()
    assert (ensemble.aggregation_method.value, ensemble.diversity_weight, ensemble.failure_threshold) == (
        "synthesis",
        0.3,
        0.5,
    )
    pipeline = PipelineConfig()
    assert (pipeline.retry_failed_stages, pipeline.max_stage_retries) == (True, 2)
    assert CompoundConfig().composition_type == "sequential"
    chain = ChainOfCommandConfig()
    assert chain.authority_levels == ["commander", "lieutenant", "worker"]
    assert (chain.escalation_threshold, chain.max_delegation_depth) == (0.5, 3)
    delegation = DelegationConfig()
    assert (delegation.routing_strategy, delegation.load_balance) == ("capability_match", True)
    assert make_type().version == "1.0.0"


def test_enum_values_are_exact() -> None:
    assert [t.value for t in TopologyType] == [
        "debate",
        "chain",
        "delegation",
        "crosscheck",
        "ensemble",
        "pipeline",
        "compound",
    ]
    assert [r.value for r in AgentRole] == [
        "planner",
        "executor",
        "reviewer",
        "critic",
        "synthesizer",
        "specialist",
        "coordinator",
        "observer",
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 2.5),
        ("temperature", -0.1),
        ("max_tokens", 0),
        ("max_retries", -1),
        ("timeout_seconds", 0),
        ("max_tool_calls", -1),
        ("temperature", "0.7"),
        ("max_tokens", True),
    ],
)
def test_agent_config_bounds(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        AgentConfig.model_validate({field: value})


def test_validate_name_lowercases_and_rejects() -> None:
    assert AgentType.validate_name("Planner_1-A") == "planner_1-a"
    assert make_type(name="ReViewer").name == "reviewer"
    for bad in ["", "has space", "dot.name", "x" * 65, "\u212a", "caf\u00e9"]:
        with pytest.raises(ValueError, match="name"):
            AgentType.validate_name(bad)
    with pytest.raises(ValidationError, match="name"):
        Topology(name="no spaces", description="d", topology_type=TopologyType.ENSEMBLE)


def test_version_and_description_bounds() -> None:
    with pytest.raises(ValidationError, match="version"):
        make_type(version="1.0")
    with pytest.raises(ValidationError, match="version"):
        make_type(version="\u0661.0.0")  # Arabic-Indic digit: \d would admit it
    with pytest.raises(ValidationError, match="description"):
        make_type(description="")
    with pytest.raises(ValidationError, match="description"):
        make_type(description="x" * 1025)


def test_agent_type_config_accepts_dict_and_validates() -> None:
    agent = make_type(config={"temperature": 1.0, "capabilities": [{"name": "search"}]})
    assert isinstance(agent.config, AgentConfig)
    assert agent.config.capabilities[0].version == "1.0.0"
    with pytest.raises(ValidationError, match="temperature"):
        make_type(config={"temperature": 3.0})
    with pytest.raises(ValidationError, match="unknown_key"):
        make_type(config={"unknown_key": 1})


def test_capabilities_unique_and_has_capability() -> None:
    agent = make_type(config={"capabilities": [{"name": "search"}, {"name": "code", "enabled": False}]})
    assert [c.name for c in agent.get_capabilities()] == ["search", "code"]
    assert agent.has_capability("search")
    assert not agent.has_capability("code")  # disabled capabilities do not count
    assert not agent.has_capability("missing")
    agent.get_capabilities()[0].name = "changed"
    assert agent.config.capabilities[0].name == "search"
    with pytest.raises(ValidationError, match="search"):
        AgentConfig(capabilities=[AgentCapability(name="search"), AgentCapability(name="search")])


def test_agent_type_update_and_read() -> None:
    agent = make_type(id=7)
    changed = agent.apply(AgentTypeUpdate(description="new", config=AgentConfig(temperature=0.1)))
    assert (changed.description, changed.config.temperature, changed.name) == ("new", 0.1, "planner")
    assert agent.description == "plans"
    read = AgentTypeRead.from_entity(changed)
    assert read.config["temperature"] == 0.1
    with pytest.raises(ValueError, match="not been saved"):
        AgentTypeRead.from_entity(make_type())
    assert AgentTypeCreate(name="X", description="d", role="critic").config == AgentConfig()


def test_update_state_merges_and_stamps() -> None:
    instance = AgentInstance(agent_type_id=1, state={"a": 1, "b": 2})
    assert instance.last_active is None
    instance.update_state({"b": 3, "c": [1]})
    assert instance.state == {"a": 1, "b": 3, "c": [1]}
    assert instance.last_active is not None
    assert instance.last_active >= instance.created_at
    with pytest.raises(ValidationError, match="state"):
        instance.update_state({"bad": float("nan")})
    assert instance.state == {"a": 1, "b": 3, "c": [1]}


# --- metadata alias, ids, timestamps --------------------------------------------------------


def test_metadata_accepts_both_names_and_serialises_as_metadata() -> None:
    for key in ("metadata", "metadata_"):
        instance = AgentInstance.model_validate({"agent_type_id": 1, key: {"k": 1}})
        assert instance.metadata == {"k": 1} == instance.metadata_
        dumped = instance.model_dump()
        assert dumped["metadata"] == {"k": 1}
        assert "metadata_" not in dumped
        execution = Execution.model_validate({"topology_id": 1, "input_data": {}, key: {"k": 2}})
        assert execution.model_dump()["metadata"] == {"k": 2}
    assert ExecutionCreate.model_validate(
        {"topology_name": "t", "input_data": {}, "metadata_": {"a": 1}}
    ).metadata == {"a": 1}


def test_uuids_are_version_7_and_time_ordered() -> None:
    ids = [uuid7() for _ in range(2000)] + uuid7_many(5000) + [uuid7()]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert isinstance(Execution(topology_id=1, input_data={}).id, UUID)


def test_naive_timestamps_are_utc_and_truncated() -> None:
    naive = datetime(2025, 1, 2, 3, 4, 5, 678901)
    instance = AgentInstance(agent_type_id=1, created_at=naive)
    assert instance.created_at == datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    paris = datetime(2025, 1, 2, 4, 4, 5, 678901, tzinfo=timezone(timedelta(hours=1)))
    assert AgentInstance(agent_type_id=1, created_at=paris).created_at == instance.created_at


# --- topologies ---------------------------------------------------------------------------


def test_topology_config_validated_on_set_and_typed() -> None:
    topology = Topology(
        name="d", description="x", topology_type=TopologyType.DEBATE, config={"max_rounds": 4}
    )
    assert topology.get_typed_config() == DebateConfig(max_rounds=4)
    with pytest.raises(ValidationError, match="max_rounds"):
        topology.config = {"max_rounds": 99}
    assert topology.config == {"max_rounds": 4}
    with pytest.raises(ValidationError, match="max_rounds"):
        topology.topology_type = TopologyType.PIPELINE  # the config does not fit a pipeline
    assert topology.topology_type is TopologyType.DEBATE
    assert topology.apply(TopologyUpdate(config={"max_rounds": 2})).config == {"max_rounds": 2}
    with pytest.raises(ValidationError, match="max_rounds"):
        topology.apply(TopologyUpdate(config={"max_rounds": 0}))
    with pytest.raises(ValidationError, match="stages"):
        TopologyCreate(
            name="p", description="x", topology_type=TopologyType.PIPELINE, config={"stages": ["a", "a"]}
        )


def test_pipeline_checkpoints_must_be_stages() -> None:
    PipelineConfig(stages=["a", "b"], checkpoint_after=["b"])
    with pytest.raises(ValidationError, match="checkpoint_after"):
        PipelineConfig(stages=["a"], checkpoint_after=["b"])


def test_membership_rules() -> None:
    membership = TopologyMembership(
        agent_type_id=1, slot_name="mediator", config_overrides={"temperature": 0.2}
    )
    assert membership.topology_id is None
    with pytest.raises(ValidationError, match="temperature"):
        TopologyMembership(agent_type_id=1, slot_name="m", config_overrides={"temperature": 9.0})
    with pytest.raises(ValidationError, match="nope"):
        TopologyMembership(agent_type_id=1, slot_name="m", config_overrides={"nope": 1})
    with pytest.raises(ValidationError, match="position"):
        TopologyMembership(agent_type_id=1, slot_name="m", position=-1)
    with pytest.raises(ValidationError, match="slot_name 'a'"):
        Topology(
            name="t",
            description="x",
            topology_type=TopologyType.ENSEMBLE,
            memberships=[TopologyMembership(agent_type_id=1, slot_name="a")] * 2,
        )
    effective = AgentConfig(temperature=0.9).with_overrides(membership.config_overrides)
    assert effective.temperature == 0.2


def test_topology_read_counts_agents() -> None:
    topology = Topology(
        id=3,
        name="t",
        description="x",
        topology_type=TopologyType.ENSEMBLE,
        memberships=[TopologyMembership(agent_type_id=1, slot_name=s) for s in "ab"],
    )
    assert TopologyRead.from_entity(topology).agent_count == 2


# --- executions ---------------------------------------------------------------------------


def test_status_cannot_be_assigned() -> None:
    execution = Execution(topology_id=1, input_data={})
    with pytest.raises(AttributeError, match="start"):
        execution.status = ExecutionStatus.RUNNING
    with pytest.raises(AttributeError):
        execution.completed_at = datetime.now(UTC)
    assert execution.status is ExecutionStatus.PENDING


def test_completed_at_must_match_status_on_load() -> None:
    with pytest.raises(ValidationError, match="completed_at is required"):
        Execution(topology_id=1, input_data={}, status=ExecutionStatus.FAILED)
    with pytest.raises(ValidationError, match="completed_at must be None"):
        Execution(topology_id=1, input_data={}, completed_at=datetime.now(UTC))


def test_mark_complete_and_failed() -> None:
    execution = Execution(topology_id=1, input_data={"q": 1})
    with pytest.raises(InvalidTransition, match="'pending' to 'completed'"):
        execution.mark_complete({"a": 1})
    execution.start()
    with pytest.raises(ValidationError, match="output_data"):
        execution.mark_complete({"a": float("inf")})
    assert execution.status is ExecutionStatus.RUNNING
    execution.mark_complete({"a": 1})
    assert execution.output_data == {"a": 1}
    assert ExecutionRead.from_entity(execution).duration_ms == execution.duration_ms
    failed = Execution(topology_id=1, input_data={})
    failed.mark_failed("boom", {"why": "x"})
    assert (failed.status, failed.error, failed.error_details) == (
        ExecutionStatus.FAILED,
        "boom",
        {"why": "x"},
    )
    with pytest.raises(InvalidTransition):
        failed.cancel()


# --- messages and results ----------------------------------------------------------------


def test_broadcast_has_no_recipient() -> None:
    sender = uuid7()
    MessageCreate(sender_id=sender, message_type=MessageType.BROADCAST, content={})
    with pytest.raises(ValidationError, match="broadcast"):
        MessageCreate(sender_id=sender, recipient_id=uuid7(), message_type=MessageType.BROADCAST, content={})
    with pytest.raises(ValidationError, match="round_number"):
        MessageCreate(sender_id=sender, message_type=MessageType.REQUEST, content={}, round_number=-1)
    with pytest.raises(ValidationError, match="sequence_number"):
        MessageCreate.model_validate(
            {"sender_id": sender, "message_type": "request", "content": {}, "sequence_number": 5}
        )
    message = Message(
        execution_id=uuid7(), sender_id=sender, message_type=MessageType.SYSTEM, content={"x": 1}
    )
    assert MessageRead.from_entity(message).content == {"x": 1}


@pytest.mark.parametrize("confidence", [-0.01, 1.01, float("nan")])
def test_result_confidence_bounds(confidence: float) -> None:
    with pytest.raises(ValidationError, match="confidence"):
        Result(execution_id=uuid7(), agent_instance_id=uuid7(), output={}, confidence=confidence)


def test_result_token_usage() -> None:
    result = Result(
        execution_id=uuid7(), agent_instance_id=uuid7(), output={}, token_usage={"in": 3, "out": 4}
    )
    assert result.total_tokens == 7
    for bad in ({"in": -1}, {"in": 2**63}, {"in": 1.5}, {"in": "3"}):
        with pytest.raises(ValidationError, match="token_usage"):
            Result(execution_id=uuid7(), agent_instance_id=uuid7(), output={}, token_usage=bad)


def test_revision_starts_at_zero_before_save() -> None:
    assert make_type().revision == 0
    assert Execution(topology_id=1, input_data={}).revision == 0


def test_upcaster_reads_seed_rows() -> None:
    row = {"agent_type_id": 1, "metadata_": {"a": 1}, "state": {}}
    upgraded = upcast(row, None)
    assert upgraded == {"agent_type_id": 1, "metadata": {"a": 1}, "state": {}, "revision": 1}
    assert AgentInstance.model_validate(upgraded).revision == 1
    assert upcast({"x": 1}, CURRENT_SCHEMA_VERSION) == {"x": 1}
    with pytest.raises(ValueError, match="newer"):
        upcast({}, CURRENT_SCHEMA_VERSION + 1)


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="colour"):
        Execution.model_validate({"topology_id": 1, "input_data": {}, "colour": "red"})
