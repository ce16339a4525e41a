"""Held-out preference accuracy of a DPO policy, the way RewardBench scores DPO models.

For a held-out pair (prompt x, chosen y_w, rejected y_l), the policy π_θ and the model it was trained
from, π_ref:

- **implicit reward accuracy**: how often β·(log π_θ(y_w|x) − log π_ref(y_w|x)) − β·(log π_θ(y_l|x) −
  log π_ref(y_l|x)) > 0, the DPO reward ranking the chosen response first. The untrained policy's margin is
  0 on every pair: ties count half, so it scores 0.5;
- **log-prob accuracy**: how often log π_θ(y_w|x) > log π_θ(y_l|x), summed over the response's tokens (which
  favours the shorter response), and per token (``_per_token``, the mean, which does not);
- the mean implicit reward margin.

Each comes with a percentile-bootstrap 95% interval over the pairs. Sequences are tokenized as TRL's
DPOTrainer tokenizes its training pairs (the chat template; the completion starts where the prompt and
prompt + completion part; the sequence cut to ``max_length`` from its end; a pair whose prompt alone fills
``max_length`` is dropped and counted), so a held-out pair is measured as a training pair would be.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from admap.config import option
from admap.durable import publish
from admap.progress import advancing, stage_bar
from admap.score.causal_lm import padded_batches, response_token_log_probs

logger = logging.getLogger(__name__)

# TRL's default DPOConfig.max_length.
DEFAULT_MAX_LENGTH = 1024


@dataclass
class PreferenceAccuracyOptions:
    batch_size: int = option(8, "sequences per forward pass")
    max_length: int | None = option(
        None, "tokens per prompt + response, cut from the end as TRL does (default: train.dpo.max_length, else 1024)"
    )
    bootstrap: int = option(2000, "bootstrap resamples of the held-out pairs for the 95% intervals")
    bootstrap_seed: int = option(0, "seed of the bootstrap resampling")

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"preference_accuracy.batch_size must be >= 1, got {self.batch_size}")
        if self.bootstrap < 1:
            raise ValueError(f"preference_accuracy.bootstrap must be >= 1, got {self.bootstrap}")


def _chat_ids(tokenizer, messages: list[dict], **kwargs) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)["input_ids"])


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def tokenize_pairs(
    records: list[dict], tokenizer, *, max_length: int, truncation_mode: str = "keep_start"
) -> tuple[list[tuple[list[int], int]], np.ndarray]:
    """Per pair, two encoded sequences ``(ids, n_completion)``, chosen then rejected (pair i at 2i, 2i + 1),
    and which pairs are kept. As TRL's collator: ``keep_start`` keeps a sequence's first ``max_length`` tokens
    and drops a pair whose prompt alone fills them; ``keep_end`` keeps the last ones and drops nothing."""
    if truncation_mode not in ("keep_start", "keep_end"):
        raise ValueError(f"truncation_mode must be keep_start or keep_end, got {truncation_mode!r}")
    encoded: list[tuple[list[int], int]] = []
    kept = np.zeros(len(records), dtype=bool)
    for i, record in enumerate(records):
        prompt_ids = _chat_ids(tokenizer, record["prompt"], add_generation_prompt=True)
        chosen_ids = _chat_ids(tokenizer, record["prompt"] + record["chosen"])
        rejected_ids = _chat_ids(tokenizer, record["prompt"] + record["rejected"])
        prompt_length = min(_common_prefix(prompt_ids, chosen_ids), _common_prefix(prompt_ids, rejected_ids))
        kept[i] = truncation_mode == "keep_end" or prompt_length < max_length
        if not kept[i]:
            continue
        for full in (chosen_ids, rejected_ids):
            completion = len(full) - prompt_length
            if truncation_mode == "keep_start":
                tokens = full[:max_length]
                encoded.append((tokens, len(tokens) - prompt_length))
            else:
                encoded.append((full[-max_length:], min(completion, max_length)))
    return encoded, kept


def completion_log_probs(lm, encoded: list[tuple[list[int], int]], *, batch_size: int, pad_id: int, progress: bool):
    """``(summed log-probability, tokens)`` of each encoded sequence's completion under ``lm``."""
    with stage_bar("held-out log-probabilities", len(encoded), unit=" sequences", enabled=progress) as bar:
        batches = advancing(padded_batches(encoded, batch_size, pad_id), bar, size=lambda batch: len(batch[0]))
        per_token = response_token_log_probs(lm, batches, encoded)
    return np.array([t.sum() for t in per_token]), np.array([len(t) for t in per_token])


def sequence_table(
    lm,
    tokenizer,
    records: list[dict],
    options: PreferenceAccuracyOptions,
    *,
    max_length: int,
    truncation_mode: str = "keep_start",
    progress: bool,
):
    """One row per kept pair: the pair's ids, and summed log-probabilities and token counts of both responses."""
    encoded, kept = tokenize_pairs(records, tokenizer, max_length=max_length, truncation_mode=truncation_mode)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    sums, tokens = completion_log_probs(lm, encoded, batch_size=options.batch_size, pad_id=pad, progress=progress)
    ids = ["instruction_id", "chosen_id", "rejected_id"]
    table = pd.DataFrame([[r[k] for k in ids] for r, keep in zip(records, kept) if keep], columns=ids)
    table["chosen_logp"], table["rejected_logp"] = sums[0::2], sums[1::2]
    table["chosen_tokens"], table["rejected_tokens"] = tokens[0::2], tokens[1::2]
    return table


def ranked_first(margin: np.ndarray) -> np.ndarray:
    """1 where the chosen response is ranked first, 0.5 on a tie, 0 where the rejected one is."""
    return np.where(margin > 0, 1.0, np.where(margin == 0, 0.5, 0.0))


def bootstrap_interval(values: np.ndarray, *, resamples: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def pair_outcomes(policy: pd.DataFrame, reference: pd.DataFrame, *, beta: float) -> pd.DataFrame:
    """Per held-out pair: the implicit reward margin and whether each measure ranks the chosen response first.
    ``policy`` and ``reference`` are `sequence_table`s of the same pairs in the same order."""
    ids = ["instruction_id", "chosen_id", "rejected_id"]
    if not policy[ids].equals(reference[ids]):
        raise ValueError("the policy's and the reference's tables do not hold the same pairs in the same order")

    def difference(table: pd.DataFrame, *, per_token: bool = False) -> np.ndarray:
        chosen, rejected = table["chosen_logp"], table["rejected_logp"]
        if per_token:
            chosen, rejected = (
                chosen / table["chosen_tokens"].clip(lower=1),
                rejected / table["rejected_tokens"].clip(lower=1),
            )
        return (chosen - rejected).to_numpy()

    margin = beta * (difference(policy) - difference(reference))
    outcomes = policy[[*ids, "chosen_tokens", "rejected_tokens"]].copy()
    outcomes["reward_margin"] = margin
    outcomes["reward_correct"] = ranked_first(margin)
    outcomes["logprob_correct"] = ranked_first(difference(policy))
    outcomes["logprob_per_token_correct"] = ranked_first(difference(policy, per_token=True))
    outcomes["reference_logprob_correct"] = ranked_first(difference(reference))
    return outcomes


# Row field -> the per-pair column it is the mean of.
MEASURES = {
    "preference_accuracy": "reward_correct",
    "preference_margin": "reward_margin",
    "logprob_accuracy": "logprob_correct",
    "logprob_accuracy_per_token": "logprob_per_token_correct",
    "reference_logprob_accuracy": "reference_logprob_correct",
}


def summarize(outcomes: pd.DataFrame, *, resamples: int, seed: int) -> dict:
    """The results row's fields: each measure's mean with its bootstrap interval (``_low``, ``_high``)."""
    row: dict = {"held_out_pairs": len(outcomes)}
    if outcomes.empty:
        return row
    for name, column in MEASURES.items():
        values = outcomes[column].to_numpy(dtype=float)
        row[name] = float(values.mean())
        row[f"{name}_low"], row[f"{name}_high"] = bootstrap_interval(values, resamples=resamples, seed=seed)
    row["held_out_chosen_longer"] = float((outcomes["chosen_tokens"] > outcomes["rejected_tokens"]).mean())
    return row


def reference_table(
    reference_model: str,
    records: list[dict],
    options: PreferenceAccuracyOptions,
    *,
    max_length: int,
    truncation_mode: str,
    cache: Path,
    device: str,
    progress: bool,
) -> pd.DataFrame:
    """The reference model's `sequence_table` of the held-out pairs: computed once per model and length, as
    every run of an experiment shares it (``cache`` names the model and the truncation)."""
    if cache.exists():
        return pd.read_parquet(cache)
    from admap.models import load_causal_lm

    lm, tokenizer = load_causal_lm(reference_model, device=device, dtype="float32")
    table = sequence_table(
        lm, tokenizer, records, options, max_length=max_length, truncation_mode=truncation_mode, progress=progress
    )
    publish(cache, lambda staging: table.to_parquet(staging, index=False))
    return table


def evaluate_preference_accuracy(
    policy_dir: Path,
    reference: pd.DataFrame,
    records: list[dict],
    options: PreferenceAccuracyOptions,
    *,
    beta: float,
    max_length: int,
    truncation_mode: str,
    out_dir: Path,
    device: str,
    progress: bool,
) -> dict:
    """Score the held-out pairs with the trained policy against the reference's table; writes the per-pair
    outcomes (``pairs.parquet``) and the row fields (``summary.json``) into ``out_dir`` and returns the
    fields. A complete earlier evaluation is read back."""
    summary_path = out_dir / "summary.json"
    if summary_path.exists():
        return json.loads(summary_path.read_text())
    from admap.models import load_causal_lm

    lm, tokenizer = load_causal_lm(str(policy_dir), device=device, dtype="float32")
    policy = sequence_table(
        lm, tokenizer, records, options, max_length=max_length, truncation_mode=truncation_mode, progress=progress
    )
    outcomes = pair_outcomes(policy, reference, beta=beta)
    row = summarize(outcomes, resamples=options.bootstrap, seed=options.bootstrap_seed)
    row["held_out_pairs_dropped"] = len(records) - len(outcomes)
    out_dir.mkdir(parents=True, exist_ok=True)
    publish(out_dir / "pairs.parquet", lambda staging: outcomes.to_parquet(staging, index=False))
    publish(summary_path, lambda staging: staging.write_text(json.dumps(row, indent=2)))
    logger.info("held-out preference accuracy: %s", {k: round(v, 4) for k, v in row.items() if isinstance(v, float)})
    return row
