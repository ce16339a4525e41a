"""Any table, with the column of each canonical field named by the user.

Either one response per row (``response_column``, optional ``rating_column`` and
``model_column``; rows sharing an instruction are grouped) or one pair per row
(``chosen_column`` and ``rejected_column``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from admap.load.base import FORMATS, LoadOptions, read_proxy
from admap.load.fields import check_id, check_rating, is_missing_rating, optional_label, require_string, require_text
from admap.load.pairs import pair_row
from admap.load.schema import ParsedResponse, ParsedRow


class Columns:
    name = "columns"
    description = "any table: --instruction-column plus --response-column, or --chosen-column and --rejected-column"

    def matches(self, record: Mapping[str, Any]) -> bool:
        # Never chosen automatically: the user names the columns.
        return False

    def parse(self, record: Mapping[str, Any], options: LoadOptions) -> ParsedRow:
        instruction = require_text(record, options.instruction_column)
        prompt_messages = [{"role": "user", "content": instruction}]
        instruction_id = None
        if options.id_column:
            instruction_id = check_id(record.get(options.id_column), options.id_column)
        proxy = read_proxy(record, options)
        if options.chosen_column and options.rejected_column:
            return pair_row(
                prompt_messages,
                require_string(record, options.chosen_column),
                require_string(record, options.rejected_column),
                chosen_field=options.chosen_column,
                rejected_field=options.rejected_column,
                instruction_id=instruction_id,
                proxy_response=proxy,
            )
        if not options.response_column:
            raise ValueError("the 'columns' format needs response_column, or chosen_column and rejected_column")
        rating, rating_missing = math.nan, False
        if options.rating_column:
            raw_rating = record.get(options.rating_column)
            rating, rating_missing = check_rating(raw_rating, options.rating_column), is_missing_rating(raw_rating)
        model = optional_label(record.get(options.model_column), options.model_column) if options.model_column else None
        response = ParsedResponse(
            text=require_string(record, options.response_column),
            field=options.response_column,
            model=model,
            rating=rating,
            rating_missing=rating_missing,
        )
        return ParsedRow(
            kind="response",
            instruction=instruction,
            prompt_messages=prompt_messages,
            responses=[response],
            instruction_id=instruction_id,
            proxy_response=proxy,
        )


FORMATS.register(Columns.name)(Columns())
