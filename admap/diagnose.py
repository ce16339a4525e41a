"""Stage 6, diagnose: where the dataset's own labels and the alignment scores disagree.

Per instruction, the agreement between its responses' annotated ratings and their alignment
scores: cosine as in the paper's code, plus Pearson and Kendall. Per annotated pair, whether the
scores order the pair the other way, and a suspicion score: the score margin against the label,
scaled by the instruction's spread shrunk towards the dataset's (with two responses an
instruction's own spread is the margin itself, which would make every pair look alike).

Independent of the scores, a pair's label can also be read against the labels of the pairs most like
it (`neighbour_label_suspicion`: cleanlab's kNN view of label noise, on preference pairs).

Tables follow cleanlab's layout: ``suspicion_score`` (higher = more likely mis-annotated) and
``is_suspect`` / ``is_low_impact`` flags.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Variance below this is "no spread" (scores are float32 cosines or ratings).
FLAT_VARIANCE = 1e-8
# Pairs whose neighbours' directions are gathered at a time in `neighbour_label_suspicion`.
NEIGHBOUR_CHUNK = 8192


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


def neighbour_label_suspicion(
    features: np.ndarray, pairs: np.ndarray, *, k: int = 10, index_options=None
) -> np.ndarray:
    """Per pair, how far its label goes against the labels of the ``k`` pairs most like it: minus the
    agreement of its preference direction with theirs, within [-1, 1] (1: every neighbour prefers the
    other way).

    ``features``: ``(n, d)`` response embeddings; ``pairs``: ``(P, 2)`` row positions of each pair's
    (chosen, rejected). A pair's direction is the unit vector from its rejected to its chosen response;
    its content, by which neighbours are found, is the unit sum of the two, the same whichever is chosen,
    so that a flipped label moves no pair's neighbourhood. The agreement is the neighbours' directions
    projected on the pair's, weighted by how alike their contents are (cosines below 0 weigh nothing).
    A pair whose two responses embed alike has no direction: 0."""
    from admap import knn

    features = np.asarray(features, dtype=np.float32)
    chosen, rejected = features[pairs[:, 0]], features[pairs[:, 1]]

    def unit(rows: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 1e-6)

    direction, content = unit(chosen - rejected), unit(chosen + rejected)
    if len(pairs) < 2:
        return np.zeros(len(pairs))
    options = index_options or knn.IndexOptions()
    similarity, neighbour = knn.self_neighbours(content, min(k, len(pairs) - 1), options)
    weight = np.where(neighbour >= 0, np.clip(similarity, 0, None), 0.0)
    projections = np.empty(neighbour.shape, dtype=np.float32)
    # In chunks: the neighbours' directions, gathered whole, would be P x k x d floats.
    for start in range(0, len(pairs), NEIGHBOUR_CHUNK):
        rows = slice(start, start + NEIGHBOUR_CHUNK)
        gathered = direction[np.clip(neighbour[rows], 0, None)]
        projections[rows] = np.einsum("pd,pkd->pk", direction[rows], gathered)
    total = weight.sum(axis=1)
    agreement = np.divide((weight * projections).sum(axis=1), total, out=np.zeros(len(pairs)), where=total > 0)
    return -agreement


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
