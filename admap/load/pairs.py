"""Pair datasets: one (chosen, rejected) judgment per record, regrouped per instruction later.

Formats: TRL preference records and HuggingFaceH4/ultrafeedback_binarized (``prompt``,
``chosen``, ``rejected`` as strings or message lists, optional ``score_chosen``,
``score_rejected``, ``prompt_id``), and Alpaca-style pairs (``instruction``, ``input``,
``chosen``, ``rejected``) as the paper's pipeline emits them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from admap.errors import RowError
from admap.load.base import FORMATS, LoadOptions, read_proxy
from admap.load.fields import (
    check_id,
    check_messages,
    check_rating,
    check_string,
    check_text,
    is_missing_rating,
    require_string,
    require_text,
)
from admap.load.schema import ParsedResponse, ParsedRow, render_prompt


def pair_row(
    prompt_messages: list[dict[str, str]],
    chosen: str,
    rejected: str,
    *,
    chosen_field: str = "chosen",
    rejected_field: str = "rejected",
    chosen_rating: tuple[float, bool] = (math.nan, False),
    rejected_rating: tuple[float, bool] = (math.nan, False),
    instruction_id: str | None = None,
    proxy_response: str | None = None,
    notes: tuple[str, ...] = (),
) -> ParsedRow:
    """One judgment; ratings are ``(value, missing)`` as `optional_rating` reads them. A pair whose two
    texts are the same is loaded as one response without a pair (counted as ``identical_pairs``)."""
    return ParsedRow(
        kind="pair",
        instruction=render_prompt(prompt_messages),
        prompt_messages=prompt_messages,
        responses=[
            ParsedResponse(text=chosen, field=chosen_field, rating=chosen_rating[0], rating_missing=chosen_rating[1]),
            ParsedResponse(
                text=rejected, field=rejected_field, rating=rejected_rating[0], rating_missing=rejected_rating[1]
            ),
        ],
        instruction_id=instruction_id,
        proxy_response=proxy_response,
        notes=notes,
    )


def _completion(value: Any, field: str) -> tuple[str, list[dict[str, str]]]:
    """A response given as a string, or as a message list whose last message is the assistant's."""
    if isinstance(value, list):
        messages = check_messages(value, field)
        last = messages[-1]
        if last["role"] != "assistant":
            raise RowError(
                f"{field}[{len(messages) - 1}].role", f"last message must be 'assistant', got {last['role']!r}"
            )
        return last["content"], messages[:-1]
    return check_string(value, field), []


def _same_shape(chosen: Any, rejected: Any) -> None:
    """Both sides strings, or both message lists: a string beside a message list is a broken row, whose
    list's prompt turns would otherwise go unread."""
    if chosen is None or rejected is None or isinstance(chosen, list) == isinstance(rejected, list):
        return  # a null side is reported as null
    if isinstance(chosen, list):
        raise RowError("rejected", f"must be a list of messages as 'chosen' is, got {type(rejected).__name__}")
    raise RowError("chosen", f"must be a list of messages as 'rejected' is, got {type(chosen).__name__}")


def optional_rating(record: Mapping[str, Any], key: str) -> tuple[float, bool]:
    """``(rating, missing)``: NaN and False when the record has no such field, NaN and True when the
    field is there without a value ("N/A", None)."""
    if key not in record:
        return math.nan, False
    return check_rating(record[key], key), is_missing_rating(record[key])


class Preference:
    name = "preference"
    description = "TRL / ultrafeedback_binarized: prompt, chosen, rejected (strings or message lists)"

    def matches(self, record: Mapping[str, Any]) -> bool:
        if "chosen" not in record or "rejected" not in record:
            return False
        return "prompt" in record or isinstance(record["chosen"], list)

    def parse(self, record: Mapping[str, Any], options: LoadOptions) -> ParsedRow:
        for key in ("chosen", "rejected"):
            if key not in record:
                raise RowError(key, "missing")
        _same_shape(record["chosen"], record["rejected"])
        chosen, chosen_context = _completion(record["chosen"], "chosen")
        rejected, rejected_context = _completion(record["rejected"], "rejected")
        prompt = record.get("prompt")
        if isinstance(prompt, list):
            prompt_messages = check_messages(prompt, "prompt")
        elif chosen_context:
            # Binarized and implicit-prompt TRL rows repeat the prompt turns inside each completion; the
            # prompt string beside them (binarized) is not read, but must still be text.
            if prompt is not None:
                check_string(prompt, "prompt")
            if rejected_context != chosen_context:
                raise RowError("rejected", "its prompt turns differ from those of 'chosen'")
            prompt_messages = chosen_context
        elif prompt is not None:
            prompt_messages = [{"role": "user", "content": check_text(prompt, "prompt")}]
        else:
            raise RowError("prompt", "missing, and 'chosen' carries no prompt turns")
        prompt_id = record.get("prompt_id")
        return pair_row(
            prompt_messages,
            chosen,
            rejected,
            chosen_rating=optional_rating(record, "score_chosen"),
            rejected_rating=optional_rating(record, "score_rejected"),
            instruction_id=check_id(prompt_id, "prompt_id") if prompt_id is not None else None,
            proxy_response=read_proxy(record, options),
        )


class Alpaca:
    name = "alpaca"
    description = "Alpaca-style pairs: instruction, input, chosen, rejected"

    def matches(self, record: Mapping[str, Any]) -> bool:
        return {"instruction", "chosen", "rejected"} <= set(record) and isinstance(record["chosen"], str)

    def parse(self, record: Mapping[str, Any], options: LoadOptions) -> ParsedRow:
        instruction = require_text(record, "instruction")
        extra_input = record.get("input")
        if extra_input is not None:
            check_string(extra_input, "input")
        content = f"{instruction}\n\n{extra_input}" if extra_input and extra_input.strip() else instruction
        return pair_row(
            [{"role": "user", "content": content}],
            require_string(record, "chosen"),
            require_string(record, "rejected"),
            proxy_response=read_proxy(record, options),
        )


FORMATS.register(Preference.name)(Preference())
FORMATS.register(Alpaca.name)(Alpaca())
