"""Parsed rows into instructions (the points of the map) and responses, with the accounting.

The data unit, by the kind of row a format reads:

- ``completions`` (UltraFeedback): one row is one instruction, as the paper's authors count
  UltraFeedback, so the same prompt with other completions is another instruction. A row that
  repeats an earlier one exactly (same prompt, same completions) is counted once and listed as
  ``duplicate``. Each completion is a response, even when two of a row share a text (the authors
  score both); ``same_text_as`` marks the later one.
- ``pair`` (TRL, binarized, Alpaca-style, HH-RLHF): a row is one judgment and names its responses
  by text; the rows of one prompt whose pairs share a response are one instruction (a pair file
  spells out one rated row as up to six pairs over its completions), and a repeated text is merged
  into one response. A repeated pair is a ``duplicate``; a pair of two identical texts is one
  response and no pair (listed as ``identical_pair``).
- ``response`` (a long table): the rows of one prompt (or id) are its responses; an exact repeat
  is a ``duplicate``.

``group_by="prompt"`` merges every row of a prompt into one instruction instead. Where one text
is given several ratings within an instruction, the last rating given decides its pairs, as in
the authors' code (a dict keyed by response text); each disagreement is counted.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pandas as pd

from admap.errors import InputError, RowError, SkippedRow
from admap.load.schema import (
    INSTRUCTION_COLUMNS,
    PREFERENCE_COLUMNS,
    RESPONSE_COLUMNS,
    LoadTally,
    ParsedResponse,
    ParsedRow,
    PreferenceData,
    instruction_key,
)

SKIP_HINT = " (pass --skip-invalid to list such rows in summary.json and go on)"


@dataclass(slots=True)
class _Response:
    text: str
    model: str | None
    rating: float
    aspect_ratings: dict[str, float]
    source_row: int
    source_field: str
    same_text_as: int | None = None  # position of the first response of the instruction with this text


@dataclass(eq=False, slots=True)
class _Instruction:
    prompt_key: str
    instruction: str
    prompt_messages: list[dict[str, str]]
    proxy_response: str | None
    source: str | None
    source_row: int
    responses: list[_Response] = field(default_factory=list)
    first_with_text: dict[str, int] = field(default_factory=dict)
    pair_rows: dict[tuple[str, str], int] = field(default_factory=dict)  # (chosen, rejected) text -> row
    merged_into: _Instruction | None = None

    def add(self, response: _Response) -> None:
        position = len(self.responses)
        first = self.first_with_text.setdefault(response.text, position)
        response.same_text_as = None if first == position else first
        self.responses.append(response)

    def root(self) -> _Instruction:
        instruction = self
        while instruction.merged_into is not None:
            instruction = instruction.merged_into
        return instruction


class Builder:
    """Takes parsed rows one at a time (`add`), or their errors (`reject`); `finish` gives the tables."""

    def __init__(
        self,
        source: str,
        *,
        skip_invalid: bool,
        group_by: str = "row",
        drop_empty: bool = False,
        row_name: str = "row",
    ):
        self.source, self.skip_invalid, self.row_name = source, skip_invalid, row_name
        self.group_by, self.drop_empty = group_by, drop_empty
        self.instructions: list[_Instruction] = []
        self.live: dict[str, list[_Instruction]] = defaultdict(list)  # prompt key -> instructions not merged away
        self.seen_rows: dict[tuple, int] = {}
        self.pairs: list[tuple[_Instruction, str, str, int]] = []
        self.skipped: list[SkippedRow] = []
        self.tally = LoadTally()

    # ------------------------------------------------------------------ errors and listings

    def reject(self, row: int, error: RowError, unit: str = "row") -> None:
        """A row (or one response) that cannot mean anything: an error, or listed with ``skip_invalid``."""
        if not self.skip_invalid:
            raise InputError(self.source, row, error.field, error.reason + SKIP_HINT, row_name=self.row_name)
        self.skipped.append(InputError(self.source, row, error.field, error.reason).as_skipped(unit))

    def _list(self, row: int, field: str, reason: str, unit: str) -> None:
        """Real data the run takes as it is, listed so that a reader can find it: never an error."""
        self.skipped.append(SkippedRow(self.source, row, field, reason, unit))

    # ------------------------------------------------------------------ rows

    def add(self, row: int, parsed: ParsedRow) -> None:
        key = parsed.instruction_id or instruction_key(parsed.prompt_messages)
        known = self.live.get(key)
        if known and known[0].prompt_messages != parsed.prompt_messages:
            earlier = known[0].source_row
            self.reject(row, RowError("prompt_id", f"id {key!r} names a different prompt in row {earlier}"))
            return
        if parsed.kind == "pair":
            self._add_pair(row, key, parsed)
            return
        if parsed.kind == "completions":
            field, repeat = "completions", "same prompt and completions"
        else:
            field, repeat = parsed.responses[0].field, "same prompt, response, model and rating"
        content = _content_key(key, parsed)
        earlier = self.seen_rows.setdefault(content, row)
        if earlier != row:
            self._list(row, field, f"repeats row {earlier} ({repeat}): counted once", "duplicate")
            return
        self.tally.rows_loaded += 1
        self.tally.notes.update(parsed.notes)
        # A long table's rows are the responses of one instruction; a completions row is an instruction.
        merge = self.group_by == "prompt" or parsed.kind == "response"
        instruction = self.live[key][0] if merge and self.live[key] else self._new_instruction(key, row, parsed)
        if instruction.proxy_response is None:
            instruction.proxy_response = parsed.proxy_response
        for response in self._kept_responses(row, parsed):
            first = instruction.first_with_text.get(response.text)
            if first is not None:
                self._count_conflict(instruction.responses[first].rating, response.rating)
            instruction.add(self._response(row, response))

    def _add_pair(self, row: int, key: str, parsed: ParsedRow) -> None:
        bad = next((r.error for r in parsed.responses if r.error), None)
        if bad is not None:
            self.reject(row, bad)
            return
        chosen, rejected = (r.text for r in parsed.responses)
        live = self.live[key]
        if self.group_by == "prompt":
            owners = live[:1]
        else:
            owners = [i for i in live if chosen in i.first_with_text or rejected in i.first_with_text]
        if owners:
            earlier = owners[0].pair_rows.get((chosen, rejected))
            if earlier is not None:
                # Real pair datasets repeat rows (UltraFeedback repeats instructions); a repeat adds
                # nothing, so it is listed, not loaded twice, and not an error.
                self._list(row, "chosen", f"duplicate of the pair in row {earlier}", "duplicate")
                return
        self.tally.rows_loaded += 1
        self.tally.notes.update(parsed.notes)
        instruction = owners[0] if owners else self._new_instruction(key, row, parsed)
        for other in owners[1:]:
            self._merge(instruction, other)
        if instruction.proxy_response is None:
            instruction.proxy_response = parsed.proxy_response
        kept = self._kept_responses(row, parsed)
        for response in kept:
            first = instruction.first_with_text.get(response.text)
            if first is None:
                instruction.add(self._response(row, response))
            else:
                self.tally.responses_merged += 1
                self._merge_rating(instruction.responses[first], response.rating)
        if len(kept) < 2:
            return
        if chosen == rejected:
            self.tally.identical_pairs += 1
            self._list(row, "rejected", "the same text as 'chosen': one response, no pair", "identical_pair")
            return
        instruction.pair_rows[(chosen, rejected)] = row
        self.pairs.append((instruction, chosen, rejected, row))

    def _kept_responses(self, row: int, parsed: ParsedRow) -> list[ParsedResponse]:
        """The row's responses that reach the tables; bad ones rejected, empty ones dropped if asked."""
        kept = []
        for response in parsed.responses:
            self.tally.responses_read += 1
            if response.error is not None:
                self.reject(row, response.error, unit="response")
            elif self.drop_empty and not response.text.strip():
                self._list(row, response.field, "is empty (--drop-empty)", "response")
            else:
                self.tally.ratings_missing += response.rating_missing
                kept.append(response)
        return kept

    def _new_instruction(self, key: str, row: int, parsed: ParsedRow) -> _Instruction:
        instruction = _Instruction(
            key, parsed.instruction, parsed.prompt_messages, parsed.proxy_response, parsed.source, row
        )
        self.instructions.append(instruction)
        self.live[key].append(instruction)
        return instruction

    def _merge(self, into: _Instruction, other: _Instruction) -> None:
        """A pair row links two instructions of one prompt: one instruction from now on. They share no
        text (else they would be one already), so every response moves over as it is."""
        for response in other.responses:
            into.add(response)
        into.pair_rows.update(other.pair_rows)
        other.merged_into = into
        self.live[other.prompt_key].remove(other)

    @staticmethod
    def _response(row: int, parsed: ParsedResponse) -> _Response:
        return _Response(parsed.text, parsed.model, parsed.rating, parsed.aspect_ratings, row, parsed.field)

    def _count_conflict(self, earlier: float, later: float) -> None:
        if not (math.isnan(earlier) or math.isnan(later)) and earlier != later:
            self.tally.rating_conflicts += 1

    def _merge_rating(self, response: _Response, rating: float) -> None:
        """A text rated again: the last rating given wins (the authors' dict keyed by text)."""
        self._count_conflict(response.rating, rating)
        if not math.isnan(rating):
            response.rating = rating

    # ------------------------------------------------------------------ tables

    def finish(self, format_name: str, *, row_filter: str | None = None) -> PreferenceData:
        instructions = [i for i in self.instructions if i.merged_into is None]
        ids = _instruction_ids(instructions)
        responses, response_ids = [], {}
        for instruction in instructions:
            instruction_id = ids[id(instruction)]
            names = [f"{instruction_id}-{k}" for k in range(len(instruction.responses))]
            response_ids[id(instruction)] = names
            for name, response in zip(names, instruction.responses):
                record = {
                    "instruction_id": instruction_id,
                    "response_id": name,
                    "response": response.text,
                    "model": response.model,
                    "rating": response.rating,
                    "same_text_as": None if response.same_text_as is None else names[response.same_text_as],
                    "source_row": response.source_row,
                    "source_field": response.source_field,
                }
                record.update({f"rating_{_column_name(k)}": v for k, v in response.aspect_ratings.items()})
                responses.append(record)
        preferences = []
        for instruction, chosen, rejected, row in self.pairs:
            owner = instruction.root()
            names = response_ids[id(owner)]
            preferences.append(
                {
                    "instruction_id": ids[id(owner)],
                    "chosen_id": names[owner.first_with_text[chosen]],
                    "rejected_id": names[owner.first_with_text[rejected]],
                    "source_row": row,
                }
            )
        instruction_table = pd.DataFrame(
            [
                {
                    "instruction_id": ids[id(i)],
                    "instruction": i.instruction,
                    "prompt_messages": json.dumps(i.prompt_messages, ensure_ascii=False),
                    "proxy_response": i.proxy_response,
                    "source": i.source,
                    "source_row": i.source_row,
                }
                for i in instructions
            ],
            columns=INSTRUCTION_COLUMNS,
        )
        response_table = pd.DataFrame(responses) if responses else pd.DataFrame(columns=RESPONSE_COLUMNS)
        response_table["rating"] = response_table["rating"].astype("float64")
        response_table["response"] = response_table["response"].astype(object)
        return PreferenceData(
            instructions=instruction_table,
            responses=response_table,
            preferences=pd.DataFrame(preferences, columns=PREFERENCE_COLUMNS),
            source=self.source,
            format=format_name,
            tally=self.tally,
            skipped=self.skipped,
            row_filter=row_filter,
        )


def _instruction_ids(instructions: list[_Instruction]) -> dict[int, str]:
    """The prompt's key (its id, or a hash of its messages) for the first instruction of a prompt;
    ``<key>.2``, ``<key>.3``, ... for the later ones, in input order."""
    taken = {i.prompt_key for i in instructions}
    count: Counter = Counter()
    ids = {}
    for instruction in instructions:
        key = instruction.prompt_key
        count[key] += 1
        name = key
        if count[key] > 1:
            name = f"{key}.{count[key]}"
            while name in taken:  # an id of the input spelt like a generated one
                count[key] += 1
                name = f"{key}.{count[key]}"
            taken.add(name)
        ids[id(instruction)] = name
    return ids


def _content_key(key: str, parsed: ParsedRow) -> tuple:
    """What makes two rows the same data point: the prompt (``key``: its id or hash, checked against the
    prompt in `Builder.add`) and every response with its labels. The texts are the row's own strings, so
    the key costs references, not copies. Every NaN the parsers give is the one ``math.nan`` object, which
    tuples compare equal to itself."""
    responses = tuple(
        (r.text, r.model, r.rating, tuple(r.aspect_ratings.values()), r.principle, r.error and r.error.reason)
        for r in parsed.responses
    )
    return key, responses


@functools.lru_cache(maxsize=1024)
def _column_name(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()
