"""A JSON Schema validator for the ``structured_output`` capability, on ``jsonschema``.

Imported by :mod:`qmcp_agents.adapters`; does nothing when ``jsonschema`` is not installed
(the capability then says what to install when it is used).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from qmcp_agents.domain.capabilities.structured import set_schema_validator


def _path(parts: Any) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def install() -> bool:
    try:
        import jsonschema
    except ImportError:
        return False

    @lru_cache(maxsize=256)
    def validator_for(schema_json: str) -> Any:
        import json

        schema = json.loads(schema_json)
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as error:
            raise ValueError(
                f"output_schema is not a valid JSON Schema at {_path(error.path)}: {error.message}"
            ) from None
        return cls(schema)

    def problems(schema: dict[str, Any], instance: Any) -> list[str]:
        import json

        validator = validator_for(json.dumps(schema, sort_keys=True))
        return [
            f"{_path(e.absolute_path)}: {e.message}"
            for e in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
        ]

    set_schema_validator(problems)
    return True


installed = install()
