"""The canonical tables every loader produces.

``instructions``: one row per instruction, the data unit the map plots (``instruction_id``,
``instruction``, ``prompt_messages`` as JSON, ``proxy_response`` when the input carries one,
``source`` where the dataset names one, ``source_row``).
``responses``: one row per response of an instruction (``response_id``, ``response``, ``model``,
``rating`` and ``rating_<aspect>`` columns, ``same_text_as``, ``source_row``, ``source_field``).
A rated row's completions are each a response, even when two share a text (``same_text_as``
names the first); pair rows name their responses by text, so a text is one response.
``preferences``: the dataset's own pairwise judgments (``chosen_id``, ``rejected_id``), present
for pair datasets (binarized, TRL, Alpaca-style, HH-RLHF); rated datasets derive pairs from ratings.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from admap.errors import RowError, SkippedRow

INSTRUCTION_COLUMNS = ["instruction_id", "instruction", "prompt_messages", "proxy_response", "source", "source_row"]
RESPONSE_COLUMNS = [
    "instruction_id",
    "response_id",
    "response",
    "model",
    "rating",
    "same_text_as",
    "source_row",
    "source_field",
]
PREFERENCE_COLUMNS = ["instruction_id", "chosen_id", "rejected_id", "source_row"]

# What one input row holds: every rated response of an instruction (UltraFeedback), one pairwise
# judgment (pair formats), or one response (a long table, one response per row).
RowKind = Literal["completions", "pair", "response"]


@dataclass
class ParsedResponse:
    """One response as a format parser read it; ``error`` set when only this response is bad."""

    text: str
    field: str
    model: str | None = None
    rating: float = math.nan
    # The dataset has a rating field here but gives no value ("N/A", None): unrated, not an error.
    rating_missing: bool = False
    aspect_ratings: dict[str, float] = field(default_factory=dict)
    principle: str | None = None
    error: RowError | None = None


@dataclass
class ParsedRow:
    """One input record in canonical form, before rows are grouped into instructions."""

    kind: RowKind
    instruction: str
    prompt_messages: list[dict[str, str]]
    # A pair row's two responses are (chosen, rejected), in that order.
    responses: list[ParsedResponse]
    instruction_id: str | None = None
    proxy_response: str | None = None
    source: str | None = None
    # Keys of `LoadTally.notes` this row adds to.
    notes: tuple[str, ...] = ()


@dataclass
class LoadTally:
    """What the loader counts as it reads; the other counts are read off the tables."""

    rows_read: int = 0
    rows_loaded: int = 0
    # Left out by a row filter the user asked for (``--principle``): counted, not listed.
    rows_filtered: int = 0
    responses_read: int = 0
    responses_merged: int = 0
    ratings_missing: int = 0
    rating_conflicts: int = 0
    identical_pairs: int = 0
    # Format-specific facts about rows worth counting (e.g. HH-RLHF transcripts that part early).
    notes: Counter = field(default_factory=Counter)


@dataclass
class PreferenceData:
    """A loaded preference dataset plus the accounting that proves nothing was lost."""

    instructions: pd.DataFrame
    responses: pd.DataFrame
    preferences: pd.DataFrame
    source: str
    format: str
    tally: LoadTally
    skipped: list[SkippedRow]
    row_filter: str | None = None
    # Where on the hub the records came from (`HubDataset.report`: the commit read among them); None for a file.
    hub: dict | None = None

    @property
    def has_ratings(self) -> bool:
        return bool(self.responses["rating"].notna().any())

    @property
    def has_preferences(self) -> bool:
        return not self.preferences.empty

    def counts(self) -> dict[str, int]:
        units = Counter(s.unit for s in self.skipped)
        responses = self.responses["response"]
        tally = self.tally
        return {
            "rows_read": tally.rows_read,
            "rows_loaded": tally.rows_loaded,
            "rows_skipped": units["row"],
            "rows_duplicate": units["duplicate"],
            "rows_filtered": tally.rows_filtered,
            "responses_read": tally.responses_read,
            "responses_skipped": units["response"],
            "responses_merged": tally.responses_merged,
            "responses": len(self.responses),
            "responses_empty": blank_texts(responses),
            "responses_same_text": int(self.responses["same_text_as"].notna().sum()),
            "ratings_missing": tally.ratings_missing,
            "rating_conflicts": tally.rating_conflicts,
            "instructions": len(self.instructions),
            "instructions_sharing_a_prompt": _sharing_a_prompt(self.instructions["prompt_messages"]),
            "preferences": len(self.preferences),
            "identical_pairs": tally.identical_pairs,
        }

    def report(self) -> dict:
        """The dataset block of summary.json: where from, the counts, the row filter and format notes."""
        return {
            "source": self.source,
            "format": self.format,
            **self.counts(),
            "row_filter": self.row_filter,
            "notes": dict(self.tally.notes),
            "hub": self.hub,
        }


def blank_texts(texts: pd.Series) -> int:
    """How many of ``texts`` are empty or whitespace only (what ``str.strip`` empties), one text at a time:
    stripping the whole column at once would copy every text."""
    return sum(isinstance(text, str) and (not text or text.isspace()) for text in texts)


def _sharing_a_prompt(prompts: pd.Series) -> int:
    """Instructions whose prompt an earlier instruction has too (a prompt repeated with other responses)."""
    return int(prompts.duplicated().sum())


def instruction_key(prompt_messages: list[dict[str, str]]) -> str:
    """Stable id of an instruction from its full prompt (system and earlier turns included)."""
    payload = json.dumps(prompt_messages, sort_keys=True, ensure_ascii=False)
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:16]


def render_prompt(prompt_messages: list[dict[str, str]]) -> str:
    """The instruction text shown and embedded: the user turn alone, or the whole dialogue."""
    if len(prompt_messages) == 1:
        return prompt_messages[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in prompt_messages)
