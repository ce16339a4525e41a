"""Anthropic HH-RLHF: ``chosen`` and ``rejected`` are whole transcripts sharing a dialogue prefix.

The prompt is everything up to the last "\\n\\nAssistant:" of ``chosen``; ``rejected`` must start
with the same prefix; the text after it is each transcript's response.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from admap.errors import RowError
from admap.load.base import FORMATS, LoadOptions, read_proxy
from admap.load.fields import require_text
from admap.load.pairs import pair_row
from admap.load.schema import ParsedRow

ASSISTANT_TAG = "\n\nAssistant:"
TURN_PATTERN = re.compile(r"\n\n(Human|Assistant):")
ROLES = {"Human": "user", "Assistant": "assistant"}


def transcript_messages(transcript: str, field: str) -> list[dict[str, str]]:
    parts = TURN_PATTERN.split(transcript)
    if parts[0].strip():
        raise RowError(field, "text before the first 'Human:' turn")
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        if not content.strip():
            raise RowError(field, f"empty {speaker} turn")
        messages.append({"role": ROLES[speaker], "content": content.strip()})
    if not messages:
        raise RowError(field, "no 'Human:' / 'Assistant:' turns")
    return messages


class HHRLHF:
    name = "hh_rlhf"
    description = "Anthropic HH-RLHF: chosen, rejected as '\\n\\nHuman: ... \\n\\nAssistant: ...' transcripts"

    def matches(self, record: Mapping[str, Any]) -> bool:
        chosen = record.get("chosen")
        return "prompt" not in record and isinstance(chosen, str) and chosen.lstrip(" ").startswith("\n\nHuman:")

    def parse(self, record: Mapping[str, Any], options: LoadOptions) -> ParsedRow:
        chosen = require_text(record, "chosen")
        rejected = require_text(record, "rejected")
        cut = chosen.rfind(ASSISTANT_TAG)
        if cut < 0:
            raise RowError("chosen", "has no '\\n\\nAssistant:' turn")
        prefix = chosen[: cut + len(ASSISTANT_TAG)]
        if not rejected.startswith(prefix):
            raise RowError("rejected", "does not share the dialogue prefix of 'chosen'")
        chosen_response = chosen[len(prefix) :].strip()
        rejected_response = rejected[len(prefix) :].strip()
        if not chosen_response:
            raise RowError("chosen", "last Assistant turn is empty")
        if not rejected_response:
            raise RowError("rejected", "last Assistant turn is empty")
        if TURN_PATTERN.search(rejected[len(prefix) :]):
            raise RowError("rejected", "continues past the turn where 'chosen' ends")
        return pair_row(
            transcript_messages(prefix[: -len(ASSISTANT_TAG)], "chosen"),
            chosen_response,
            rejected_response,
            proxy_response=read_proxy(record, options),
        )


FORMATS.register(HHRLHF.name)(HHRLHF())
