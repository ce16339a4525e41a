"""Training dynamics: Dataset Cartography's map (Swayamdipta et al. 2020) for DPO preference pairs.

The DPO trainer records every training pair's implicit reward margin
β·(Δlog π(chosen) − Δlog π(rejected)) at each recording point (``pair_margins.parquet``: every epoch
end, and every N optimizer steps with ``train.pair_margins_every``). σ(margin) is the policy's
probability of preferring the chosen response, the Bradley–Terry probability DPO's loss raises: it
plays the part of Cartography's probability of the gold label. Per pair, over the recording points:

- ``confidence``: the mean of σ(margin);
- ``variability``: the population standard deviation of σ(margin);
- ``correctness``: the share of points at which the margin is positive (the chosen response preferred).

Regions, as the paper reads its map: ``ambiguous`` (high variability), ``easy`` (easy to learn: high
confidence, low variability), ``hard`` (hard to learn: low confidence, low variability). The rule is
the data map's own (admap.datamap.assign_regions, method ``paper``) on these axes: the top third by
variability (``n - 2n//3`` pairs) is ambiguous; the rest is halved at the median confidence, the lower
``len//2`` hard. Ties are broken by the pair's ids, so that no split depends on row order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

EASY, AMBIGUOUS, HARD = "easy", "ambiguous", "hard"
DYNAMICS_REGIONS = (EASY, AMBIGUOUS, HARD)
DYNAMICS_REGION_LABELS = {EASY: "easy to learn", AMBIGUOUS: "ambiguous", HARD: "hard to learn"}
# An instruction whose pairs split evenly between regions is not clearly learned: a tie goes to the
# region listed first here.
MAJORITY_PRECEDENCE = (AMBIGUOUS, HARD, EASY)
PAIR = ["instruction_id", "chosen_id", "rejected_id"]
DYNAMICS_COLUMNS = [*PAIR, "epoch", "margin"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    # The tanh form neither overflows nor warns for large margins of either sign.
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))


def point_columns(margins: pd.DataFrame) -> list[str]:
    """The columns that name a recording point: the epoch, and the optimizer step where the table has it
    (the rounded epoch alone could merge two points of a long epoch)."""
    return ["epoch", "step"] if "step" in margins.columns else ["epoch"]


def recording_points(margins: pd.DataFrame) -> int:
    """How many distinct recording points ``margins`` holds."""
    return len(margins[point_columns(margins)].drop_duplicates())


def pair_dynamics(margins: pd.DataFrame) -> pd.DataFrame:
    """One row per pair of ``margins`` (``pair_margins.parquet``), sorted by its ids: the ids, ``n_points``,
    ``confidence``, ``variability``, ``correctness`` and ``region``. Several rows of one pair at one point
    are averaged first. Refuses a table with fewer than 2 recording points, which has no variability."""
    missing = [column for column in DYNAMICS_COLUMNS if column not in margins.columns]
    if missing:
        raise ValueError(f"dynamics lacks columns {missing} (needs {DYNAMICS_COLUMNS})")
    points = recording_points(margins)
    if points < 2:
        raise ValueError(
            f"dynamics needs at least 2 distinct epochs or steps (recording points) to measure variability, got "
            f"{points}: train for several epochs, or record within one with train.pair_margins_every"
        )
    margin = margins["margin"].to_numpy(dtype=float)
    per_point = (
        margins[[*PAIR, *point_columns(margins)]]
        .assign(confidence=sigmoid(margin), correct=(margin > 0).astype(float))
        .groupby([*PAIR, *point_columns(margins)], sort=False, dropna=False)[["confidence", "correct"]]
        .mean()
    )
    by_pair = per_point.groupby(level=PAIR, sort=True)
    table = pd.DataFrame(
        {
            "n_points": by_pair.size(),
            "confidence": by_pair["confidence"].mean(),
            "variability": by_pair["confidence"].std(ddof=0),
            "correctness": by_pair["correct"].mean(),
        }
    ).reset_index()
    table["region"] = assign_dynamics_regions(table)
    return table


def pair_variability(margins: pd.DataFrame) -> pd.Series:
    """Per pair (indexed by ``PAIR``), the population std of σ(margin) over the recording points."""
    return pair_dynamics(margins).set_index(PAIR)["variability"]


def assign_dynamics_regions(pairs: pd.DataFrame) -> pd.Series:
    """The region of every pair of ``pairs`` (``confidence``, ``variability`` and the ``PAIR`` ids), aligned
    with its index, by the module's rule: the top third by variability ambiguous, the rest halved by
    confidence (lower half hard, upper easy), ties broken by ids as `assign_regions` breaks them."""
    ids = [pairs[column].astype(str).to_numpy(dtype=object) for column in PAIR]
    variability = pairs["variability"].to_numpy(dtype=float)
    confidence = pairs["confidence"].to_numpy(dtype=float)
    # np.lexsort sorts by its last key first: the value, then instruction, chosen and rejected ids.
    by_variability = np.lexsort((*ids[::-1], variability))
    n_low_variability = 2 * len(pairs) // 3
    low_variability = by_variability[:n_low_variability]
    by_confidence = low_variability[
        np.lexsort((*(column[low_variability] for column in ids[::-1]), confidence[low_variability]))
    ]
    labels = np.empty(len(pairs), dtype=object)
    labels[by_variability[n_low_variability:]] = AMBIGUOUS
    labels[by_confidence[: len(by_confidence) // 2]] = HARD
    labels[by_confidence[len(by_confidence) // 2 :]] = EASY
    return pd.Series(labels, index=pairs.index, dtype=object)


@dataclass(frozen=True)
class DynamicsThresholds:
    """The boundaries the region rule drew: pairs with more ``variability`` than this one's are ambiguous
    (it is the smallest variability among them); of the rest, those with at least ``confidence`` easy (the
    smallest confidence among the easy ones). Infinite where a region is empty."""

    variability: float
    confidence: float


def dynamics_thresholds(pairs: pd.DataFrame) -> DynamicsThresholds:
    """The boundaries of the regions in ``pairs`` (`pair_dynamics`)."""
    ambiguous = pairs.loc[pairs["region"] == AMBIGUOUS, "variability"]
    easy = pairs.loc[pairs["region"] == EASY, "confidence"]
    return DynamicsThresholds(
        variability=float(ambiguous.min()) if len(ambiguous) else float("inf"),
        confidence=float(easy.min()) if len(easy) else float("inf"),
    )


def instruction_dynamics(pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per instruction of ``pairs`` (`pair_dynamics`), sorted by id: ``n_pairs``, the means of its
    pairs' ``confidence``, ``variability`` and ``correctness``, and ``region``, the region most of its pairs
    are in (a tie goes to ambiguous, then hard: `MAJORITY_PRECEDENCE`)."""
    by_instruction = pairs.groupby("instruction_id", sort=True)
    table = by_instruction.agg(
        n_pairs=("confidence", "size"),
        confidence=("confidence", "mean"),
        variability=("variability", "mean"),
        correctness=("correctness", "mean"),
    )
    counts = pd.crosstab(pairs["instruction_id"], pairs["region"]).reindex(
        index=table.index, columns=list(MAJORITY_PRECEDENCE), fill_value=0
    )
    table["region"] = counts.idxmax(axis=1)  # the first of equal counts, in MAJORITY_PRECEDENCE's order
    return table.reset_index()


def dynamics_summary(pairs: pd.DataFrame) -> dict:
    """A few aggregates of `pair_dynamics`' table, for a results row: pairs, recording points, mean
    confidence, variability and correctness, and each region's share of the pairs."""
    shares = pairs["region"].value_counts(normalize=True)
    return {
        "dynamics_pairs": int(len(pairs)),
        "dynamics_points": int(pairs["n_points"].max()) if len(pairs) else 0,
        "dynamics_confidence": float(pairs["confidence"].mean()),
        "dynamics_variability": float(pairs["variability"].mean()),
        "dynamics_correctness": float(pairs["correctness"].mean()),
    } | {f"dynamics_{region}_share": float(shares.get(region, 0.0)) for region in DYNAMICS_REGIONS}
