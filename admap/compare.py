"""How far scorers agree: per response (rank correlations), per instruction (regions), and with length.

Inputs are tidy tables keyed by id with one column per scorer; outputs are tidy tables with one
row per pair of scorers (and region), so they can be joined, plotted or diffed across runs.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from admap.datamap import REGIONS


def score_agreement(scores: pd.DataFrame) -> pd.DataFrame:
    """Spearman and Kendall correlation of every pair of scorer columns, on the rows both scored."""
    rows = []
    for first, second in combinations(scores.columns, 2):
        both = scores[[first, second]].dropna()
        rows.append(
            {
                "scorer_a": first,
                "scorer_b": second,
                "responses": len(both),
                "spearman": both[first].corr(both[second], method="spearman") if len(both) > 2 else np.nan,
                "kendall": both[first].corr(both[second], method="kendall") if len(both) > 2 else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=["scorer_a", "scorer_b", "responses", "spearman", "kendall"])


def length_correlation(scores: pd.DataFrame, lengths: pd.Series) -> pd.DataFrame:
    """Each scorer's Spearman and Kendall correlation with response length."""
    rows = []
    for scorer in scores.columns:
        both = pd.DataFrame({"score": scores[scorer], "length": lengths}).dropna()
        rows.append(
            {
                "scorer": scorer,
                "responses": len(both),
                "spearman_with_length": both["score"].corr(both["length"], method="spearman"),
                "kendall_with_length": both["score"].corr(both["length"], method="kendall"),
            }
        )
    return pd.DataFrame(rows)


def region_agreement(regions: pd.DataFrame) -> pd.DataFrame:
    """Jaccard overlap of each region between every pair of scorers (instructions mapped by both)."""
    rows = []
    for first, second in combinations(regions.columns, 2):
        both = regions[[first, second]].dropna()
        both = both[both[first].isin(REGIONS) & both[second].isin(REGIONS)]
        for region in REGIONS:
            in_first, in_second = both[first] == region, both[second] == region
            union = int((in_first | in_second).sum())
            rows.append(
                {
                    "scorer_a": first,
                    "scorer_b": second,
                    "region": region,
                    "in_a": int(in_first.sum()),
                    "in_b": int(in_second.sum()),
                    "in_both": int((in_first & in_second).sum()),
                    "jaccard": (in_first & in_second).sum() / union if union else np.nan,
                }
            )
    return pd.DataFrame(rows)


def region_confusion(regions: pd.DataFrame, first: str, second: str) -> pd.DataFrame:
    """Instructions per (region by ``first``, region by ``second``)."""
    both = regions[[first, second]].dropna()
    return pd.crosstab(both[first].rename(first), both[second].rename(second))


def plot_comparison(agreement: pd.DataFrame, lengths: pd.DataFrame, path: str | Path, *, title: str) -> Path:
    """A Spearman matrix of the scorers beside each scorer's correlation with length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(lengths["scorer"])
    matrix = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    for row in agreement.itertuples():
        matrix.loc[row.scorer_a, row.scorer_b] = matrix.loc[row.scorer_b, row.scorer_a] = row.spearman
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=150, width_ratios=(1.2, 1))
    image = left.imshow(matrix.to_numpy(dtype=float), vmin=-1, vmax=1, cmap="RdBu_r")
    left.set_xticks(range(len(names)), names, rotation=30, ha="right")
    left.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            value = matrix.iat[i, j]
            colour = "white" if abs(value) > 0.6 else "black"
            label = "—" if np.isnan(value) else f"{value:.2f}"
            left.text(j, i, label, ha="center", va="center", fontsize=8, color=colour)
    left.set_title("Spearman between scorers (per response)", fontsize=9)
    figure.colorbar(image, ax=left, shrink=0.8)
    right.barh(names, lengths["spearman_with_length"], color="#6a4c93")
    right.axvline(0, color="0.3", linewidth=0.8)
    right.set_xlim(-1, 1)
    right.set_title("Spearman with response length", fontsize=9)
    right.invert_yaxis()
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path
