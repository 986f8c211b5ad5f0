"""JSON text for PostgreSQL's JSONB that reads back as the same Python values.

JSONB stores numbers as ``numeric`` and prints them without the exponent they were given
in: ``1e+16`` comes back as ``10000000000000000``, which ``json.loads`` turns into an
``int`` (and for most such floats a *different* number). Writing every float in positional
notation with a fractional part (``10000000000000000.0``) makes ``numeric`` keep a scale of
at least one, so it prints a decimal point and the value reads back as the same ``float``.
Floats whose ``repr`` has no exponent already carry a point, so the common case is plain
``json.dumps``; only payloads that contain an exponent take the slower exact path.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

_EXPONENT = re.compile(r"[0-9]e[-+]?[0-9]")
_encode_str = json.encoder.encode_basestring


def _positional(value: float) -> str:
    text = repr(value)
    if "e" not in text:
        return text
    digits = format(Decimal(text), "f")
    return digits if "." in digits else digits + ".0"


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(_encode_str(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(_positional(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(_encode_str(key))
            out.append(":")
            _encode(item, out)
        out.append("}")
    else:
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")


def dumps(value: Any) -> str:
    """Like ``json.dumps`` (compact, UTF-8), but exact for JSONB."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if _EXPONENT.search(text) is None:
        return text
    out: list[str] = []
    _encode(value, out)
    return "".join(out)
