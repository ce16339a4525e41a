"""Anthropic HH-RLHF: ``chosen`` and ``rejected`` are whole transcripts sharing a dialogue prefix.

The prompt is the two transcripts' common start, up to its last "\\n\\nAssistant:"; each
transcript's text after it is its response. That is the split TRL's HH-RLHF scripts make. In a
few real rows the transcripts part before the last assistant turn (one side has a turn the other
lacks, or a turn marker without its blank line); their responses then run over several turns,
and the rows are counted as ``hh_rlhf_responses_over_several_turns``. An empty last turn is an
empty response, and an empty turn inside the dialogue is kept as it is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from admap.errors import RowError
from admap.load.base import FORMATS, LoadOptions, read_proxy
from admap.load.fields import require_string
from admap.load.pairs import pair_row
from admap.load.schema import ParsedRow

ASSISTANT_TAG = "\n\nAssistant:"
TURN_PATTERN = re.compile(r"\n\n(Human|Assistant):")
ROLES = {"Human": "user", "Assistant": "assistant"}
SEVERAL_TURNS = "hh_rlhf_responses_over_several_turns"


def transcript_messages(transcript: str, field: str) -> list[dict[str, str]]:
    parts = TURN_PATTERN.split(transcript)
    if parts[0].strip():
        raise RowError(field, "text before the first 'Human:' turn")
    messages = [
        {"role": ROLES[speaker], "content": content.strip()} for speaker, content in zip(parts[1::2], parts[2::2])
    ]
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
        chosen = require_string(record, "chosen")
        rejected = require_string(record, "rejected")
        common = os.path.commonprefix([chosen, rejected])
        cut = common.rfind(ASSISTANT_TAG)
        if cut < 0:
            raise RowError("rejected", "shares no '\\n\\nAssistant:' turn with 'chosen' (a different dialogue)")
        start = cut + len(ASSISTANT_TAG)
        chosen_response, rejected_response = chosen[start:], rejected[start:]
        several_turns = any(TURN_PATTERN.search(text) for text in (chosen_response, rejected_response))
        return pair_row(
            transcript_messages(chosen[:cut], "chosen"),
            chosen_response.strip(),
            rejected_response.strip(),
            proxy_response=read_proxy(record, options),
            notes=(SEVERAL_TURNS,) if several_turns else (),
        )


FORMATS.register(HHRLHF.name)(HHRLHF())
