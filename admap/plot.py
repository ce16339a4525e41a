"""Stage 7, plot: the data map figure (mean against variance, coloured by region).

Laid out as Dataset Cartography's figures are: the map itself, with the distribution of
each axis beside it, per region.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from admap.datamap import HIGH_MEAN, HIGH_VARIANCE, LOW_MEAN, REGION_LABELS, REGIONS, RegionThresholds
from admap.inputs import DEMO_DATASET
from admap.run_folder import run_label

REGION_COLOURS = {HIGH_MEAN: "#2a9d8f", LOW_MEAN: "#e76f51", HIGH_VARIANCE: "#6a4c93"}


def dataset_label(summary: dict) -> str:
    """The dataset's name as a run's figure and viewer title it."""
    dataset = summary.get("config", {}).get("input", {}).get("dataset") or summary.get("dataset", {}).get("source", "")
    return "admap demo set" if dataset == DEMO_DATASET else Path(str(dataset)).name


def map_titles(summary: dict) -> tuple[str, str]:
    """A run's figure title and subtitle, from its summary: the dataset, the score, the proxies, the count."""
    proxies = ", ".join(sorted(source for source in summary.get("proxies", {}) if source != "missing")) or "none"
    mapped = sum(summary["regions"].get(region, 0) for region in REGIONS)
    title = f"Alignment Data Map — {dataset_label(summary)}"
    return title, f"score: {run_label(summary)}; proxy: {proxies}; {mapped} instructions"


def map_figure(map_table: pd.DataFrame, thresholds: RegionThresholds, *, title: str, subtitle: str = ""):
    """The map as a matplotlib ``Figure``: variance on x, mean on y, boundaries drawn, marginal histograms
    per region. Made without pyplot, so that no backend is switched and no figure is left open: a notebook
    shows it inline, `plot_map` saves it."""
    from matplotlib.figure import Figure

    mapped = map_table[map_table["is_mapped"]]
    figure = Figure(figsize=(8, 7), dpi=150)
    grid = figure.add_gridspec(2, 2, width_ratios=(4, 1), height_ratios=(1, 4), wspace=0.05, hspace=0.05)
    axes = figure.add_subplot(grid[1, 0])
    top = figure.add_subplot(grid[0, 0], sharex=axes)
    side = figure.add_subplot(grid[1, 1], sharey=axes)
    # Thousands of points overlap; smaller, lighter markers keep density readable.
    size = float(np.clip(3000 / max(len(mapped), 1), 1, 40))
    alpha = float(np.clip(300 / max(len(mapped), 1), 0.15, 0.85))
    variance_bins = np.histogram_bin_edges(mapped["score_variance"].dropna(), bins=40) if len(mapped) else 10
    mean_bins = np.histogram_bin_edges(mapped["mean_score"].dropna(), bins=40) if len(mapped) else 10
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
        top.hist(points["score_variance"], bins=variance_bins, color=colour, alpha=0.6)
        side.hist(points["mean_score"], bins=mean_bins, color=colour, alpha=0.6, orientation="horizontal")
    if np.isfinite(thresholds.variance):
        for target in (axes, top):
            target.axvline(thresholds.variance, color="0.35", linestyle="--", linewidth=1)
    if np.isfinite(thresholds.mean) and np.isfinite(thresholds.variance):
        left = axes.get_xlim()[0]
        axes.plot([left, thresholds.variance], [thresholds.mean] * 2, color="0.35", linestyle="--", linewidth=1)
        axes.set_xlim(left=left)
        side.axhline(thresholds.mean, color="0.35", linestyle="--", linewidth=1)
    axes.set_xlabel("variance of alignment scores")
    axes.set_ylabel("mean alignment score")
    top.set_ylabel("instructions", fontsize=8)
    side.set_xlabel("instructions", fontsize=8)
    top.tick_params(labelbottom=False, labelsize=7)
    side.tick_params(labelleft=False, labelsize=7)
    top.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
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
    return figure


def plot_map(
    map_table: pd.DataFrame, thresholds: RegionThresholds, path: str | Path, *, title: str, subtitle: str = ""
) -> Path:
    """Write `map_figure` as a PNG."""
    path = Path(path)
    map_figure(map_table, thresholds, title=title, subtitle=subtitle).savefig(path, bbox_inches="tight")
    return path


def markdown_table(table: pd.DataFrame) -> str:
    """A Markdown table; floats with 3 decimals."""

    def cell(value) -> str:
        if isinstance(value, float):
            return "—" if value != value else f"{value:.3f}"
        return str(value)

    rows = [" | ".join(map(str, table.columns)), " | ".join("---" for _ in table.columns)]
    rows += [" | ".join(cell(v) for v in record) for record in table.itertuples(index=False)]
    return "\n".join(f"| {row} |" for row in rows)
