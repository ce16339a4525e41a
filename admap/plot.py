"""Stage 7, plot: the data map figure (mean against variance, coloured by region)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from admap.datamap import HIGH_MEAN, HIGH_VARIANCE, LOW_MEAN, REGION_LABELS, RegionThresholds

REGION_COLOURS = {HIGH_MEAN: "#2a9d8f", LOW_MEAN: "#e76f51", HIGH_VARIANCE: "#6a4c93"}


def plot_map(
    map_table: pd.DataFrame, thresholds: RegionThresholds, path: str | Path, *, title: str, subtitle: str = ""
) -> Path:
    """Write the map as a PNG: variance on x, mean on y, the region boundaries drawn and labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mapped = map_table[map_table["is_mapped"]]
    figure, axes = plt.subplots(figsize=(7.5, 6), dpi=150)
    # Thousands of points overlap; smaller, lighter markers keep density readable.
    size = float(np.clip(3000 / max(len(mapped), 1), 2, 40))
    alpha = float(np.clip(300 / max(len(mapped), 1), 0.15, 0.85))
    for region, colour in REGION_COLOURS.items():
        points = mapped[mapped["region"] == region]
        axes.scatter(
            points["score_variance"],
            points["mean_score"],
            s=size,
            alpha=alpha,
            color=colour,
            linewidths=0,
            label=f"{region} — {REGION_LABELS[region]} (n={len(points)})",
        )
    if np.isfinite(thresholds.variance):
        axes.axvline(thresholds.variance, color="0.35", linestyle="--", linewidth=1)
    if np.isfinite(thresholds.mean) and np.isfinite(thresholds.variance):
        axes.plot(
            [axes.get_xlim()[0], thresholds.variance], [thresholds.mean] * 2, color="0.35", linestyle="--", linewidth=1
        )
    axes.set_xlabel("variance of alignment scores")
    axes.set_ylabel("mean alignment score")
    axes.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    axes.legend(loc="lower right", fontsize=8, markerscale=max(1.0, 20 / size) ** 0.5, framealpha=0.9)
    unmapped = int((~map_table["is_mapped"]).sum())
    if unmapped:
        axes.annotate(
            f"{unmapped} unmapped (fewer than 2 scored responses)",
            xy=(0.01, 0.01),
            xycoords="axes fraction",
            fontsize=7,
            color="0.4",
        )
    axes.grid(alpha=0.2)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path
