"""Typed topology configs: valid ranges are accepted, everything else is rejected."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from qmcp_agents.domain import (
    AggregationMethod,
    ConsensusMethod,
    Topology,
    TopologyType,
)
from qmcp_agents.domain.topology_configs import CONFIG_TYPES

names = st.from_regex(r"[a-z0-9_-]{1,20}", fullmatch=True)
unit = st.floats(min_value=0.0, max_value=1.0)
labels = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), min_size=1, max_size=10)

FIELDS: dict[TopologyType, dict[str, st.SearchStrategy[Any]]] = {
    TopologyType.DEBATE: {
        "max_rounds": st.integers(1, 10),
        "consensus_method": st.sampled_from([m.value for m in ConsensusMethod]),
        "convergence_threshold": unit,
        "allow_early_termination": st.booleans(),
        "mediator_agent_name": st.none() | names,
    },
    TopologyType.CHAIN_OF_COMMAND: {
        "authority_levels": st.lists(labels, min_size=1, max_size=4, unique=True),
        "escalation_threshold": unit,
        "max_delegation_depth": st.integers(1, 1000),
    },
    TopologyType.DELEGATION: {
        "routing_strategy": st.sampled_from(["capability_match", "round_robin"]),
        "load_balance": st.booleans(),
        "fallback_agent_name": st.none() | names,
    },
    TopologyType.CROSS_CHECK: {
        "num_checkers": st.integers(2, 10),
        "consensus_method": st.sampled_from([m.value for m in ConsensusMethod]),
        "require_unanimous_for_approval": st.booleans(),
        "checker_specializations": st.lists(labels, max_size=3),
    },
    TopologyType.ENSEMBLE: {
        "aggregation_method": st.sampled_from([m.value for m in AggregationMethod]),
        "diversity_weight": unit,
        "failure_threshold": unit,
    },
    TopologyType.PIPELINE: {
        "retry_failed_stages": st.booleans(),
        "max_stage_retries": st.integers(0, 100),
    },
    TopologyType.COMPOUND: {
        "sub_topologies": st.lists(names, max_size=4, unique=True),
        "composition_type": st.sampled_from(["sequential", "parallel", "conditional"]),
    },
}

OUT_OF_RANGE: dict[TopologyType, dict[str, st.SearchStrategy[Any]]] = {
    TopologyType.DEBATE: {
        "max_rounds": st.integers(max_value=0) | st.integers(min_value=11),
        "convergence_threshold": st.floats(max_value=-1e-9, allow_infinity=False)
        | st.floats(min_value=1.000001, allow_infinity=False),
        "consensus_method": st.just("plurality"),
        "mediator_agent_name": st.just("Not A Name!"),
    },
    TopologyType.CHAIN_OF_COMMAND: {
        "authority_levels": st.just([]) | st.just(["a", "a"]),
        "escalation_threshold": st.floats(min_value=1.000001, allow_infinity=False),
        "max_delegation_depth": st.integers(max_value=0),
    },
    TopologyType.DELEGATION: {"routing_strategy": st.just("random"), "load_balance": st.just("yes")},
    TopologyType.CROSS_CHECK: {
        "num_checkers": st.integers(max_value=1) | st.integers(min_value=11),
        "consensus_method": st.just(3),
    },
    TopologyType.ENSEMBLE: {
        "aggregation_method": st.just("median"),
        "diversity_weight": st.floats(min_value=1.000001, allow_infinity=False),
        "failure_threshold": st.floats(max_value=-1e-9, allow_infinity=False),
    },
    TopologyType.PIPELINE: {
        "max_stage_retries": st.integers(max_value=-1),
        "stages": st.just(["a", "a"]),
        "checkpoint_after": st.just(["never-a-stage"]),
    },
    TopologyType.COMPOUND: {
        "composition_type": st.just("random"),
        "sub_topologies": st.just(["x", "x"]) | st.just(["BAD NAME"]),
    },
}


@st.composite
def valid_configs(draw: st.DrawFn, topology_type: TopologyType) -> dict[str, Any]:
    fields = FIELDS[topology_type]
    keys = draw(st.sets(st.sampled_from(sorted(fields))))
    config = {key: draw(fields[key]) for key in sorted(keys)}
    if topology_type is TopologyType.PIPELINE:
        stages = draw(st.lists(labels, max_size=5, unique=True))
        config["stages"] = stages
        config["checkpoint_after"] = draw(st.lists(st.sampled_from(stages), unique=True)) if stages else []
    return config


@st.composite
def invalid_configs(draw: st.DrawFn, topology_type: TopologyType) -> tuple[dict[str, Any], str]:
    config = draw(valid_configs(topology_type))
    choice = draw(st.sampled_from([*sorted(OUT_OF_RANGE[topology_type]), "__unknown__", "__wrong_type__"]))
    if choice == "__unknown__":
        config["no_such_option"] = 1
        return config, "no_such_option"
    if choice == "__wrong_type__":
        key = draw(st.sampled_from(sorted(FIELDS[topology_type])))
        config[key] = {"not": "a scalar"}
        return config, key
    config[choice] = draw(OUT_OF_RANGE[topology_type][choice])
    return config, choice


ALL_TYPES = list(TopologyType)


@pytest.mark.parametrize("topology_type", ALL_TYPES, ids=lambda t: t.value)
@given(data=st.data())
def test_configs_in_range_are_accepted(topology_type: TopologyType, data: st.DataObject) -> None:
    config = data.draw(valid_configs(topology_type))
    topology = Topology(name="t", description="d", topology_type=topology_type, config=config)
    typed = topology.get_typed_config()
    assert isinstance(typed, CONFIG_TYPES[topology_type])
    for key, value in config.items():
        stored = getattr(typed, key)
        assert (stored.value if hasattr(stored, "value") else stored) == value
    assert set(topology.config) == set(config)


@pytest.mark.parametrize("topology_type", ALL_TYPES, ids=lambda t: t.value)
@given(data=st.data())
def test_configs_out_of_range_are_rejected(topology_type: TopologyType, data: st.DataObject) -> None:
    config, key = data.draw(invalid_configs(topology_type))
    names_key = rf"config(\.{key}|\n.*\$\['{key}'\])"
    with pytest.raises(ValidationError, match=names_key):
        Topology(name="t", description="d", topology_type=topology_type, config=config)
    # ... and on assignment, leaving the topology as it was.
    topology = Topology(name="t", description="d", topology_type=topology_type)
    with pytest.raises(ValidationError, match=names_key):
        topology.config = config
    assert topology.config == {}
