"""The canonical tables every loader produces.

``instructions``: one row per instruction (``instruction_id``, ``instruction``, ``prompt_messages``
as JSON, ``proxy_response`` when the input carries one, ``source_row``).
``responses``: one row per distinct response of an instruction (``response_id``, ``response``,
``model``, ``rating`` and ``rating_<aspect>`` columns, ``source_row``, ``source_field``).
``preferences``: the dataset's own pairwise judgments (``chosen_id``, ``rejected_id``), present
for pair datasets (binarized, TRL, Alpaca-style, HH-RLHF); rated datasets derive pairs from ratings.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import pandas as pd

from admap.errors import RowError, SkippedRow

INSTRUCTION_COLUMNS = ["instruction_id", "instruction", "prompt_messages", "proxy_response", "source_row"]
RESPONSE_COLUMNS = ["instruction_id", "response_id", "response", "model", "rating", "source_row", "source_field"]
PREFERENCE_COLUMNS = ["instruction_id", "chosen_id", "rejected_id", "source_row"]


@dataclass
class ParsedResponse:
    """One response as a format parser read it; ``error`` set when only this response is bad."""

    text: str
    field: str
    model: str | None = None
    rating: float = math.nan
    aspect_ratings: dict[str, float] = field(default_factory=dict)
    error: RowError | None = None


@dataclass
class ParsedRow:
    """One input record in canonical form, before instructions are grouped across rows."""

    instruction: str
    prompt_messages: list[dict[str, str]]
    responses: list[ParsedResponse]
    # (chosen, rejected) positions in ``responses``; non-empty for pair rows.
    preferences: list[tuple[int, int]] = field(default_factory=list)
    instruction_id: str | None = None
    proxy_response: str | None = None


@dataclass
class PreferenceData:
    """A loaded preference dataset plus the accounting that proves nothing was lost."""

    instructions: pd.DataFrame
    responses: pd.DataFrame
    preferences: pd.DataFrame
    source: str
    format: str
    rows_read: int
    rows_loaded: int
    rating_conflicts: int
    responses_read: int
    responses_merged: int
    skipped: list[SkippedRow]

    @property
    def has_ratings(self) -> bool:
        return bool(self.responses["rating"].notna().any())

    @property
    def has_preferences(self) -> bool:
        return not self.preferences.empty

    def counts(self) -> dict[str, int]:
        units = [s.unit for s in self.skipped]
        return {
            "rows_read": self.rows_read,
            "rows_loaded": self.rows_loaded,
            "rows_skipped": units.count("row"),
            "rows_duplicate": units.count("duplicate"),
            "responses_read": self.responses_read,
            "responses_skipped": units.count("response"),
            "responses_merged": self.responses_merged,
            "responses": len(self.responses),
            "instructions": len(self.instructions),
            "preferences": len(self.preferences),
            "rating_conflicts": self.rating_conflicts,
        }


def instruction_key(prompt_messages: list[dict[str, str]]) -> str:
    """Stable id of an instruction from its full prompt (system and earlier turns included)."""
    payload = json.dumps(prompt_messages, sort_keys=True, ensure_ascii=False)
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:16]


def render_prompt(prompt_messages: list[dict[str, str]]) -> str:
    """The instruction text shown and embedded: the user turn alone, or the whole dialogue."""
    if len(prompt_messages) == 1:
        return prompt_messages[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in prompt_messages)
