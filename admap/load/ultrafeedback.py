"""openbmb/UltraFeedback: one instruction with rated completions from several models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from admap.errors import RowError
from admap.load.base import FORMATS, LoadOptions, read_proxy
from admap.load.fields import check_rating, check_text, lenient_rating, require_text
from admap.load.schema import ParsedResponse, ParsedRow

ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
TOP_LEVEL_RATINGS = ("fine-grained_score", "overall_score")


def _aspect_rating(annotations: Any, aspect: str) -> Any:
    entry = annotations.get(aspect) if isinstance(annotations, Mapping) else None
    return entry.get("Rating") if isinstance(entry, Mapping) else entry


class UltraFeedback:
    name = "ultrafeedback"
    description = "openbmb/UltraFeedback: instruction, completions[{model, response, annotations, fine-grained_score}]"

    def matches(self, record: Mapping[str, Any]) -> bool:
        return "instruction" in record and isinstance(record.get("completions"), list)

    def parse(self, record: Mapping[str, Any], options: LoadOptions) -> ParsedRow:
        instruction = require_text(record, "instruction")
        completions = record["completions"]
        if not completions:
            raise RowError("completions", "is empty")
        rating_field = options.rating_field
        if rating_field not in TOP_LEVEL_RATINGS and rating_field not in ASPECTS:
            raise ValueError(
                f"rating_field {rating_field!r} is not an UltraFeedback rating; "
                f"choose from {', '.join(TOP_LEVEL_RATINGS + ASPECTS)}"
            )
        responses = []
        for index, completion in enumerate(completions):
            prefix = f"completions[{index}]"
            try:
                if not isinstance(completion, Mapping):
                    raise RowError(prefix, f"must be an object, got {type(completion).__name__}")
                text = require_text(completion, "response", f"{prefix}.response")
                annotations = completion.get("annotations") or {}
                if rating_field in TOP_LEVEL_RATINGS:
                    raw_rating, rating_path = completion.get(rating_field), f"{prefix}.{rating_field}"
                else:
                    raw_rating = _aspect_rating(annotations, rating_field)
                    rating_path = f"{prefix}.annotations.{rating_field}.Rating"
                rating = check_rating(raw_rating, rating_path)
                model = completion.get("model")
                responses.append(
                    ParsedResponse(
                        text=text,
                        field=f"{prefix}.response",
                        model=check_text(model, f"{prefix}.model") if model is not None else None,
                        rating=rating,
                        aspect_ratings={a: lenient_rating(_aspect_rating(annotations, a)) for a in ASPECTS}
                        | {r: lenient_rating(completion.get(r)) for r in TOP_LEVEL_RATINGS},
                    )
                )
            except RowError as error:
                responses.append(ParsedResponse(text="", field=prefix, error=error))
        return ParsedRow(
            instruction=instruction,
            prompt_messages=[{"role": "user", "content": instruction}],
            responses=responses,
            proxy_response=read_proxy(record, options),
        )


FORMATS.register(UltraFeedback.name)(UltraFeedback())
