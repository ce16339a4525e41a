"""Validation of single fields inside a record; each failure is a `RowError` naming the field.

Real datasets hold empty responses and unrated completions: those are values, not errors. An
error is a value that cannot mean anything in its place (a number where text belongs, a rating
that is not a number).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from admap.errors import RowError

# How datasets spell "no rating": UltraFeedback writes "N/A" for an aspect it did not rate,
# hub datasets give None for a missing value, CSV cells are empty.
MISSING_RATINGS = frozenset({"", "n/a", "na", "nan", "none", "null"})


def _present(record: Mapping[str, Any], key: str, field: str) -> Any:
    if key not in record:
        raise RowError(field, "missing")
    return record[key]


def require_text(record: Mapping[str, Any], key: str, field: str | None = None) -> str:
    """A non-empty string: for prompts and ids, which mean nothing when empty."""
    return check_text(_present(record, key, field or key), field or key)


def require_string(record: Mapping[str, Any], key: str, field: str | None = None) -> str:
    """A string, possibly empty: for responses, where an empty answer is a real (bad) answer."""
    return check_string(_present(record, key, field or key), field or key)


def check_text(value: Any, field: str) -> str:
    value = check_string(value, field)
    if not value.strip():
        raise RowError(field, "is empty")
    return value


def check_string(value: Any, field: str) -> str:
    if value is None:
        raise RowError(field, "is null")
    if not isinstance(value, str):
        raise RowError(field, f"must be a string, got {type(value).__name__}")
    # isascii() is O(1) in CPython (a flag of the string), so ASCII text, most of real data, costs
    # nothing more; only other text is encoded, which finds a lone surrogate.
    if not value.isascii():
        _check_encodable(value, field)
    return value


def _check_encodable(text: str, field: str) -> None:
    """JSON's ``\\ud800`` escape decodes to a lone surrogate, a code point no UTF-8 writer (Parquet,
    tokenizers, summary.json) accepts: invalid text, refused where it is read rather than when written."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise RowError(
            field, f"is not valid text (lone surrogate {text[error.start]!r} at character {error.start})"
        ) from None


def check_id(value: Any, field: str) -> str:
    """An id as text: a non-empty string, or a number as tables store ids."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if value is not None and not isinstance(value, str):
        raise RowError(field, f"must be a string or a number, got {type(value).__name__}")
    return check_text(value, field)


def is_missing_rating(value: Any) -> bool:
    """None, NaN or a string such as "N/A": the dataset gives no rating here."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in MISSING_RATINGS


def check_rating(value: Any, field: str) -> float:
    """A finite number (numeric strings accepted, as CSV cells and UltraFeedback's aspect ratings are
    strings), or NaN where the dataset gives no rating (`is_missing_rating`); anything else is refused."""
    if type(value) in (int, float) and math.isfinite(value):  # the common case, first: UltraFeedback has 10^6
        return float(value)
    if is_missing_rating(value):
        return math.nan
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
    """Secondary ratings (other UltraFeedback aspects): junk becomes NaN, never an error."""
    try:
        return check_rating(value, "")
    except RowError:
        return math.nan


def check_messages(value: Any, field: str) -> list[dict[str, str]]:
    """A non-empty list of ``{role, content}``; a turn's content may be empty (real dialogues have
    empty turns), its role may not."""
    if not isinstance(value, list) or not value:
        raise RowError(field, "must be a non-empty list of {role, content} messages")
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise RowError(f"{field}[{index}]", "must be an object with 'role' and 'content'")
        messages.append(
            {
                "role": check_text(message["role"], f"{field}[{index}].role"),
                "content": check_string(message["content"], f"{field}[{index}].content"),
            }
        )
    return messages


def optional_label(value: Any, field: str) -> str | None:
    """An informational label (a model name, a dataset source, a principle): text, a number as text, or None
    when absent or blank; a list or an object is refused, as it names nothing."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    label = check_string(value, field)
    return label if label.strip() else None
