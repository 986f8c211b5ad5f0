"""The base class of every domain model and the small field types they share."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    field_validator,
)

NAME_PATTERN = re.compile(r"[a-z0-9_-]{1,64}")

INT32_MAX = 2**31 - 1
"""The largest id, counter or position a store holds: PostgreSQL ``integer`` columns are
signed 32-bit, so the domain refuses more before any backend sees it."""


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

SemVer = Annotated[str, StringConstraints(strict=True, max_length=64, pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")]
"""``MAJOR.MINOR.PATCH`` with ASCII digits (``\\d`` would also admit other scripts' digits),
at most 64 characters (the SQL column's width)."""


def _no_nul_or_surrogate(value: str) -> str:
    if "\x00" in value:
        raise ValueError(f"string contains a NUL character: {value!r}")
    if not value.isascii() and has_lone_surrogate(value):
        raise ValueError(f"string contains a lone surrogate (not valid Unicode text): {value!r}")
    return value


def has_lone_surrogate(value: str) -> bool:
    """Whether ``value`` holds a surrogate code point, which is not text: PostgreSQL refuses it
    and SQLite would merge a pair of them into one character, so it would not read back equal."""
    return _SURROGATE.search(value) is not None


_SURROGATE = re.compile("[\ud800-\udfff]")

Text = Annotated[str, StringConstraints(strict=True), AfterValidator(_no_nul_or_surrogate)]
"""A plain string without NUL characters (PostgreSQL text columns refuse NUL) or lone
surrogates (no backend stores them as written)."""

Int32 = Annotated[StrictInt, Field(ge=0, le=INT32_MAX)]
"""A stored counter or position (``revision``, ``round_number``, ``sequence_number``, ...)."""

StoredId = Annotated[StrictInt, Field(ge=1, le=INT32_MAX)]
"""An id a store assigns to agent types, topologies and memberships."""

Description = Annotated[Text, Field(min_length=1, max_length=1024)]
ShortText = Annotated[Text, Field(min_length=1, max_length=255)]

__all__ = [
    "INT32_MAX",
    "NAME_PATTERN",
    "Int32",
    "StoredId",
    "has_lone_surrogate",
    "Description",
    "DomainModel",
    "NamedModel",
    "Name",
    "SemVer",
    "ShortText",
    "Text",
    "normalize_name",
]
