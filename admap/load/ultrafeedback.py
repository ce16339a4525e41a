"""openbmb/UltraFeedback: one instruction with rated completions from several models.

One row is one data point, as the paper's authors count UltraFeedback: a repeated prompt with
other completions stays its own instruction. ``principle`` selects the authors' subset: the rows
with exactly four completions written under that principle (their ``check_helpfulness``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from admap.errors import RowError
from admap.load.base import FORMATS, LoadOptions, read_proxy
from admap.load.fields import (
    check_rating,
    is_missing_rating,
    lenient_rating,
    optional_label,
    require_string,
    require_text,
)
from admap.load.schema import ParsedResponse, ParsedRow

ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
TOP_LEVEL_RATINGS = ("fine-grained_score", "overall_score")
# The authors keep a row when this many of its completions carry the principle: all four of a full row.
PRINCIPLE_COMPLETIONS = 4


def _aspect_rating(annotations: Any, aspect: str) -> Any:
    entry = annotations.get(aspect) if isinstance(annotations, Mapping) else None
    return entry.get("Rating") if isinstance(entry, Mapping) else entry


def principle_rule(principle: str) -> str:
    """The row filter ``principle`` imposes, in words (recorded in summary.json)."""
    return f"rows with exactly {PRINCIPLE_COMPLETIONS} completions whose principle is {principle!r}"


class UltraFeedback:
    name = "ultrafeedback"
    description = "openbmb/UltraFeedback: instruction, completions[{model, response, annotations, fine-grained_score}]"

    def matches(self, record: Mapping[str, Any]) -> bool:
        return "instruction" in record and isinstance(record.get("completions"), list)

    def parse(self, record: Mapping[str, Any], options: LoadOptions) -> ParsedRow | None:
        instruction = require_text(record, "instruction")
        completions = record.get("completions")
        if not isinstance(completions, list):
            raise RowError("completions", f"must be a list, got {type(completions).__name__}")
        rating_field = options.rating_field
        if rating_field not in TOP_LEVEL_RATINGS and rating_field not in ASPECTS:
            raise ValueError(
                f"rating_field {rating_field!r} is not an UltraFeedback rating; "
                f"choose from {', '.join(TOP_LEVEL_RATINGS + ASPECTS)}"
            )
        responses = [self._completion(completion, index, rating_field) for index, completion in enumerate(completions)]
        if options.principle is not None:
            carrying = sum(response.principle == options.principle for response in responses)
            if carrying != PRINCIPLE_COMPLETIONS:
                return None
        return ParsedRow(
            kind="completions",
            instruction=instruction,
            prompt_messages=[{"role": "user", "content": instruction}],
            responses=responses,
            proxy_response=read_proxy(record, options),
            source=optional_label(record.get("source"), "source"),
        )

    @staticmethod
    def _completion(completion: Any, index: int, rating_field: str) -> ParsedResponse:
        prefix = f"completions[{index}]"
        # Fields are named inside the completion here, and the prefix added on error only: formatting
        # every name of every completion would cost more than reading it.
        try:
            if not isinstance(completion, Mapping):
                raise RowError("", f"must be an object, got {type(completion).__name__}")
            text = require_string(completion, "response")
            annotations = completion.get("annotations") or {}
            if rating_field in TOP_LEVEL_RATINGS:
                raw_rating, rating_path = completion.get(rating_field), rating_field
            else:
                # The other aspects are read leniently (junk is no rating); the rating that orders pairs is not.
                if not isinstance(annotations, Mapping):
                    raise RowError("annotations", f"must be an object, got {type(annotations).__name__}")
                raw_rating = _aspect_rating(annotations, rating_field)
                rating_path = f"annotations.{rating_field}.Rating"
            return ParsedResponse(
                text=text,
                field=f"{prefix}.response",
                model=optional_label(completion.get("model"), "model"),
                rating=check_rating(raw_rating, rating_path),
                rating_missing=is_missing_rating(raw_rating),
                aspect_ratings={a: lenient_rating(_aspect_rating(annotations, a)) for a in ASPECTS}
                | {r: lenient_rating(completion.get(r)) for r in TOP_LEVEL_RATINGS},
                principle=optional_label(completion.get("principle"), "principle"),
            )
        except RowError as error:
            located = RowError(f"{prefix}.{error.field}" if error.field else prefix, error.reason)
            # A bad completion still counts towards the principle rule, as in the authors' check.
            principle = completion.get("principle") if isinstance(completion, Mapping) else None
            principle = principle if isinstance(principle, str) else None
            return ParsedResponse(text="", field=prefix, rating=math.nan, principle=principle, error=located)


FORMATS.register(UltraFeedback.name)(UltraFeedback())
