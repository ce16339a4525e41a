"""The SFT model's mean token probability of each response, one of the scores the authors' code offers.

Each response is read as the assistant's reply in its own conversation (the model's chat template; cut
from the left to fit ``max_length``), and its score is ``exp(mean log p(token))`` over its own tokens:
the geometric mean of the token probabilities, as the authors' ``compute_response_probability`` takes it
(``exp(-loss)`` with the prompt masked). It asks how natural the response is to the policy about to be
trained, not how good it is: no proxy, no labels. An empty response has no tokens and scores 0, as in the
authors' code.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from admap.config import option
from admap.devices import pick_device
from admap.models import DEFAULT_GENERATOR_MODEL, load_causal_lm
from admap.progress import advancing, stage_bar
from admap.score.base import SCORERS, ScorerDefaults, ScoringContext
from admap.score.causal_lm import encode_in_context, padded_batches, response_token_log_probs

logger = logging.getLogger(__name__)


@dataclass
class SftProbabilityOptions:
    model: str = option(DEFAULT_GENERATOR_MODEL, "the SFT (policy) model, any causal LM: a hub id or a path")
    batch_size: int | None = option(None, "responses per batch (default: 8 on the CPU, 32 on CUDA)")
    max_length: int = option(2048, "tokens per conversation, cut on the left (the authors' cutoff: 2048)")


def mean_token_log_probs(lm, batches, encoded: list[tuple[list[int], int]]) -> np.ndarray:
    """Per encoded sequence, the mean log-probability the LM gives its last ``n`` (response) tokens;
    -inf where there are none."""
    per_token = response_token_log_probs(lm, batches, encoded)
    return np.array([tokens.mean() if len(tokens) else -np.inf for tokens in per_token], dtype=np.float64)


@SCORERS.register("sft_probability")
@dataclass
class SftProbabilityScorer(ScorerDefaults):
    """``exp`` of the mean log-probability of each response's tokens under a causal LM, in its conversation."""

    name: ClassVar[str] = "sft_probability"
    needs_proxy: ClassVar[bool] = False
    Options: ClassVar[type] = SftProbabilityOptions

    model: str = DEFAULT_GENERATOR_MODEL
    batch_size: int | None = None
    max_length: int = 2048
    device: str = "auto"
    progress: bool = True
    # Responses scored and how many were empty, for summary.json.
    counts: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_length < 2:
            raise ValueError(f"sft_probability max_length must be >= 2, got {self.max_length}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"sft_probability batch_size must be >= 1, got {self.batch_size}")

    @classmethod
    def from_options(cls, options: SftProbabilityOptions, context: ScoringContext) -> SftProbabilityScorer:
        return cls(
            model=options.model,
            batch_size=options.batch_size,
            max_length=options.max_length,
            device=context.device,
            progress=context.progress,
        )

    def label(self) -> str:
        return f"{self.name} ({self.model})"

    def report(self) -> dict:
        return {"model": self.model, "max_length": self.max_length, **self.counts}

    def score(
        self, instructions: pd.DataFrame, responses: pd.DataFrame, *, preferences: pd.DataFrame | None = None
    ) -> np.ndarray:
        scores = np.full(len(responses), np.nan, dtype=np.float32)
        prompts = responses["instruction_id"].map(instructions.set_index("instruction_id")["prompt_messages"])
        texts = responses["response"]
        scorable = np.flatnonzero((prompts.notna() & texts.notna()).to_numpy())
        if len(scorable) == 0:
            return scores
        device = pick_device(self.device)
        lm, tokenizer = load_causal_lm(self.model, device=device)
        parsed = {prompt: json.loads(prompt) for prompt in prompts.iloc[scorable].unique()}
        encoded = encode_in_context(
            [parsed[prompt] for prompt in prompts.iloc[scorable]],
            texts.iloc[scorable].tolist(),
            tokenizer,
            self.max_length,
        )
        batch_size = self.batch_size or (32 if device.startswith("cuda") else 8)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        with stage_bar(
            f"token probabilities ({self.model})", len(encoded), unit=" responses", enabled=self.progress
        ) as bar:
            batches = advancing(padded_batches(encoded, batch_size, pad), bar, size=lambda batch: len(batch[0]))
            # exp(-inf) is 0: an empty response scores 0.
            scores[scorable] = np.exp(mean_token_log_probs(lm, batches, encoded))
        empty = sum(n == 0 for _, n in encoded)
        self.counts = {"responses_scored": int(len(scorable)), "empty_responses": int(empty)}
        if empty:
            logger.info("sft_probability: %d empty responses score 0", empty)
        return scores
