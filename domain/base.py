"""The base class of every domain model and the small field types they share."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator

NAME_PATTERN = re.compile(r"[a-z0-9_-]{1,64}")


class DomainModel(BaseModel):
    """Pydantic model with the domain's defaults.

    Unknown fields are refused (a typo must not silently drop data), assignments are
    validated like construction, enum fields keep their enum type, and a model passed in
    as a field value (or to ``model_validate``) is validated again and copied, so no two
    models ever share a mutable payload.
    """

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        validate_default=True,
        populate_by_name=True,
        use_enum_values=False,
        revalidate_instances="always",
    )

    def __setattr__(self, name: str, value: Any) -> None:
        # Pydantic applies an assignment before its model validators run, so a failing
        # cross-field check would leave the model changed. Validate on a copy, then commit.
        if name not in type(self).model_fields:
            super().__setattr__(name, value)
            return
        probe = self.model_copy()
        BaseModel.__setattr__(probe, name, value)
        self.__dict__.update(probe.__dict__)
        self.__pydantic_fields_set__.add(name)


def normalize_name(value: str) -> str:
    """Lowercase ``value`` and check it is 1..64 chars of ``[a-z0-9_-]``.

    Non-ASCII input is refused before lowercasing: ``"\\u212a".lower()`` is ``"k"`` and two
    different spellings must never map to one stored name. Idempotent by construction.
    """
    if not isinstance(value, str):
        raise ValueError(f"name must be a string, got {type(value).__name__} {value!r}")
    lowered = value.lower() if value.isascii() else value
    if not NAME_PATTERN.fullmatch(lowered):
        raise ValueError(
            f"name {value!r} must be 1 to 64 characters of a-z, 0-9, '_' or '-' (case-insensitive)"
        )
    return lowered


class NamedModel(DomainModel):
    """A model with a unique, case-insensitive name (agent types, topologies)."""

    name: str = Field(min_length=1, max_length=64)

    @field_validator("name", mode="before")
    @classmethod
    def validate_name(cls, v: str) -> str:
        """Names are case-insensitive identifiers: ``[a-z0-9_-]{1,64}`` after lowercasing."""
        return normalize_name(v)


Name = Annotated[str, AfterValidator(normalize_name)]
"""A unique, case-insensitive identifier (agent type and topology names)."""

SemVer = Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")]
"""``MAJOR.MINOR.PATCH`` with ASCII digits (``\\d`` would also admit other scripts' digits)."""

Text = Annotated[str, StringConstraints(strict=True, pattern=r"^[^\x00]*$")]
"""A plain string without NUL characters (PostgreSQL text columns refuse NUL)."""

Description = Annotated[Text, Field(min_length=1, max_length=1024)]
ShortText = Annotated[Text, Field(min_length=1, max_length=255)]

__all__ = [
    "NAME_PATTERN",
    "Description",
    "DomainModel",
    "NamedModel",
    "Name",
    "SemVer",
    "ShortText",
    "Text",
    "normalize_name",
]
