"""ROUGE-L F1 of each response against its proxy response, as the paper's code offers.

Tokens as rouge-score makes them without stemming: lower case, runs of ``[a-z0-9]``. The longest
common subsequence uses the bit-parallel algorithm of Allison and Dix (Hyyrö's form), one big-integer
step per token, so long responses stay cheap in pure Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from admap.score.base import SCORERS, ScorerDefaults, ScoringContext

TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def lcs_length(first: list[str], second: list[str]) -> int:
    """Length of the longest common subsequence of two token lists."""
    if not first or not second:
        return 0
    positions: dict[str, int] = {}
    for index, token in enumerate(first):
        positions[token] = positions.get(token, 0) | (1 << index)
    full = (1 << len(first)) - 1
    row = full
    for token in second:
        matches = row & positions.get(token, 0)
        row = ((row + matches) | (row - matches)) & full
    return len(first) - row.bit_count()


def rouge_l_f1(candidate: str, reference: str) -> float:
    candidate_tokens, reference_tokens = tokenize(candidate), tokenize(reference)
    common = lcs_length(reference_tokens, candidate_tokens)
    if common == 0:
        return 0.0
    precision, recall = common / len(candidate_tokens), common / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


@SCORERS.register("rouge_l")
@dataclass
class RougeLScorer(ScorerDefaults):
    """ROUGE-L F1 of each response against its proxy: a lexical reference score with no model."""

    name: ClassVar[str] = "rouge_l"
    needs_proxy: ClassVar[bool] = True

    @classmethod
    def from_options(cls, options: None, context: ScoringContext) -> RougeLScorer:
        return cls()

    def score(
        self, instructions: pd.DataFrame, responses: pd.DataFrame, *, preferences: pd.DataFrame | None = None
    ) -> np.ndarray:
        proxies = responses["instruction_id"].map(instructions.set_index("instruction_id")["proxy_response"])
        return np.array(
            [
                np.nan if proxy is None or proxy != proxy else rouge_l_f1(text, proxy)
                for text, proxy in zip(responses["response"], proxies)
            ],
            dtype=np.float32,
        )
