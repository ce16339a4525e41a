"""The proxy-free map: how much an instruction's own responses agree with one another.

The authors' code offers this variability (``response_variance_calculation``, ``var_method: comb``):
the population variance of the cosine similarities between every pair of an instruction's responses,
embedded with a sentence-transformers model. No proxy is asked for. This scorer draws the whole map from
those similarities:

- **x, variability**: ``np.var`` of the instruction's pairwise cosines (the authors' definition);
- **y, mean**: the mean of the same pairwise cosines: how much the responses agree, *not* how close they
  are to a strong model's answer. Responses that all give the same poor answer land high; an instruction
  that admits many good, different answers lands low. Read "high mean" as "consensus", not as "aligned";
- **per response**: its mean cosine to its instruction's other responses (how central it is). Their mean
  over an instruction is the y value above; ranking pairs, ``score_margin`` and the diagnosis use it.

An instruction with fewer than two responses has no pair and stays unmapped; one with exactly two has one
pair, so its variance is 0 whatever its responses say: on pair datasets (HH-RLHF, binarized UltraFeedback)
the x axis carries nothing, which the run warns about and counts (``instructions_with_one_pair``). The map
needs three or more responses per instruction, as raw UltraFeedback's four. Embeddings go through the
shared embedding cache, so a reference run on the same data has already embedded these responses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from admap.score.base import SCORERS
from admap.score.learned import same_instruction_pairs
from admap.score.sentence_scorer import SentenceScorer

logger = logging.getLogger(__name__)


def group_agreement(vectors: np.ndarray) -> tuple[np.ndarray, float, float]:
    """For one instruction's unit-length response vectors: each response's mean cosine to the others,
    and the mean and population variance of the pairwise cosines (NaN with fewer than two responses)."""
    n = len(vectors)
    if n < 2:
        return np.full(n, np.nan), float("nan"), float("nan")
    gram = np.clip(vectors.astype(np.float64) @ vectors.T.astype(np.float64), -1.0, 1.0)
    centrality = (gram.sum(axis=1) - np.diag(gram)) / (n - 1)
    pairs = gram[np.triu_indices(n, k=1)]
    return centrality, float(pairs.mean()), float(pairs.var())


def instruction_chunks(members: list[np.ndarray], limit: int) -> Iterator[list[int]]:
    """Consecutive groups of instructions (indices into ``members``) holding at most ``limit`` responses
    together; an instruction with more responses than that is a chunk of its own."""
    block: list[int] = []
    rows = 0
    for group, responses in enumerate(members):
        if block and rows + len(responses) > limit:
            yield block
            block, rows = [], 0
        block.append(group)
        rows += len(responses)
    if block:
        yield block


@SCORERS.register("self_similarity")
@dataclass
class SelfSimilarityScorer(SentenceScorer):
    """Per instruction, the mean and variance of its responses' pairwise cosine similarities (no proxy)."""

    name: ClassVar[str] = "self_similarity"
    needs_proxy: ClassVar[bool] = False
    defines_axes: ClassVar[bool] = True

    axes: pd.DataFrame | None = field(default=None, init=False, repr=False, compare=False)
    # How many instructions have one pair only (variance 0 by construction), for summary.json.
    one_pair: int = field(default=0, init=False, repr=False, compare=False)

    def report(self) -> dict:
        return {
            **super().report(),
            "axes": "mean and variance of the pairwise cosines among an instruction's own responses (no proxy)",
            "instructions_with_one_pair": self.one_pair,
        }

    def instruction_axes(self) -> pd.DataFrame | None:
        return self.axes

    def score(
        self, instructions: pd.DataFrame, responses: pd.DataFrame, *, preferences: pd.DataFrame | None = None
    ) -> np.ndarray:
        groups = responses["instruction_id"].to_numpy()
        scores = np.full(len(responses), np.nan, dtype=np.float32)
        if len(responses) == 0:
            self.axes = pd.DataFrame(columns=["instruction_id", "mean_score", "score_variance"])
            return scores
        texts = responses["response"].fillna("").astype(str).tolist()
        # The precision check compares what is scored: cosines between responses to one instruction.
        with self.embedded(texts, same_instruction_pairs(groups)) as stored:
            codes, unique_ids = pd.factorize(pd.Series(groups, dtype=object), sort=False)
            order = np.argsort(codes, kind="stable")
            means = np.full(len(unique_ids), np.nan)
            variances = np.full(len(unique_ids), np.nan)
            members = np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)
            # Read the store a chunk of instructions at a time: memory stays bounded by the chunk size.
            for block in instruction_chunks(members, self.options.embed_chunk_size):
                vectors = stored.store.gather(stored.positions[np.concatenate([members[g] for g in block])])
                bounds = np.cumsum([0] + [len(members[g]) for g in block])
                for group, start, stop in zip(block, bounds[:-1], bounds[1:]):
                    centrality, means[group], variances[group] = group_agreement(vectors[start:stop])
                    scores[members[group]] = centrality
        self.axes = pd.DataFrame({"instruction_id": unique_ids, "mean_score": means, "score_variance": variances})
        self.one_pair = int(sum(len(group) == 2 for group in members))
        if self.one_pair:
            logger.warning(
                "self_similarity: %d of %d instructions have two responses, one pair: their variance is 0 by "
                "construction; the proxy-free map needs three or more responses per instruction",
                self.one_pair,
                len(members),
            )
        return scores
