"""Read a preference dataset in any registered format into the canonical tables.

The format parses each row; `admap.load.builder` groups the rows into instructions (the data
unit is described there). Every row read is loaded, filtered (counted), or listed in ``skipped``
as a duplicate or a bad row.
"""

from __future__ import annotations

import logging
from typing import Any

from tqdm.auto import tqdm

from admap.errors import InputError, RowError, SkippedRow
from admap.load.base import FORMATS, Format, LoadOptions
from admap.load.builder import Builder
from admap.load.readers import HubDataset, read_records, row_name
from admap.load.schema import PreferenceData
from admap.load.tables import is_table, table_name, table_records
from admap.load.ultrafeedback import UltraFeedback, principle_rule

logger = logging.getLogger(__name__)

# Tried in this order: the most specific shapes first.
AUTO_DETECT_ORDER = ("ultrafeedback", "alpaca", "hh_rlhf", "preference")
# How many skipped rows the error for a file with no usable row quotes.
REASONS_QUOTED = 3


def detect_format(record: dict, source: str, row: int, *, row_word: str = "row") -> Format:
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
        row_name=row_word,
    )


def load_preferences(
    source: str | Any,
    *,
    format: str = "auto",
    options: LoadOptions | None = None,
    skip_invalid: bool = False,
    split: str | None = None,
    limit: int | None = None,
    hub: HubDataset | None = None,
    progress: bool = True,
) -> PreferenceData:
    """Load ``source`` (a file path, a hub dataset id, or a table in memory: a pandas DataFrame or a
    `datasets` Dataset) into canonical tables.

    Raises `InputError` naming the file, row and field of the first bad record, unless
    ``skip_invalid`` is set, in which case bad records are listed in ``PreferenceData.skipped``
    (and an `InputError` says how many and why when no row is left to load).
    What real datasets hold (empty responses, repeated rows, unrated completions) is loaded and
    counted, never an error. ``limit`` reads only the first ``limit`` records. ``hub``: which part of a
    hub dataset ``source`` names to read (configuration, folder, files, revision, streaming), recorded
    in the report.
    """
    options = options or LoadOptions()
    chosen_format = None if format == "auto" else FORMATS.get(format)
    if chosen_format is not None:
        _check_options(chosen_format, options)
    if is_table(source):
        records, source = table_records(source), table_name(source)
    else:
        records = read_records(source, split=split, hub=hub, limit=limit)
    row_word = row_name(source)
    builder = Builder(
        source,
        skip_invalid=skip_invalid,
        group_by=options.group_by,
        drop_empty=options.drop_empty,
        row_name=row_word,
    )
    first_unknown: InputError | None = None
    for row, record in tqdm(records, desc="loading", unit=" rows", disable=not progress):
        if limit is not None and builder.tally.rows_read >= limit:
            break
        builder.tally.rows_read += 1
        if isinstance(record, RowError):
            builder.reject(row, record)
            continue
        if chosen_format is None:
            try:
                chosen_format = detect_format(record, source, row, row_word=row_word)
            except InputError as error:
                # With skip_invalid a first record of no known shape is one bad row, not a bad file,
                # unless no record at all has a known shape (checked after the loop).
                if not skip_invalid:
                    raise
                first_unknown = first_unknown or error
                builder.skipped.append(error.as_skipped())
                continue
            _check_options(chosen_format, options)
        try:
            parsed = chosen_format.parse(record, options)
        except RowError as error:
            builder.reject(row, error)
            continue
        if parsed is None:
            builder.tally.rows_filtered += 1
            continue
        builder.add(row, parsed)
    if builder.tally.rows_read == 0:
        raise InputError(source, None, None, "holds no records")
    if chosen_format is None and first_unknown is not None:
        raise first_unknown
    if builder.tally.rating_conflicts:
        logger.warning(
            "%s: %d repeated response texts carry a rating different from an earlier one (the last decides pairs)",
            source,
            builder.tally.rating_conflicts,
        )
    row_filter = principle_rule(options.principle) if options.principle is not None else None
    data = builder.finish(chosen_format.name if chosen_format else format, row_filter=row_filter)
    data.hub = hub.report() if hub is not None else None
    logger.info("%s: %s", source, data.counts())
    left_out = [s for s in data.skipped if s.unit in ("row", "response")]
    # Prompts alone (UltraFeedback rows with no completions) are data for `admap proxy`; a file whose every
    # row or response was left out is not data at all, and a later stage would only find it unrated.
    if data.instructions.empty or (data.responses.empty and left_out):
        raise _no_usable_row(data, left_out, row_word)
    return data


def _no_usable_row(data: PreferenceData, left_out: list[SkippedRow], row_word: str) -> InputError:
    """Every row read was skipped or filtered out, or every response skipped: how many, and the first reasons."""
    counts = data.counts()
    parts = []
    if counts["rows_skipped"]:
        parts.append(f"{counts['rows_skipped']} skipped as invalid")
    if counts["rows_filtered"]:
        parts.append(f"{counts['rows_filtered']} left out by the row filter ({data.row_filter})")
    if counts["responses_skipped"]:
        parts.append(f"{counts['responses_skipped']} of their {counts['responses_read']} responses skipped")
    reason = f"no row was usable: of {counts['rows_read']} rows read, {', '.join(parts)}"
    if left_out:
        quoted = [f"{row_word} {s.row}, field '{s.field}': {s.reason}" for s in left_out[:REASONS_QUOTED]]
        if len(left_out) > REASONS_QUOTED:
            quoted.append(f"and {len(left_out) - REASONS_QUOTED} more")
        reason += f" ({'; '.join(quoted)})"
    return InputError(data.source, None, None, reason)


def _check_options(chosen_format: Format, options: LoadOptions) -> None:
    """Options that only one format reads are refused by the others, never silently ignored."""
    if options.principle is not None and chosen_format.name != UltraFeedback.name:
        raise ValueError(
            f"--principle selects UltraFeedback rows by their completions' principle; "
            f"format '{chosen_format.name}' has no principle"
        )
