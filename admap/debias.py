"""Length bias: how much of a score response length explains, and the score with it removed.

Similarity and judge scores favour longer (or shorter) responses; the paper names this as its main
limitation. The fix measured here is the simplest one that is easy to audit: a least-squares line of
score on log length across the dataset, and the score minus that line's slope times the centred log
length (the residual plus the mean, so the score keeps its scale).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class LengthFit:
    slope: float
    intercept: float
    r_squared: float
    spearman_before: float
    spearman_after: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def length_residuals(scores: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, LengthFit]:
    """``(adjusted_scores, fit)``; ``lengths`` in characters (or any positive count), NaN scores stay NaN."""
    scores = np.asarray(scores, dtype=np.float64)
    log_length = np.log1p(np.asarray(lengths, dtype=np.float64))
    valid = np.isfinite(scores)
    if valid.sum() < 3 or np.ptp(log_length[valid]) == 0:
        raise ValueError("length debiasing needs at least 3 scored responses of different lengths")
    x, y = log_length[valid], scores[valid]
    slope, intercept = np.polyfit(x, y, 1)
    fitted = intercept + slope * x
    total = np.sum((y - y.mean()) ** 2)
    r_squared = 1 - np.sum((y - fitted) ** 2) / total if total > 0 else 0.0
    adjusted = scores - slope * (log_length - x.mean())

    def spearman(values: np.ndarray) -> float:
        return float(pd.Series(values[valid]).corr(pd.Series(x), method="spearman"))

    fit = LengthFit(
        float(slope), float(intercept), float(r_squared), spearman(scores), spearman(adjusted), int(valid.sum())
    )
    return adjusted.astype(np.float32), fit
