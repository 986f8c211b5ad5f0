"""Agent types (templates) and agent instances (one agent taking part in a run)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import (
    AliasChoices,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
)

from .base import Description, DomainModel, Int32, NamedModel, SemVer, ShortText, StoredId, Text
from .clock import UtcDatetime, utc_now
from .enums import AgentRole
from .ids import uuid7
from .json_payload import JsonObject

DEFAULT_MODEL = "claude-sonnet-4-20250514"


class AgentCapability(DomainModel):
    """One composable capability attached to an agent type."""

    name: ShortText
    version: SemVer = "1.0.0"
    config: JsonObject = Field(default_factory=dict)
    enabled: StrictBool = True


class AgentConfig(DomainModel):
    """LLM, behaviour and resource settings of an agent type (stored as JSON)."""

    model: ShortText = DEFAULT_MODEL
    temperature: StrictFloat = Field(default=0.7, ge=0.0, le=2.0, allow_inf_nan=False)
    max_tokens: StrictInt = Field(default=4096, gt=0)
    system_prompt: Text | None = None
    output_format: Text | None = None
    max_retries: StrictInt = Field(default=3, ge=0)
    timeout_seconds: StrictInt = Field(default=300, gt=0)
    max_tool_calls: StrictInt = Field(default=10, ge=0)
    capabilities: list[AgentCapability] = Field(default_factory=list)

    @field_validator("capabilities")
    @classmethod
    def _capability_names_unique(cls, value: list[AgentCapability]) -> list[AgentCapability]:
        seen: set[str] = set()
        for capability in value:
            if capability.name in seen:
                raise ValueError(f"capability name {capability.name!r} appears more than once")
            seen.add(capability.name)
        return value

    def with_overrides(self, overrides: dict[str, Any]) -> AgentConfig:
        """The effective config of a topology member: this config, then its overrides."""
        merged = {**self.model_dump(mode="json"), **overrides}
        return AgentConfig.model_validate(merged)


def check_config_overrides(value: dict[str, Any]) -> dict[str, Any]:
    """A membership's ``config_overrides`` must be a valid *partial* :class:`AgentConfig`.

    Every ``AgentConfig`` field has a default, so validating the overrides alone checks
    each key exists and each value is in range, without inventing the missing ones.
    """
    AgentConfig.model_validate(value)
    return value


class AgentTypeBase(NamedModel):
    """Fields shared by agent type inputs, reads and the entity."""

    description: Description
    role: AgentRole
    version: SemVer = "1.0.0"


class AgentTypeCreate(AgentTypeBase):
    """Input for registering a new agent type."""

    config: AgentConfig = Field(default_factory=AgentConfig)


class AgentTypeUpdate(DomainModel):
    """Input for changing an agent type; fields left ``None`` stay as they are."""

    description: Description | None = None
    role: AgentRole | None = None
    version: SemVer | None = None
    config: AgentConfig | None = None


class AgentType(AgentTypeBase):
    """A persistent agent template: role, configuration and capabilities."""

    id: StoredId | None = None
    config: AgentConfig = Field(default_factory=AgentConfig)
    created_at: UtcDatetime = Field(default_factory=utc_now)
    updated_at: UtcDatetime = Field(default_factory=utc_now)
    revision: Int32 = 0

    def get_capabilities(self) -> list[AgentCapability]:
        """All capabilities of this type (copies: changing them changes nothing here)."""
        return [c.model_copy(deep=True) for c in self.config.capabilities]

    def has_capability(self, name: str) -> bool:
        """Whether this type has the capability ``name`` *enabled*.

        A disabled capability is, per its own field, not active; routing must not pick an
        agent for it.
        """
        return any(c.name == name and c.enabled for c in self.config.capabilities)

    def apply(self, update: AgentTypeUpdate) -> AgentType:
        """A copy of this agent type with the fields ``update`` sets."""
        changes = update.model_dump(exclude_none=True, exclude_unset=True)
        return self.model_validate({**self.model_dump(), **changes, "config": update.config or self.config})


class AgentTypeRead(AgentTypeBase):
    """Output view of an agent type."""

    id: int
    config: dict[str, Any]
    created_at: UtcDatetime
    updated_at: UtcDatetime

    @classmethod
    def from_entity(cls, entity: AgentType) -> AgentTypeRead:
        if entity.id is None:
            raise ValueError("agent type has not been saved yet (id is None)")
        return cls(
            id=entity.id,
            name=entity.name,
            description=entity.description,
            role=entity.role,
            version=entity.version,
            config=entity.config.model_dump(mode="json"),
            created_at=entity.created_at,
            updated_at=entity.updated_at,
        )


class AgentInstance(DomainModel):
    """One agent of a given type taking part in an execution, with its mutable state."""

    id: UUID = Field(default_factory=uuid7)
    agent_type_id: StoredId
    execution_id: UUID | None = None
    state: JsonObject = Field(default_factory=dict)
    metadata: JsonObject = Field(default_factory=dict, validation_alias=AliasChoices("metadata", "metadata_"))
    created_at: UtcDatetime = Field(default_factory=utc_now)
    last_active: UtcDatetime | None = None
    revision: Int32 = 0

    @property
    def metadata_(self) -> dict[str, Any]:
        """The specification's spelling of :attr:`metadata`."""
        return self.metadata

    def update_state(self, updates: dict[str, Any]) -> None:
        """Merge ``updates`` into the state (top level keys) and stamp ``last_active``."""
        self.state = {**self.state, **updates}
        self.last_active = utc_now()


__all__ = [
    "DEFAULT_MODEL",
    "AgentCapability",
    "AgentConfig",
    "AgentInstance",
    "AgentType",
    "AgentTypeBase",
    "AgentTypeCreate",
    "AgentTypeRead",
    "AgentTypeUpdate",
    "check_config_overrides",
]
