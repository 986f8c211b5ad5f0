"""Topologies (how agents collaborate) and their memberships."""

from __future__ import annotations

from typing import Any

from pydantic import (
    Field,
    NonNegativeInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .agent import check_config_overrides
from .base import Description, DomainModel, Int32, Name, NamedModel, SemVer, ShortText, StoredId
from .clock import UtcDatetime, utc_now
from .enums import TopologyType
from .json_payload import JsonObject
from .topology_configs import TopologyConfig, normalize_config, parse_config


def _config_error(topology_type: TopologyType, error: ValidationError) -> ValueError:
    details = "; ".join(
        f"config.{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']} (got {e.get('input')!r})"
        for e in error.errors()
    )
    return ValueError(f"invalid {topology_type.value} config: {details}")


def _validated_config(topology_type: TopologyType | None, config: dict[str, Any]) -> dict[str, Any]:
    if topology_type is None:  # the type itself failed validation; that error is reported
        return config
    try:
        return normalize_config(topology_type, config)
    except ValidationError as error:
        raise _config_error(topology_type, error) from None


class TopologyBase(NamedModel):
    """Fields shared by topology inputs, reads and the entity."""

    description: Description
    topology_type: TopologyType
    version: SemVer = "1.0.0"


class _ConfigChecked(TopologyBase):
    """Validates ``config`` against the typed config of ``topology_type`` whenever set."""

    config: JsonObject = Field(default_factory=dict)

    @field_validator("config")
    @classmethod
    def _config_matches_type(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return _validated_config(info.data.get("topology_type"), value)

    @model_validator(mode="after")
    def _config_matches_new_type(self) -> Any:
        # Runs on assignment too, so changing ``topology_type`` re-checks the config.
        self.__dict__["config"] = _validated_config(self.topology_type, self.config)
        return self

    def get_typed_config(self) -> TopologyConfig:
        """The config as the typed model of this topology's type."""
        return parse_config(self.topology_type, self.config)


class TopologyCreate(_ConfigChecked):
    """Input for creating a topology; members are given by agent type name."""

    agent_names: list[Name] = Field(default_factory=list)


class TopologyUpdate(DomainModel):
    """Input for changing a topology; fields left ``None`` stay as they are."""

    description: Description | None = None
    config: JsonObject | None = None
    version: SemVer | None = None


class TopologyMembership(DomainModel):
    """One agent type's seat in a topology, with per-topology config overrides."""

    id: StoredId | None = None
    topology_id: StoredId | None = None
    agent_type_id: StoredId
    slot_name: ShortText
    position: Int32 = 0
    config_overrides: JsonObject = Field(default_factory=dict)

    @field_validator("config_overrides")
    @classmethod
    def _overrides_are_partial_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_config_overrides(value)


class Topology(_ConfigChecked):
    """A persistent collaboration pattern and its members (one aggregate)."""

    id: StoredId | None = None
    memberships: list[TopologyMembership] = Field(default_factory=list)
    created_at: UtcDatetime = Field(default_factory=utc_now)
    updated_at: UtcDatetime = Field(default_factory=utc_now)
    revision: Int32 = 0

    @field_validator("memberships")
    @classmethod
    def _slots_unique(cls, value: list[TopologyMembership]) -> list[TopologyMembership]:
        seen: set[str] = set()
        for membership in value:
            if membership.slot_name in seen:
                raise ValueError(f"slot_name {membership.slot_name!r} is used by more than one member")
            seen.add(membership.slot_name)
        return value

    def apply(self, update: TopologyUpdate) -> Topology:
        """A copy of this topology with the fields ``update`` sets."""
        changes = update.model_dump(exclude_none=True, exclude_unset=True)
        return self.model_validate({**self.model_dump(), **changes})


class TopologyRead(TopologyBase):
    """Output view of a topology."""

    id: int
    config: dict[str, Any]
    created_at: UtcDatetime
    agent_count: NonNegativeInt

    @classmethod
    def from_entity(cls, entity: Topology) -> TopologyRead:
        if entity.id is None:
            raise ValueError("topology has not been saved yet (id is None)")
        return cls(
            id=entity.id,
            name=entity.name,
            description=entity.description,
            topology_type=entity.topology_type,
            version=entity.version,
            config=dict(entity.config),
            created_at=entity.created_at,
            agent_count=len(entity.memberships),
        )


__all__ = [
    "Topology",
    "TopologyBase",
    "TopologyCreate",
    "TopologyMembership",
    "TopologyRead",
    "TopologyUpdate",
]
