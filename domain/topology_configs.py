"""Typed configurations, one per topology type.

A topology stores its config as a JSON object; these models say what that object may
contain. They refuse unknown keys (a misspelt ``max_round`` must not be silently ignored)
and values of the wrong type (``"3"`` is not ``3``), and check the cross-field rules.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, ValidationInfo, field_validator

from .base import DomainModel, Name, ShortText
from .enums import AggregationMethod, ConsensusMethod, TopologyType

Fraction = StrictFloat


def _unique(field: str, values: list[str]) -> list[str]:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{field} lists {value!r} more than once")
        seen.add(value)
    return values


class TopologyConfig(DomainModel):
    """Base class of the typed configs."""


class DebateConfig(TopologyConfig):
    """Agents argue in rounds until they converge or ``max_rounds`` is reached."""

    max_rounds: StrictInt = Field(default=3, ge=1, le=10)
    consensus_method: ConsensusMethod = ConsensusMethod.MEDIATOR_DECISION
    convergence_threshold: Fraction = Field(default=0.8, ge=0.0, le=1.0)
    allow_early_termination: StrictBool = True
    mediator_agent_name: Name | None = None


class ChainOfCommandConfig(TopologyConfig):
    """A hierarchy: work flows down the authority levels and escalates up."""

    authority_levels: list[ShortText] = Field(
        default_factory=lambda: ["commander", "lieutenant", "worker"], min_length=1
    )
    escalation_threshold: Fraction = Field(default=0.5, ge=0.0, le=1.0)
    max_delegation_depth: StrictInt = Field(default=3, ge=1)

    @field_validator("authority_levels")
    @classmethod
    def _levels_unique(cls, value: list[str]) -> list[str]:
        return _unique("authority_levels", value)


RoutingStrategy = Literal["capability_match", "round_robin"]


class DelegationConfig(TopologyConfig):
    """A coordinator routes each task to the member best able to do it."""

    routing_strategy: RoutingStrategy = "capability_match"
    load_balance: StrictBool = True
    fallback_agent_name: Name | None = None


class CrossCheckConfig(TopologyConfig):
    """Several checkers validate one answer independently."""

    num_checkers: StrictInt = Field(default=3, ge=2, le=10)
    consensus_method: ConsensusMethod = ConsensusMethod.MAJORITY_VOTE
    require_unanimous_for_approval: StrictBool = False
    checker_specializations: list[ShortText] = Field(default_factory=list)


class EnsembleConfig(TopologyConfig):
    """All members answer in parallel; their outputs are aggregated."""

    aggregation_method: AggregationMethod = AggregationMethod.SYNTHESIS
    diversity_weight: Fraction = Field(default=0.3, ge=0.0, le=1.0)
    failure_threshold: Fraction = Field(default=0.5, ge=0.0, le=1.0)


class PipelineConfig(TopologyConfig):
    """Stages run in order, each fed the previous stage's output."""

    stages: list[ShortText] = Field(default_factory=list)
    checkpoint_after: list[ShortText] = Field(default_factory=list)
    retry_failed_stages: StrictBool = True
    max_stage_retries: StrictInt = Field(default=2, ge=0)

    @field_validator("stages")
    @classmethod
    def _stages_unique(cls, value: list[str]) -> list[str]:
        return _unique("stages", value)

    @field_validator("checkpoint_after")
    @classmethod
    def _checkpoints_are_stages(cls, value: list[str], info: ValidationInfo) -> list[str]:
        stages = info.data.get("stages", [])
        unknown = [s for s in value if s not in stages]
        if unknown:
            raise ValueError(f"checkpoint_after names stages that are not in stages: {unknown!r}")
        return _unique("checkpoint_after", value)


CompositionType = Literal["sequential", "parallel", "conditional"]


class CompoundConfig(TopologyConfig):
    """Sub-topologies composed sequentially, in parallel or conditionally."""

    sub_topologies: list[Name] = Field(default_factory=list)
    composition_type: CompositionType = "sequential"

    @field_validator("sub_topologies")
    @classmethod
    def _subs_unique(cls, value: list[str]) -> list[str]:
        return _unique("sub_topologies", value)


CONFIG_TYPES: dict[TopologyType, type[TopologyConfig]] = {
    TopologyType.DEBATE: DebateConfig,
    TopologyType.CHAIN_OF_COMMAND: ChainOfCommandConfig,
    TopologyType.DELEGATION: DelegationConfig,
    TopologyType.CROSS_CHECK: CrossCheckConfig,
    TopologyType.ENSEMBLE: EnsembleConfig,
    TopologyType.PIPELINE: PipelineConfig,
    TopologyType.COMPOUND: CompoundConfig,
}


def parse_config(topology_type: TopologyType, config: dict[str, Any]) -> TopologyConfig:
    """Validate ``config`` against the typed config of ``topology_type``."""
    return CONFIG_TYPES[topology_type].model_validate(config)


def normalize_config(topology_type: TopologyType, config: dict[str, Any]) -> dict[str, Any]:
    """The JSON form of ``config`` after validation, keeping only the keys the user set.

    Defaults are not frozen into stored data, so what a user wrote is what they read.
    """
    return parse_config(topology_type, config).model_dump(mode="json", exclude_unset=True)


__all__ = [
    "CONFIG_TYPES",
    "ChainOfCommandConfig",
    "CompositionType",
    "CompoundConfig",
    "CrossCheckConfig",
    "DebateConfig",
    "DelegationConfig",
    "EnsembleConfig",
    "PipelineConfig",
    "RoutingStrategy",
    "TopologyConfig",
    "normalize_config",
    "parse_config",
]
