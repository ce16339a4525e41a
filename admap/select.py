"""Stage 5, select: instruction subsets (regions, same-size random, full) and their DPO pairs.

Pair rules:
- ``annotated`` (the paper's): the dataset's own pairs where it has them (pair datasets);
  otherwise every pair of an instruction's responses with different ratings, the higher
  rating chosen, ties skipped (up to 6 pairs from 4 responses).
- ``best_vs_random``: the highest-rated response against one random lower-rated response
  (the ultrafeedback_binarized convention).
- ``alignment_score``: every pair ordered by alignment score, ties skipped; for data without labels.
"""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pandas as pd

PAIR_RULES = ("annotated", "best_vs_random", "alignment_score")
PAIR_COLUMNS = ["instruction_id", "chosen_id", "rejected_id"]


def random_instruction_ids(instruction_ids: np.ndarray, size: int, *, seed: int = 42) -> np.ndarray:
    """``size`` instruction ids drawn without replacement, reproducible from ``seed``."""
    if not 0 <= size <= len(instruction_ids):
        raise ValueError(f"size must be within [0, {len(instruction_ids)}], got {size}")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(instruction_ids), size=size, replace=False)
    return np.asarray(instruction_ids)[np.sort(chosen)]


def _ordered_pairs(responses: pd.DataFrame, value_column: str) -> pd.DataFrame:
    rows = []
    rated = responses.dropna(subset=[value_column])
    for instruction_id, group in rated.groupby("instruction_id", sort=False):
        ids, values = group["response_id"].to_numpy(), group[value_column].to_numpy()
        for a, b in combinations(range(len(ids)), 2):
            if values[a] == values[b]:
                continue
            winner, loser = (a, b) if values[a] > values[b] else (b, a)
            rows.append((instruction_id, ids[winner], ids[loser]))
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def _best_vs_random(responses: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for instruction_id, group in responses.dropna(subset=["rating"]).groupby("instruction_id", sort=False):
        ratings = group["rating"].to_numpy()
        ids = group["response_id"].to_numpy()
        best = int(np.argmax(ratings))  # first of the best on ties, in load order
        lower = np.flatnonzero(ratings < ratings[best])
        if len(lower):
            rows.append((instruction_id, ids[best], ids[rng.choice(lower)]))
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def preference_pairs(
    responses: pd.DataFrame,
    *,
    rule: str = "annotated",
    annotated: pd.DataFrame | None = None,
    seed: int = 42,
) -> pd.DataFrame:
    """Chosen/rejected response ids (``instruction_id``, ``chosen_id``, ``rejected_id``).

    ``responses`` needs ``instruction_id``, ``response_id``, ``rating`` and, for the
    ``alignment_score`` rule, ``alignment_score``. ``annotated`` is the dataset's own pairs.
    """
    if rule not in PAIR_RULES:
        raise ValueError(f"rule must be one of {PAIR_RULES}, got {rule!r}")
    if rule == "annotated":
        if annotated is not None and not annotated.empty:
            return annotated[PAIR_COLUMNS].reset_index(drop=True)
        if not responses["rating"].notna().any():
            raise ValueError(
                "rule 'annotated' needs ratings or annotated pairs; this data has neither (use rule 'alignment_score')"
            )
        return _ordered_pairs(responses, "rating")
    if rule == "best_vs_random":
        if not responses["rating"].notna().any():
            raise ValueError("rule 'best_vs_random' needs ratings; this data has none")
        return _best_vs_random(responses, seed)
    return _ordered_pairs(responses, "alignment_score")


def trl_records(pairs: pd.DataFrame, instructions: pd.DataFrame, responses: pd.DataFrame) -> list[dict]:
    """TRL's conversational preference format: ``prompt`` / ``chosen`` / ``rejected`` message
    lists, plus ``instruction_id`` and the two response ids for tracing back."""
    prompt_of = instructions.set_index("instruction_id")["prompt_messages"]
    text_of = responses.set_index("response_id")["response"]
    records = []
    for instruction_id, chosen_id, rejected_id in pairs[PAIR_COLUMNS].itertuples(index=False):
        records.append(
            {
                "prompt": json.loads(prompt_of[instruction_id]),
                "chosen": [{"role": "assistant", "content": text_of[chosen_id]}],
                "rejected": [{"role": "assistant", "content": text_of[rejected_id]}],
                "instruction_id": instruction_id,
                "chosen_id": chosen_id,
                "rejected_id": rejected_id,
            }
        )
    return records
