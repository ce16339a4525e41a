"""The format protocol and its registry: a new input format is one new module that registers itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

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


class Format(Protocol):
    """Turns one raw record into a `ParsedRow`, raising `RowError` on bad fields."""

    name: str
    description: str

    def matches(self, record: Mapping[str, Any]) -> bool: ...

    def parse(self, record: Mapping[str, Any], options: LoadOptions) -> ParsedRow: ...


FORMATS: Registry[Format] = Registry("input format")


def read_proxy(record: Mapping[str, Any], options: LoadOptions) -> str | None:
    from admap.load.fields import check_text

    if options.proxy_column is None:
        return None
    if options.proxy_column not in record:
        from admap.errors import RowError

        raise RowError(options.proxy_column, "missing (named by --proxy-column)")
    return check_text(record[options.proxy_column], options.proxy_column)
