"""The capability registry: which capabilities exist, their typed configs, their order.

An agent type lists :class:`~qmcp_agents.domain.agent.AgentCapability` entries by name; the
registry is what gives those names a meaning. Each :class:`CapabilityDefinition` names a
Pydantic config class (so a capability's ``config`` is checked like any other field) and
the capabilities it needs. Applications register their own definitions with the same call
as the built-ins (:func:`register`), before they save agent types that use them.

Dependency order comes from the standard library's :class:`graphlib.TopologicalSorter`:
registering accepts dependencies on names not registered yet (definitions may arrive in
any order), and a cycle is refused when an order is asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any

from pydantic import BaseModel, ConfigDict

from qmcp_agents.domain.base import NAME_PATTERN
from qmcp_agents.domain.errors import CapabilityError, DependencyCycle

from .hooks import CapabilityHooks

_SEMVER = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")


class CapabilityConfig(BaseModel):
    """Base class of capability configs: strict about unknown keys, like every domain model."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)


@dataclass(frozen=True, slots=True)
class CapabilityDefinition:
    """What a capability is: its name, version, config class and dependencies.

    ``version`` is the definition's semantic version; an agent type's capability entry must
    carry the same *major* version (a new major version means stored configs may no longer
    mean what they meant). ``hooks`` is the behaviour class the engine instantiates per agent
    and run (:mod:`.hooks`); a capability with nothing to do at run time keeps the no-op base.
    """

    name: str
    version: str
    config_class: type[BaseModel]
    depends_on: tuple[str, ...] = ()
    description: str = ""
    hooks: type[CapabilityHooks] = CapabilityHooks

    def __post_init__(self) -> None:
        if not NAME_PATTERN.fullmatch(self.name):
            raise CapabilityError(
                f"capability name {self.name!r} must be 1 to 64 characters of a-z, 0-9, _ or -"
            )
        if not _SEMVER.fullmatch(self.version):
            raise CapabilityError(
                f"capability {self.name!r}: version {self.version!r} is not MAJOR.MINOR.PATCH"
            )
        if not (isinstance(self.config_class, type) and issubclass(self.config_class, BaseModel)):
            raise CapabilityError(
                f"capability {self.name!r}: config_class must be a Pydantic model class, "
                f"got {self.config_class!r}"
            )
        if not (isinstance(self.hooks, type) and issubclass(self.hooks, CapabilityHooks)):
            raise CapabilityError(f"capability {self.name!r}: hooks must be a CapabilityHooks subclass")
        if self.name in self.depends_on:
            raise DependencyCycle(f"capability {self.name!r} depends on itself")
        if len(set(self.depends_on)) != len(self.depends_on):
            raise CapabilityError(
                f"capability {self.name!r}: depends_on {list(self.depends_on)} repeats a name"
            )

    @property
    def major(self) -> int:
        return int(self.version.split(".", 1)[0])

    def config_fields(self) -> list[dict[str, Any]]:
        """Each config field with its type and default, for listings (`capabilities list`)."""
        out = []
        for name, info in self.config_class.model_fields.items():
            default: Any = None if info.is_required() else info.get_default(call_default_factory=True)
            out.append(
                {
                    "name": name,
                    "type": _type_name(info.annotation),
                    "required": info.is_required(),
                    "default": default,
                    "description": info.description or "",
                }
            )
        return out


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


@dataclass
class CapabilityRegistry:
    """A set of capability definitions by name. :data:`registry` is the one stores use."""

    _definitions: dict[str, CapabilityDefinition] = field(default_factory=dict)

    @classmethod
    def of(cls, definitions: Iterable[CapabilityDefinition]) -> CapabilityRegistry:
        out = cls()
        for definition in definitions:
            out.register(definition)
        return out

    def register(self, definition: CapabilityDefinition, *, replace: bool = False) -> CapabilityDefinition:
        """Add ``definition``; a name already registered is refused unless ``replace``."""
        if not isinstance(definition, CapabilityDefinition):
            raise CapabilityError(f"register() takes a CapabilityDefinition, got {definition!r}")
        if definition.name in self._definitions and not replace:
            raise CapabilityError(
                f"capability {definition.name!r} is already registered "
                f"(version {self._definitions[definition.name].version}); pass replace=True to replace it"
            )
        self._definitions[definition.name] = definition
        return definition

    def unregister(self, name: str) -> None:
        self.get(name)
        del self._definitions[name]

    def get(self, name: str) -> CapabilityDefinition:
        """The definition of ``name``; an unknown name is refused listing the registered ones."""
        try:
            return self._definitions[name]
        except KeyError:
            raise CapabilityError(
                f"unknown capability {name!r}; registered capabilities: {', '.join(self.names()) or '(none)'}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._definitions

    def __iter__(self) -> Iterator[CapabilityDefinition]:
        return iter(sorted(self._definitions.values(), key=lambda d: d.name))

    def __len__(self) -> int:
        return len(self._definitions)

    def names(self) -> list[str]:
        return sorted(self._definitions)

    def copy(self) -> CapabilityRegistry:
        return CapabilityRegistry(dict(self._definitions))

    def resolve(self, names: Iterable[str] | None = None) -> list[str]:
        """``names`` (default: every registered one) in an order where each capability comes
        after everything it depends on; ties are broken by name so the order is stable.

        Dependencies that are themselves registered are included, so hooks can run for them;
        a name or dependency that is not registered raises :class:`CapabilityError`, and a
        cycle raises :class:`DependencyCycle` naming it.
        """
        wanted = self.names() if names is None else sorted(set(names))
        graph: dict[str, tuple[str, ...]] = {}
        pending = list(wanted)
        while pending:
            name = pending.pop()
            if name in graph:
                continue
            definition = self.get(name)
            graph[name] = definition.depends_on
            pending.extend(d for d in definition.depends_on if d not in graph)
        sorter: TopologicalSorter[str] = TopologicalSorter()
        for name in sorted(graph):
            sorter.add(name, *sorted(graph[name]))
        try:
            sorter.prepare()
        except CycleError as exc:
            cycle: list[str] = list(exc.args[1])
            raise DependencyCycle(f"capability dependencies form a cycle: {' -> '.join(cycle)}") from None
        order: list[str] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready())
            order.extend(ready)
            sorter.done(*ready)
        return order


__all__ = ["CapabilityConfig", "CapabilityDefinition", "CapabilityRegistry"]
