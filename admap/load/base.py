"""The format protocol and its registry: a new input format is one new module that registers itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from admap.config import option
from admap.load.schema import ParsedRow
from admap.registry import Registry


@dataclass(frozen=True)
class LoadOptions:
    """How to read fields whose names or meaning vary between datasets."""

    rating_field: str = option(
        "fine-grained_score",
        "UltraFeedback rating that orders pairs: fine-grained_score (the paper's), overall_score, or an aspect "
        "(helpfulness, honesty, instruction_following, truthfulness)",
    )
    proxy_column: str | None = option(None, "input column holding each instruction's proxy (reference) response")
    instruction_column: str = option("instruction", "format 'columns': the instruction column")
    response_column: str | None = option(None, "format 'columns': the response column (one response per row)")
    rating_column: str | None = option(None, "format 'columns': the rating column")
    model_column: str | None = option(None, "format 'columns': the column naming the model that wrote the response")
    id_column: str | None = option(None, "format 'columns': an instruction id column")
    chosen_column: str | None = option(None, "format 'columns': the chosen response column (one pair per row)")
    rejected_column: str | None = option(None, "format 'columns': the rejected response column (one pair per row)")
    group_by: Literal["row", "prompt"] = option(
        "row",
        "what one instruction (one point of the map) is: 'row', one input row as the paper's authors count "
        "UltraFeedback (a repeated prompt with other completions is another instruction; pair rows that share "
        "a response are one, as a pair file spells out one rated row); 'prompt', every row with the same prompt "
        "merged into one instruction",
    )
    principle: str | None = option(
        None,
        "UltraFeedback: keep only the rows with exactly four completions of this principle (the authors' subset: "
        "helpfulness, 19,579 rows); the others are counted as rows_filtered",
    )
    drop_empty: bool = option(
        False,
        "leave out empty (blank) responses and the pairs they are in, each listed with its row; by default an "
        "empty response is a real, bad answer: kept, scored and paired",
    )

    def __post_init__(self) -> None:
        if self.group_by not in ("row", "prompt"):
            raise ValueError(f"group_by must be 'row' or 'prompt', got {self.group_by!r}")


class Format(Protocol):
    """Turns one raw record into a `ParsedRow`, raising `RowError` on bad fields; `None` for a row
    the options filter out (counted, not an error)."""

    name: str
    description: str

    def matches(self, record: Mapping[str, Any]) -> bool: ...

    def parse(self, record: Mapping[str, Any], options: LoadOptions) -> ParsedRow | None: ...


FORMATS: Registry[Format] = Registry("input format")


def read_proxy(record: Mapping[str, Any], options: LoadOptions) -> str | None:
    """The row's proxy from ``--proxy-column``; a null or blank cell is no proxy (one is generated)."""
    from admap.load.fields import check_string

    if options.proxy_column is None:
        return None
    if options.proxy_column not in record:
        from admap.errors import RowError

        raise RowError(options.proxy_column, "missing (named by --proxy-column)")
    value = record[options.proxy_column]
    if value is None:
        return None
    text = check_string(value, options.proxy_column)
    return text if text.strip() else None
