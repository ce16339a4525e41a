"""Stage 4, map: per-instruction mean and variance of alignment scores, and the map's regions.

Region names follow the paper's figure: ``high_mean`` (aligned: high mean, low variance),
``low_mean`` (misaligned) and ``high_variance`` (partially aligned). Instructions with fewer
than ``min_responses`` scored responses stay in the table as ``unmapped``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

HIGH_MEAN, LOW_MEAN, HIGH_VARIANCE, UNMAPPED = "high_mean", "low_mean", "high_variance", "unmapped"
REGIONS = (HIGH_MEAN, LOW_MEAN, HIGH_VARIANCE)
REGION_LABELS = {HIGH_MEAN: "aligned", LOW_MEAN: "misaligned", HIGH_VARIANCE: "partially aligned", UNMAPPED: "unmapped"}
REGION_METHODS = ("paper", "quantile", "absolute")


def instruction_statistics(
    instruction_ids: np.ndarray,
    scores: np.ndarray,
    *,
    all_instruction_ids: np.ndarray | None = None,
    min_responses: int = 2,
) -> pd.DataFrame:
    """One row per instruction: ``n_responses``, ``n_scored``, ``mean_score``, ``score_variance``
    (population variance, as ``np.var``), ``score_std`` and ``is_mapped``.

    ``all_instruction_ids`` adds instructions that have no responses at all, so none is lost.
    """
    if min_responses < 1:
        raise ValueError(f"min_responses must be >= 1, got {min_responses}")
    frame = pd.DataFrame({"instruction_id": instruction_ids, "score": np.asarray(scores, dtype=np.float64)})
    grouped = frame.groupby("instruction_id", sort=False)["score"]
    stats = pd.DataFrame(
        {
            "n_responses": grouped.size(),
            "n_scored": grouped.count(),
            "mean_score": grouped.mean(),
            "score_variance": grouped.var(ddof=0),
        }
    )
    if all_instruction_ids is not None:
        stats = stats.reindex(pd.Index(all_instruction_ids, name="instruction_id"))
        stats[["n_responses", "n_scored"]] = stats[["n_responses", "n_scored"]].fillna(0)
    stats = stats.astype({"n_responses": "int64", "n_scored": "int64"})
    stats["score_std"] = np.sqrt(stats["score_variance"])
    stats["is_mapped"] = stats["n_scored"] >= min_responses
    stats.loc[~stats["is_mapped"], ["mean_score", "score_variance", "score_std"]] = np.nan
    return stats.reset_index()


@dataclass(frozen=True)
class RegionThresholds:
    """An instruction is ``high_variance`` when its variance exceeds ``variance``; otherwise
    ``high_mean`` when its mean is at least ``mean``, else ``low_mean``. For the ``paper`` method
    they are the boundaries its split produced (the smallest variance in ``high_variance``, the
    smallest mean in ``high_mean``); ties at a boundary are broken by instruction id."""

    method: str
    variance: float
    mean: float

    def to_dict(self) -> dict:
        return asdict(self)


def stable_order(values: np.ndarray, instruction_ids: np.ndarray) -> np.ndarray:
    # Ties in the statistic are broken by instruction id, so the split never depends on input order.
    return np.lexsort((instruction_ids, values))


def assign_regions(
    stats: pd.DataFrame,
    *,
    method: str = "paper",
    variance_quantile: float = 2 / 3,
    mean_quantile: float = 0.5,
    variance_threshold: float | None = None,
    mean_threshold: float | None = None,
) -> tuple[pd.Series, RegionThresholds]:
    """The region of every instruction in ``stats`` (from `instruction_statistics`).

    ``paper``: sort by variance; the top third (``n - 2n//3``) is ``high_variance``; sort the rest
    by mean and halve it (the lower ``len//2`` is ``low_mean``), as the authors' code splits.
    ``quantile``: thresholds at the given quantiles of variance, then of the remaining means.
    ``absolute``: the given ``variance_threshold`` and ``mean_threshold``.
    """
    if method not in REGION_METHODS:
        raise ValueError(f"method must be one of {REGION_METHODS}, got {method!r}")
    for name, value in (("variance_quantile", variance_quantile), ("mean_quantile", mean_quantile)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be within [0, 1], got {value}")
    regions = pd.Series(UNMAPPED, index=stats.index, dtype=object)
    mapped = stats[stats["is_mapped"]]
    ids = mapped["instruction_id"].astype(str).to_numpy()
    variance = mapped["score_variance"].to_numpy()
    mean = mapped["mean_score"].to_numpy()
    n = len(mapped)
    if n == 0:
        return regions, RegionThresholds(method, float("nan"), float("nan"))

    if method == "paper":
        by_variance = stable_order(variance, ids)
        n_low_variance = 2 * n // 3
        high_variance = by_variance[n_low_variance:]
        low_variance = by_variance[:n_low_variance]
        by_mean = low_variance[stable_order(mean[low_variance], ids[low_variance])]
        n_low_mean = len(by_mean) // 2
        labels = np.empty(n, dtype=object)
        labels[high_variance] = HIGH_VARIANCE
        labels[by_mean[:n_low_mean]] = LOW_MEAN
        labels[by_mean[n_low_mean:]] = HIGH_MEAN
        thresholds = RegionThresholds(
            method,
            variance=float(variance[high_variance].min()) if len(high_variance) else float("inf"),
            mean=float(mean[by_mean[n_low_mean:]].min()) if len(by_mean) > n_low_mean else float("inf"),
        )
    else:
        if method == "quantile":
            variance_cut = float(np.quantile(variance, variance_quantile))
            rest = variance <= variance_cut
            mean_cut = float(np.quantile(mean[rest], mean_quantile)) if rest.any() else float("inf")
        else:
            if variance_threshold is None or mean_threshold is None:
                raise ValueError("method 'absolute' needs variance_threshold and mean_threshold")
            variance_cut, mean_cut = float(variance_threshold), float(mean_threshold)
        labels = np.where(variance > variance_cut, HIGH_VARIANCE, np.where(mean >= mean_cut, HIGH_MEAN, LOW_MEAN))
        thresholds = RegionThresholds(method, variance=variance_cut, mean=mean_cut)
    regions.loc[mapped.index] = labels
    return regions, thresholds


def region_counts(regions: pd.Series) -> dict[str, int]:
    counts = regions.value_counts()
    return {name: int(counts.get(name, 0)) for name in (*REGIONS, UNMAPPED)}
