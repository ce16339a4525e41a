"""Validation of single fields inside a record; each failure is a `RowError` naming the field."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from admap.errors import RowError


def require_text(record: Mapping[str, Any], key: str, field: str | None = None) -> str:
    field = field or key
    if key not in record:
        raise RowError(field, "missing")
    return check_text(record[key], field)


def check_text(value: Any, field: str) -> str:
    if value is None:
        raise RowError(field, "is null")
    if not isinstance(value, str):
        raise RowError(field, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise RowError(field, "is empty")
    return value


def check_rating(value: Any, field: str) -> float:
    """A finite number (numeric strings accepted, as CSV cells are strings); None and NaN refused."""
    if value is None:
        raise RowError(field, "rating is null")
    if isinstance(value, bool):
        raise RowError(field, f"rating must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise RowError(field, f"rating must be a number, got {value!r}") from None
    if not isinstance(value, (int, float)):
        raise RowError(field, f"rating must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise RowError(field, f"rating must be finite, got {value}")
    return float(value)


def lenient_rating(value: Any) -> float:
    """Secondary ratings (other UltraFeedback aspects): 'N/A' and junk become NaN, never an error."""
    try:
        return check_rating(value, "")
    except RowError:
        return math.nan


def check_messages(value: Any, field: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise RowError(field, "must be a non-empty list of {role, content} messages")
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise RowError(f"{field}[{index}]", "must be an object with 'role' and 'content'")
        messages.append(
            {
                "role": check_text(message["role"], f"{field}[{index}].role"),
                "content": check_text(message["content"], f"{field}[{index}].content"),
            }
        )
    return messages
