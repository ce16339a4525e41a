"""Read a preference dataset in any registered format into the canonical tables.

Rows that name the same instruction are grouped; within an instruction each distinct
response text is one response. Pair rows that repeat a response merge into it (that is
how pair datasets spell out a multi-response instruction); rated rows that repeat a
response are bad input. Every row read is loaded, merged or listed in ``skipped``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field

import pandas as pd
from tqdm.auto import tqdm

from admap.errors import InputError, RowError, SkippedRow
from admap.load.base import FORMATS, Format, LoadOptions
from admap.load.readers import read_records
from admap.load.schema import (
    INSTRUCTION_COLUMNS,
    PREFERENCE_COLUMNS,
    RESPONSE_COLUMNS,
    ParsedRow,
    PreferenceData,
    instruction_key,
)

logger = logging.getLogger(__name__)

# Tried in this order: the most specific shapes first.
AUTO_DETECT_ORDER = ("ultrafeedback", "alpaca", "hh_rlhf", "preference")
SKIP_HINT = " (pass --skip-invalid to list such rows in summary.json and go on)"


def detect_format(record: dict, source: str, row: int) -> Format:
    for name in AUTO_DETECT_ORDER:
        candidate = FORMATS.get(name)
        if candidate.matches(record):
            logger.info("%s: detected format '%s'", source, name)
            return candidate
    known = "; ".join(f"{n}: {FORMATS.get(n).description}" for n in AUTO_DETECT_ORDER)
    raise InputError(
        source,
        row,
        None,
        f"record with fields {sorted(record)} matches no known format ({known}); "
        "name the columns with --format columns --instruction-column ... --response-column ...",
    )


@dataclass
class _Instruction:
    instruction_id: str
    instruction: str
    prompt_messages: list[dict[str, str]]
    proxy_response: str | None
    source_row: int
    response_ids: dict[str, str] = field(default_factory=dict)  # response text -> response id
    pairs: dict[tuple[str, str], int] = field(default_factory=dict)  # (chosen, rejected) -> row


class _Builder:
    def __init__(self, source: str, skip_invalid: bool):
        self.source, self.skip_invalid = source, skip_invalid
        self.instructions: dict[str, _Instruction] = {}
        self.responses: list[dict] = []
        self.response_position: dict[str, int] = {}
        self.preferences: list[dict] = []
        self.skipped: list[SkippedRow] = []
        self.rows_read = self.rows_loaded = self.responses_read = self.responses_merged = self.rating_conflicts = 0

    def reject(self, row: int, error: RowError, unit: str = "row") -> None:
        located = InputError(self.source, row, error.field, error.reason)
        if not self.skip_invalid:
            raise InputError(self.source, row, error.field, error.reason + SKIP_HINT)
        self.skipped.append(located.as_skipped(unit))

    def add(self, row: int, parsed: ParsedRow) -> None:
        key = parsed.instruction_id or instruction_key(parsed.prompt_messages)
        known = self.instructions.get(key)
        if known is not None and known.prompt_messages != parsed.prompt_messages:
            self.reject(row, RowError("prompt_id", f"id {key!r} names a different prompt in row {known.source_row}"))
            return
        is_pair = bool(parsed.preferences)
        if is_pair:
            bad = next((r.error for r in parsed.responses if r.error), None)
            if bad is not None:
                self.reject(row, bad)
                return
            if known is not None:
                ids = [known.response_ids.get(r.text) for r in parsed.responses]
                for chosen, rejected in parsed.preferences:
                    earlier = known.pairs.get((ids[chosen], ids[rejected]))
                    if earlier is not None and ids[chosen] is not None:
                        # Real pair datasets repeat rows (UltraFeedback repeats instructions); a repeat adds
                        # nothing, so it is listed, not loaded twice, and not an error.
                        self.skipped.append(
                            SkippedRow(
                                self.source, row, "chosen", f"duplicate of the pair in row {earlier}", "duplicate"
                            )
                        )
                        return
        self.rows_loaded += 1
        instruction = known or self._new_instruction(key, row, parsed)
        if known is not None and instruction.proxy_response is None:
            instruction.proxy_response = parsed.proxy_response
        positions: dict[int, str] = {}
        for index, response in enumerate(parsed.responses):
            self.responses_read += 1
            if response.error is not None:
                self.reject(row, response.error, unit="response")
                continue
            existing = instruction.response_ids.get(response.text)
            if existing is None:
                positions[index] = self._new_response(instruction, row, response)
            elif is_pair:
                positions[index] = existing
                self.responses_merged += 1
                self._merge_rating(existing, response.rating)
            else:
                self.reject(
                    row, RowError(response.field, f"duplicate response text (same as response {existing})"), "response"
                )
        for chosen, rejected in parsed.preferences:
            pair = (positions[chosen], positions[rejected])
            instruction.pairs[pair] = row
            self.preferences.append(
                {
                    "instruction_id": instruction.instruction_id,
                    "chosen_id": pair[0],
                    "rejected_id": pair[1],
                    "source_row": row,
                }
            )

    def _new_instruction(self, key: str, row: int, parsed: ParsedRow) -> _Instruction:
        instruction = _Instruction(key, parsed.instruction, parsed.prompt_messages, parsed.proxy_response, row)
        self.instructions[key] = instruction
        return instruction

    def _merge_rating(self, response_id: str, rating: float) -> None:
        """A repeated response keeps its first rating; a different later one is counted as a conflict."""
        record = self.responses[self.response_position[response_id]]
        if math.isnan(record["rating"]):
            record["rating"] = rating
        elif not math.isnan(rating) and rating != record["rating"]:
            self.rating_conflicts += 1

    def _new_response(self, instruction: _Instruction, row: int, response) -> str:
        response_id = f"{instruction.instruction_id}-{len(instruction.response_ids)}"
        instruction.response_ids[response.text] = response_id
        self.response_position[response_id] = len(self.responses)
        record = {
            "instruction_id": instruction.instruction_id,
            "response_id": response_id,
            "response": response.text,
            "model": response.model,
            "rating": response.rating,
            "source_row": row,
            "source_field": response.field,
        }
        record.update({f"rating_{_column_name(k)}": v for k, v in response.aspect_ratings.items()})
        self.responses.append(record)
        return response_id

    def finish(self, format_name: str) -> PreferenceData:
        instructions = pd.DataFrame(
            [
                {
                    "instruction_id": i.instruction_id,
                    "instruction": i.instruction,
                    "prompt_messages": json.dumps(i.prompt_messages, ensure_ascii=False),
                    "proxy_response": i.proxy_response,
                    "source_row": i.source_row,
                }
                for i in self.instructions.values()
            ],
            columns=INSTRUCTION_COLUMNS,
        )
        responses = pd.DataFrame(self.responses)
        if responses.empty:
            responses = pd.DataFrame(columns=RESPONSE_COLUMNS)
        responses["rating"] = responses["rating"].astype("float64")
        return PreferenceData(
            instructions=instructions,
            responses=responses,
            preferences=pd.DataFrame(self.preferences, columns=PREFERENCE_COLUMNS),
            source=self.source,
            format=format_name,
            rows_read=self.rows_read,
            rows_loaded=self.rows_loaded,
            rating_conflicts=self.rating_conflicts,
            responses_read=self.responses_read,
            responses_merged=self.responses_merged,
            skipped=self.skipped,
        )


def _column_name(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


def load_preferences(
    source: str,
    *,
    format: str = "auto",
    options: LoadOptions | None = None,
    skip_invalid: bool = False,
    split: str | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> PreferenceData:
    """Load ``source`` (a file path or a hub dataset id) into canonical tables.

    Raises `InputError` naming the file, row and field of the first bad record, unless
    ``skip_invalid`` is set, in which case bad records are listed in ``PreferenceData.skipped``.
    ``limit`` reads only the first ``limit`` records.
    """
    options = options or LoadOptions()
    chosen_format = None if format == "auto" else FORMATS.get(format)
    builder = _Builder(source, skip_invalid)
    records = read_records(source, split=split)
    first_unknown: InputError | None = None
    for row, record in tqdm(records, desc="loading", unit=" rows", disable=not progress):
        if limit is not None and builder.rows_read >= limit:
            break
        builder.rows_read += 1
        if isinstance(record, RowError):
            builder.reject(row, record)
            continue
        if chosen_format is None:
            try:
                chosen_format = detect_format(record, source, row)
            except InputError as error:
                # With skip_invalid a first record of no known shape is one bad row, not a bad file,
                # unless no record at all has a known shape (checked after the loop).
                if not skip_invalid:
                    raise
                first_unknown = first_unknown or error
                builder.skipped.append(error.as_skipped())
                continue
        try:
            parsed = chosen_format.parse(record, options)
        except RowError as error:
            builder.reject(row, error)
            continue
        builder.add(row, parsed)
    if builder.rows_read == 0:
        raise InputError(source, None, None, "holds no records")
    if chosen_format is None and first_unknown is not None:
        raise first_unknown
    if builder.rating_conflicts:
        logger.warning(
            "%s: %d repeated responses carry a rating different from their first (first kept)",
            source,
            builder.rating_conflicts,
        )
    data = builder.finish(chosen_format.name if chosen_format else format)
    logger.info("%s: %s", source, data.counts())
    return data
