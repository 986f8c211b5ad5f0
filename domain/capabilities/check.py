"""The save-time rule for capabilities: every entry registered, configured and satisfied.

Stores call :func:`check_agent_config` when an agent type is added or updated (through the
write rules in :mod:`qmcp_agents.domain.integrity`), and topology rules call it for a
membership's ``config_overrides`` that replace the capability list. Loading never checks:
an agent type stored before a capability was renamed or unregistered still loads, and is
refused only when it is saved again (or run) with that capability -- see docs/capabilities.md.

Problems are reported as Pydantic ``ValidationError`` with the path of the offending field
(``config.capabilities.1.config.max_memories``), like every other bad input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from qmcp_agents.domain.agent import AgentCapability, AgentConfig
from qmcp_agents.domain.errors import CapabilityError, DependencyCycle

from .registry import CapabilityRegistry

Loc = tuple[str | int, ...]


def _error(loc: Loc, message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("capability", "{message}", {"message": message}), loc=loc, input=value
    )


def capability_errors(
    capabilities: Sequence[AgentCapability], registry: CapabilityRegistry, loc: Loc
) -> list[InitErrorDetails]:
    """Every problem with ``capabilities`` (an agent config's list), located under ``loc``."""
    errors: list[InitErrorDetails] = []
    by_name = {c.name: c for c in capabilities}
    for index, capability in enumerate(capabilities):
        here = (*loc, index)
        if capability.name not in registry:
            errors.append(
                _error(
                    (*here, "name"),
                    f"unknown capability {capability.name!r}; registered: {', '.join(registry.names())}",
                    capability.name,
                )
            )
            continue
        definition = registry.get(capability.name)
        if int(capability.version.split(".", 1)[0]) != definition.major:
            errors.append(
                _error(
                    (*here, "version"),
                    f"capability {capability.name!r} version {capability.version} does not match the "
                    f"registered major version {definition.version}",
                    capability.version,
                )
            )
        try:
            definition.config_class.model_validate(capability.config)
        except ValidationError as exc:
            for e in exc.errors():
                errors.append(
                    InitErrorDetails(
                        type=PydanticCustomError(
                            e["type"], "{message}", {"message": f"capability {capability.name!r}: {e['msg']}"}
                        ),
                        loc=(*here, "config", *e["loc"]),
                        input=e["input"],
                    )
                )
        if not capability.enabled:
            continue
        for dependency in definition.depends_on:
            needed = by_name.get(dependency)
            if needed is None or not needed.enabled:
                state = "missing" if needed is None else "disabled"
                errors.append(
                    _error(
                        (*here, "name"),
                        f"capability {capability.name!r} depends on {dependency!r}, which is {state} "
                        f"in this config; add it (enabled) or disable {capability.name!r}",
                        capability.name,
                    )
                )
    if not errors:
        try:
            registry.resolve(c.name for c in capabilities if c.enabled)
        except DependencyCycle as exc:
            errors.append(_error(loc, str(exc), [c.name for c in capabilities]))
        except CapabilityError as exc:  # a dependency's own dependency is not registered
            errors.append(_error(loc, str(exc), [c.name for c in capabilities]))
    return errors


def check_capabilities(
    capabilities: Sequence[AgentCapability],
    registry: CapabilityRegistry,
    *,
    title: str = "AgentConfig",
    loc: Loc = ("capabilities",),
) -> None:
    errors = capability_errors(capabilities, registry, loc)
    if errors:
        raise ValidationError.from_exception_data(title, errors)


def check_agent_config(
    config: AgentConfig, registry: CapabilityRegistry, *, title: str = "AgentType"
) -> None:
    """Refuse ``config`` (an agent type's) unless its capabilities are all sound."""
    check_capabilities(config.capabilities, registry, title=title, loc=("config", "capabilities"))


def check_overrides(overrides: dict[str, Any], registry: CapabilityRegistry, loc: Loc) -> None:
    """A membership's ``config_overrides`` replace the whole capability list when they name one."""
    if "capabilities" not in overrides:
        return
    partial = AgentConfig.model_validate({"capabilities": overrides["capabilities"]})
    check_capabilities(partial.capabilities, registry, title="TopologyMembership", loc=(*loc, "capabilities"))


__all__ = ["capability_errors", "check_agent_config", "check_capabilities", "check_overrides"]
