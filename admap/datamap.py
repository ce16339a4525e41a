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


def id_run_starts(ids) -> np.ndarray:
    """The positions where a run of equal consecutive ``ids`` starts (a NumPy or pandas array).

    Loaders keep an instruction's responses together, so hashing the first id of each run (a million
    for four million responses) does the work of hashing every row, at a fraction of the cost."""
    if len(ids) == 0:
        return np.zeros(0, dtype=np.intp)
    try:
        differs = ids[1:] != ids[:-1]
    except TypeError:  # pd.NA in an object array compares to nothing: let every row be its own run
        return np.arange(len(ids))
    if isinstance(differs, pd.api.extensions.ExtensionArray):
        differs = differs.to_numpy(dtype=bool, na_value=True)  # a missing id starts its own run
    return np.flatnonzero(np.concatenate(([True], np.asarray(differs, dtype=bool))))


def instruction_codes(instruction_ids) -> tuple[np.ndarray, np.ndarray | pd.api.extensions.ExtensionArray]:
    """``pd.factorize(instruction_ids)``: one code per row, counting up in first-appearance order
    (-1 for a missing id), and the unique ids; each run of equal consecutive ids is hashed once."""
    ids = instruction_ids.array if isinstance(instruction_ids, pd.Series) else np.asarray(instruction_ids)
    starts = id_run_starts(ids)
    run_codes, unique_ids = pd.factorize(ids[starts])
    return np.repeat(run_codes, np.diff(starts, append=len(ids))), unique_ids


def instruction_statistics(
    instruction_ids: np.ndarray | pd.Series,
    scores: np.ndarray,
    *,
    all_instruction_ids: np.ndarray | pd.Series | None = None,
    min_responses: int = 2,
) -> pd.DataFrame:
    """One row per instruction: ``n_responses``, ``n_scored``, ``mean_score``, ``score_variance``
    (population variance, as ``np.var``), ``score_std`` and ``is_mapped``.

    Rows are in first-appearance order of ``instruction_ids``, or in the order of
    ``all_instruction_ids``, which adds instructions that have no responses at all, so none is lost.
    """
    if min_responses < 1:
        raise ValueError(f"min_responses must be >= 1, got {min_responses}")
    codes, unique_ids = instruction_codes(instruction_ids)
    scores = np.asarray(scores, dtype=np.float64)
    has_id = codes >= 0
    # A groupby on the codes sees the groups a groupby on the ids sees, so pandas picks the same kernels
    # (it sums sorted groups with ufunc.reduceat, others with a Kahan sum) and gives the same mean and
    # variance bit for bit, without hashing the ids again. A row without an id belongs to no
    # instruction; as a NaN key it is dropped where it stands, as a missing id is.
    group_keys = codes if has_id.all() else np.where(has_id, codes, np.nan)
    by_instruction = pd.Series(scores).groupby(group_keys, sort=True)
    n_responses = np.bincount(codes[has_id], minlength=len(unique_ids))
    n_scored = np.bincount(codes[has_id & ~np.isnan(scores)], minlength=len(unique_ids))
    mean = by_instruction.mean().to_numpy()
    variance = by_instruction.var(ddof=0).to_numpy()
    ids = pd.Index(unique_ids, name="instruction_id")
    if all_instruction_ids is not None:
        table_ids = pd.Index(all_instruction_ids, name="instruction_id")
        # The instructions table usually lists the instructions in the order their responses first
        # name them, which needs no reordering; otherwise each one is looked up.
        if not table_ids.equals(ids):
            row = ids.get_indexer(table_ids)
            has_responses = row >= 0
            n_responses, n_scored = (np.where(has_responses, count[row], 0) for count in (n_responses, n_scored))
            mean, variance = (np.where(has_responses, value[row], np.nan) for value in (mean, variance))
        ids = table_ids
    is_mapped = n_scored >= min_responses
    variance = np.where(is_mapped, variance, np.nan)
    return pd.DataFrame(
        {
            "instruction_id": ids,
            "n_responses": n_responses.astype(np.int64),
            "n_scored": n_scored.astype(np.int64),
            "mean_score": np.where(is_mapped, mean, np.nan),
            "score_variance": variance,
            "score_std": np.sqrt(variance),
            "is_mapped": is_mapped,
        }
    )


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
    """The positions that sort ``values`` ascending, ties broken by instruction id and then by
    position: ``np.lexsort((instruction_ids, values))``, so a split never depends on input order.

    ``instruction_ids`` may be any array that an array of positions indexes (NumPy or pandas);
    only the ids of tied values are read.
    """
    # Sorting a million numbers is cheap and comparing a million strings is not: sort the values
    # (quicksort, four times faster than a stable sort), then order each run of equal values by id
    # and position, which is all that stability and the id tie-break decide.
    values = np.asarray(values)
    if isinstance(instruction_ids, pd.Series):
        instruction_ids = instruction_ids.array  # indexed by position below, never by label
    order = np.argsort(values)
    ordered = values[order]
    tied_with_next = ordered[1:] == ordered[:-1]
    if np.issubdtype(ordered.dtype, np.floating):
        # Sorting treats NaNs as equal to each other (they end up together, last), so they tie.
        tied_with_next |= np.isnan(ordered[1:]) & np.isnan(ordered[:-1])
    if not tied_with_next.any():
        return order
    tied_with_previous = np.concatenate(([False], tied_with_next))
    tied = np.flatnonzero(tied_with_previous | np.concatenate((tied_with_next, [False])))
    run = np.cumsum(~tied_with_previous[tied])
    tied_rows = order[tied]
    order[tied] = tied_rows[np.lexsort((tied_rows, np.asarray(instruction_ids[tied_rows]), run))]
    return order


def with_axes(stats: pd.DataFrame, axes: pd.DataFrame) -> pd.DataFrame:
    """``stats`` (`instruction_statistics`) with the mapped instructions' ``mean_score`` and ``score_variance``
    (and ``score_std``) taken from ``axes``: for a scorer that defines the map's axes itself."""
    lookup = axes.set_index("instruction_id")
    mapped = stats["is_mapped"].to_numpy(dtype=bool)
    out = stats.copy()
    for column in ("mean_score", "score_variance"):
        values = stats["instruction_id"].map(lookup[column]).to_numpy(dtype=np.float64)
        out[column] = np.where(mapped, values, np.nan)
    out["score_std"] = np.sqrt(out["score_variance"])
    return out


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
    is_mapped = stats["is_mapped"].to_numpy(dtype=bool)
    # Kept as a pandas array: stable_order reads only the ids of tied statistics.
    ids = stats["instruction_id"][is_mapped].astype(str).array
    variance = stats["score_variance"].to_numpy()[is_mapped]
    mean = stats["mean_score"].to_numpy()[is_mapped]
    n = len(ids)
    if n == 0:
        no_regions = pd.Series(UNMAPPED, index=stats.index, dtype=object)
        return no_regions, RegionThresholds(method, float("nan"), float("nan"))

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
    regions = np.empty(len(stats), dtype=object)
    regions.fill(UNMAPPED)  # one shared str; np.full would make a new one for every row
    regions[is_mapped] = labels
    return pd.Series(regions, index=stats.index, dtype=object), thresholds


def region_counts(regions: pd.Series) -> dict[str, int]:
    counts = regions.value_counts()
    return {name: int(counts.get(name, 0)) for name in (*REGIONS, UNMAPPED)}
