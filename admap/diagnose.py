"""Stage 6, diagnose: where the dataset's own labels and the alignment scores disagree.

Per instruction, the agreement between its responses' annotated ratings and their alignment
scores: cosine as in the paper's code, plus Pearson and Kendall. Per annotated pair, whether the
scores order the pair the other way, and a suspicion score: the score margin against the label,
scaled by the instruction's spread shrunk towards the dataset's (with two responses an
instruction's own spread is the margin itself, which would make every pair look alike).

Tables follow cleanlab's layout: ``suspicion_score`` (higher = more likely mis-annotated) and
``is_suspect`` / ``is_low_impact`` flags.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Variance below this is "no spread" (scores are float32 cosines or ratings).
FLAT_VARIANCE = 1e-8


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm > 0 else np.nan


def instruction_agreement(responses: pd.DataFrame, *, label: str = "label") -> pd.DataFrame:
    """One row per instruction: ``n_compared`` (responses with a score and a label), ``cosine``,
    ``pearson``, ``kendall`` between the labels and ``alignment_score``, ``is_diagnosable``
    (at least 2 compared) and ``is_low_impact`` (all labels tied, or all scores equal)."""
    rows = []
    compared = responses.dropna(subset=["alignment_score", label])
    for instruction_id, group in compared.groupby("instruction_id", sort=False):
        scores = group["alignment_score"].to_numpy(dtype=np.float64)
        labels = group[label].to_numpy(dtype=np.float64)
        diagnosable = len(group) >= 2
        tied = diagnosable and (np.ptp(labels) == 0 or np.var(scores) < FLAT_VARIANCE)
        rows.append(
            {
                "instruction_id": instruction_id,
                "n_compared": len(group),
                "cosine": _cosine(scores, labels),
                "pearson": pd.Series(scores).corr(pd.Series(labels)) if diagnosable and not tied else np.nan,
                "kendall": pd.Series(scores).corr(pd.Series(labels), method="kendall")
                if diagnosable and not tied
                else np.nan,
                "is_diagnosable": diagnosable,
                "is_low_impact": bool(tied),
            }
        )
    table = pd.DataFrame(
        rows,
        columns=["instruction_id", "n_compared", "cosine", "pearson", "kendall", "is_diagnosable", "is_low_impact"],
    )
    missing = sorted(set(responses["instruction_id"]) - set(table["instruction_id"]))
    if missing:
        empty = pd.DataFrame(
            {"instruction_id": missing, "n_compared": 0, "is_diagnosable": False, "is_low_impact": False}
        )
        table = pd.concat([table, empty], ignore_index=True)
    return table


def pair_suspicion(pairs: pd.DataFrame, responses: pd.DataFrame) -> pd.DataFrame:
    """Per annotated pair (``instruction_id``, ``chosen_id``, ``rejected_id``): the two scores, the
    ``margin`` (chosen minus rejected), ``is_suspect`` (the scores order the pair the other way) and
    ``suspicion_score`` = ``-margin / sqrt(instruction variance + mean instruction variance)``."""
    score = responses.set_index("response_id")["alignment_score"].astype(np.float64)
    variance = responses.groupby("instruction_id")["alignment_score"].var(ddof=0)
    table = pairs[["instruction_id", "chosen_id", "rejected_id"]].copy()
    table["chosen_score"] = table["chosen_id"].map(score).to_numpy()
    table["rejected_score"] = table["rejected_id"].map(score).to_numpy()
    table["margin"] = table["chosen_score"] - table["rejected_score"]
    spread = np.sqrt(table["instruction_id"].map(variance).fillna(0).to_numpy() + float(np.nanmean(variance)))
    with np.errstate(invalid="ignore", divide="ignore"):
        table["suspicion_score"] = np.where(spread > 0, -table["margin"].to_numpy() / spread, -np.sign(table["margin"]))
    table["is_suspect"] = table["margin"] < 0
    return table


def rank_suspects(suspicion: pd.DataFrame) -> pd.DataFrame:
    """Pairs ordered most suspect first (ties by instruction and response ids), with a 1-based ``rank``."""
    ranked = suspicion.sort_values(
        ["suspicion_score", "instruction_id", "chosen_id", "rejected_id"],
        ascending=[False, True, True, True],
        na_position="last",
        kind="mergesort",
    ).reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    return ranked
