"""An UltraFeedback-shaped scoring set, built offline: 4 completions and a proxy per instruction, at
UltraFeedback's text lengths, from the sentences of a dataset admap has read.

The texts are synthetic and seeded, but their words and sentences are real (by default those of the
HH-RLHF test file), so that the tokenizer splits them as it splits real text and their embeddings spread
as real ones do. What the scoring stage's cost depends on is kept: instructions of a few hundred
characters, completions of about 1,000–1,500 and proxies a little longer (a GPT-4o answer under
max_tokens 1024), every completion its own text and the proxy shared by an instruction's 4 completions.
Each instruction draws its sentences mostly from a topic of its own, each completion a random share of
them, so that the cosines to the proxy vary within an instruction as they do between answers of
different quality.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

RESPONSES_PER_INSTRUCTION = 4
# Median characters and the spread of their logarithm: the medians sit below UltraFeedback's lengths by
# about half a sentence, which `_text` adds when it stops at the first sentence past its target.
INSTRUCTION_CHARACTERS = (260, 0.4)
COMPLETION_CHARACTERS = (1150, 0.3)
PROXY_CHARACTERS = (1300, 0.3)
TOPIC_SENTENCES = 30
MIN_SENTENCE_CHARACTERS = 20
# Dialogue turn markers (HH-RLHF's "Human:", "Assistant:") and sentence ends split the source texts.
TURN_MARKER = re.compile(r"\n+\s*(?:Human|Assistant|User|System):\s*")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences_of(texts: Iterable[str]) -> list[str]:
    """The distinct sentences of ``texts`` (at least 20 characters each), in first-seen order."""
    found = (
        sentence.strip()
        for text in texts
        if isinstance(text, str)
        for turn in TURN_MARKER.split(text)
        for sentence in SENTENCE_END.split(turn)
    )
    return list(dict.fromkeys(s for s in found if len(s) >= MIN_SENTENCE_CHARACTERS))


def _text(rng: np.random.Generator, sentences: list[str], topic: np.ndarray, on_topic: float, target: float) -> str:
    """Sentences until ``target`` characters are reached, each from ``topic`` with probability ``on_topic``."""
    parts, length = [], 0
    while length < target:
        position = rng.choice(topic) if rng.random() < on_topic else rng.integers(len(sentences))
        parts.append(sentences[position])
        length += len(parts[-1]) + 1
    return " ".join(parts)


def ultrafeedback_shaped(
    sentences: list[str], n_instructions: int, *, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(instructions, responses)`` as the loaders lay them out: ``instructions`` has ``instruction_id``
    (``uf0``, ...), ``instruction``, ``proxy_response``, ``proxy_source`` and ``prompt_messages``;
    ``responses`` has ``instruction_id``, ``response_id`` (``<instruction_id>-<k>``) and ``response``, 4 per
    instruction. The same ``sentences`` and ``seed`` give the same texts."""
    if n_instructions < 1:
        raise ValueError(f"n_instructions must be >= 1, got {n_instructions}")
    if len(sentences) < TOPIC_SENTENCES:
        raise ValueError(f"{len(sentences)} sentences to build texts from: at least {TOPIC_SENTENCES} are needed")
    rng = np.random.default_rng(seed)

    def length(median_and_spread: tuple[float, float]) -> float:
        median, spread = median_and_spread
        return rng.lognormal(np.log(median), spread)

    instructions, responses = [], []
    for i in range(n_instructions):
        instruction_id = f"uf{i}"
        topic = rng.integers(len(sentences), size=TOPIC_SENTENCES)
        instructions.append(
            {
                "instruction_id": instruction_id,
                "instruction": _text(rng, sentences, topic, 1.0, length(INSTRUCTION_CHARACTERS)),
                "proxy_response": _text(rng, sentences, topic, 0.8, length(PROXY_CHARACTERS)),
            }
        )
        for k in range(RESPONSES_PER_INSTRUCTION):
            responses.append(
                {
                    "instruction_id": instruction_id,
                    "response_id": f"{instruction_id}-{k}",
                    "response": _text(rng, sentences, topic, rng.random(), length(COMPLETION_CHARACTERS)),
                }
            )
    instructions = pd.DataFrame(instructions)
    instructions["proxy_source"] = "synthetic"
    instructions["prompt_messages"] = None
    return instructions, pd.DataFrame(responses)
