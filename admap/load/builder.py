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
import hashlib
import json
import math
import re
from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import pandas as pd
import pyarrow as pa

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
# Response texts wait as Python strings until this many are read, then go into one Arrow chunk.
TEXT_CHUNK = 8192


def text_digest(text: str) -> bytes:
    """What the builder compares texts by: 16 bytes of BLAKE2b, so that no lookup keeps a text alive."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class TextChunks:
    """Texts appended one at a time and held as Arrow ``large_string`` chunks: their bytes, without a
    Python object per text, once a chunk is full."""

    def __init__(self, chunk_size: int | None = None):
        self.chunk_size = chunk_size or TEXT_CHUNK
        self.chunks: list[pa.Array] = []
        self.pending: list[str] = []

    def append(self, text: str) -> None:
        self.pending.append(text)
        if len(self.pending) >= self.chunk_size:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.chunks.append(pa.array(self.pending, type=pa.large_string()))
            self.pending = []

    def column(self) -> pa.ChunkedArray:
        self._flush()
        return pa.chunked_array(self.chunks, type=pa.large_string())


# The digests of an instruction that takes no more responses: none, and none can be added.
_NO_TEXTS = MappingProxyType({})


@dataclass(eq=False, slots=True)
class _Instruction:
    prompt_key: str
    instruction: str
    prompt_messages: list[dict[str, str]]
    proxy_response: str | None
    source: str | None
    source_row: int
    # Each response is a position in the builder's columns; texts are known by their digests.
    responses: list[int] = field(default_factory=list)
    first_with_text: dict[bytes, int] = field(default_factory=dict)  # text digest -> its first response
    pair_rows: dict[tuple[bytes, bytes], int] = field(default_factory=dict)  # (chosen, rejected) digest -> row
    merged_into: _Instruction | None = None

    def root(self) -> _Instruction:
        instruction = self
        while instruction.merged_into is not None:
            instruction = instruction.merged_into
        return instruction


class Builder:
    """Takes parsed rows one at a time (`add`), or their errors (`reject`); `finish` gives the tables.

    Responses are kept in columns, one entry per response in the order they were read (texts as Arrow
    chunks, numbers in typed arrays, labels as lists of shared strings); an instruction holds its
    responses' positions. Repeats are found by digests, and an instruction that takes no more responses
    drops its digests, so the memory held is the texts' bytes, a few numbers per response and the
    per-instruction records."""

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
        self.seen_rows: dict[bytes, int] = {}  # digest of a row's content -> the row
        self.pairs: list[tuple[_Instruction, bytes, bytes, int]] = []
        self.skipped: list[SkippedRow] = []
        self.tally = LoadTally()
        # The response columns.
        self.texts = TextChunks()
        self.models: list[str | None] = []
        # Numbers in typed arrays: 8 bytes each, not a Python object each.
        self.ratings = array("d")
        self.aspect_ratings: dict[str, array] = {}
        self.same_text_as = array("q")  # position of the instruction's first response with this text, or -1
        self.source_rows = array("q")
        self.source_fields: list[str] = []
        # One string object per distinct label: models and fields repeat on every row.
        self.labels: dict[str, str] = {}

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
            digest = text_digest(response.text)
            first = instruction.first_with_text.get(digest)
            if first is not None:
                self._count_conflict(self.ratings[first], response.rating)
            self._attach(instruction, self._response(row, response), digest)
        if not merge:  # a completions row is a whole instruction: no later row adds to it
            instruction.first_with_text = _NO_TEXTS

    def _add_pair(self, row: int, key: str, parsed: ParsedRow) -> None:
        bad = next((r.error for r in parsed.responses if r.error), None)
        if bad is not None:
            self.reject(row, bad)
            return
        chosen, rejected = (text_digest(r.text) for r in parsed.responses)
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
            digest = text_digest(response.text)
            first = instruction.first_with_text.get(digest)
            if first is None:
                self._attach(instruction, self._response(row, response), digest)
            else:
                self.tally.responses_merged += 1
                self._merge_rating(first, response.rating)
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

    def _attach(self, instruction: _Instruction, position: int, digest: bytes) -> None:
        """The response at ``position`` (its text's ``digest``) becomes the instruction's next one; a text
        it already has is marked."""
        first = instruction.first_with_text.setdefault(digest, position)
        self.same_text_as[position] = -1 if first == position else first
        instruction.responses.append(position)

    def _merge(self, into: _Instruction, other: _Instruction) -> None:
        """A pair row links two instructions of one prompt: one instruction from now on. They share no
        text (else they would be one already), so every response moves over as it is."""
        digest_of = {first: digest for digest, first in other.first_with_text.items()}
        for position in other.responses:
            first = self.same_text_as[position]
            self._attach(into, position, digest_of[position if first < 0 else first])
        into.pair_rows.update(other.pair_rows)
        other.merged_into = into
        self.live[other.prompt_key].remove(other)

    def _label(self, label: str | None) -> str | None:
        return label if label is None else self.labels.setdefault(label, label)

    def _response(self, row: int, parsed: ParsedResponse) -> int:
        """The response appended to the columns; returns its position."""
        position = len(self.ratings)
        self.texts.append(parsed.text)
        self.models.append(self._label(parsed.model))
        self.ratings.append(parsed.rating)
        self.same_text_as.append(-1)
        self.source_rows.append(row)
        self.source_fields.append(self._label(parsed.field))
        for name, value in parsed.aspect_ratings.items():
            column = self.aspect_ratings.get(name)
            if column is None:  # an aspect first seen here: the responses before it have no rating of it
                column = self.aspect_ratings[name] = array("d", [math.nan]) * position
            column.append(value)
        for column in self.aspect_ratings.values():
            if len(column) == position:
                column.append(math.nan)
        return position

    def _count_conflict(self, earlier: float, later: float) -> None:
        if not (math.isnan(earlier) or math.isnan(later)) and earlier != later:
            self.tally.rating_conflicts += 1

    def _merge_rating(self, position: int, rating: float) -> None:
        """A text rated again: the last rating given wins (the authors' dict keyed by text)."""
        self._count_conflict(self.ratings[position], rating)
        if not math.isnan(rating):
            self.ratings[position] = rating

    # ------------------------------------------------------------------ tables

    def finish(self, format_name: str, *, row_filter: str | None = None) -> PreferenceData:
        instructions = [i for i in self.instructions if i.merged_into is None]
        ids = _instruction_ids(instructions)
        return PreferenceData(
            instructions=pd.DataFrame(
                {
                    "instruction_id": [ids[id(i)] for i in instructions],
                    "instruction": [i.instruction for i in instructions],
                    "prompt_messages": [json.dumps(i.prompt_messages, ensure_ascii=False) for i in instructions],
                    "proxy_response": [i.proxy_response for i in instructions],
                    "source": [i.source for i in instructions],
                    "source_row": [i.source_row for i in instructions],
                },
                columns=INSTRUCTION_COLUMNS,
            ),
            responses=self._response_table(instructions, ids),
            preferences=self._preference_table(ids),
            source=self.source,
            format=format_name,
            tally=self.tally,
            skipped=self.skipped,
            row_filter=row_filter,
        )

    def _response_table(self, instructions: list[_Instruction], ids: dict[int, str]) -> pd.DataFrame:
        """The responses instruction by instruction, each instruction's in the order it took them;
        ``response_id`` is ``<instruction_id>-<k>``. The text column stays in Arrow."""
        if not self.ratings:
            table = pd.DataFrame(columns=RESPONSE_COLUMNS)
            table["rating"] = table["rating"].astype("float64")
            return table
        order = np.fromiter((p for i in instructions for p in i.responses), dtype=np.int64, count=len(self.ratings))
        instruction_ids = [ids[id(i)] for i in instructions for _ in i.responses]
        response_ids = [f"{ids[id(i)]}-{k}" for i in instructions for k in range(len(i.responses))]
        id_at = np.empty(len(order), dtype=object)
        id_at[order] = response_ids
        texts = self.texts.column()
        if not np.array_equal(order, np.arange(len(order))):  # merged instructions: their responses moved
            texts = texts.take(order)
        same_text_as = [None if first < 0 else id_at[first] for first in np.asarray(self.same_text_as)[order]]
        columns = {
            "instruction_id": instruction_ids,
            "response_id": response_ids,
            "response": pd.Series(texts, dtype="str"),
            "model": [self.models[p] for p in order],
            "rating": np.asarray(self.ratings, dtype=np.float64)[order],
            "same_text_as": same_text_as,
            "source_row": np.asarray(self.source_rows, dtype=np.int64)[order],
            "source_field": [self.source_fields[p] for p in order],
        }
        for name, values in self.aspect_ratings.items():
            columns[f"rating_{_column_name(name)}"] = np.asarray(values, dtype=np.float64)[order]
        return pd.DataFrame(columns)

    def _preference_table(self, ids: dict[int, str]) -> pd.DataFrame:
        preferences = []
        for instruction, chosen, rejected, row in self.pairs:
            owner = instruction.root()
            names = {position: k for k, position in enumerate(owner.responses)}
            owner_id = ids[id(owner)]
            preferences.append(
                {
                    "instruction_id": owner_id,
                    "chosen_id": f"{owner_id}-{names[owner.first_with_text[chosen]]}",
                    "rejected_id": f"{owner_id}-{names[owner.first_with_text[rejected]]}",
                    "source_row": row,
                }
            )
        return pd.DataFrame(preferences, columns=PREFERENCE_COLUMNS)


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


def _content_key(key: str, parsed: ParsedRow) -> bytes:
    """What makes two rows the same data point: the prompt (``key``: its id or hash, checked against the
    prompt in `Builder.add`) and every response with its labels, as a digest, so that the rows seen keep
    no text alive. ``repr`` spells every NaN the parsers give alike, as tuples compared it equal."""
    responses = tuple(
        (r.text, r.model, r.rating, tuple(r.aspect_ratings.values()), r.principle, r.error and r.error.reason)
        for r in parsed.responses
    )
    return hashlib.blake2b(repr((key, responses)).encode("utf-8", "surrogatepass"), digest_size=16).digest()


@functools.lru_cache(maxsize=1024)
def _column_name(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()
