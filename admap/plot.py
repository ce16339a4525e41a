"""Stage 7, plot: the data map figure (mean against variance, coloured by region), and the map of a
DPO run's training dynamics (confidence against variability, coloured by correctness).

Laid out as Dataset Cartography's figures are: the map itself, with the distribution of
each axis beside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from admap.datamap import HIGH_MEAN, HIGH_VARIANCE, LOW_MEAN, REGION_LABELS, REGIONS, RegionThresholds
from admap.dynamics import AMBIGUOUS, DYNAMICS_REGION_LABELS, EASY, HARD, dynamics_thresholds
from admap.inputs import DEMO_DATASET
from admap.run_folder import run_label

REGION_COLOURS = {HIGH_MEAN: "#2a9d8f", LOW_MEAN: "#e76f51", HIGH_VARIANCE: "#6a4c93"}
# The training-dynamics regions in the map's colours for their counterparts: learned, not learned, in between.
DYNAMICS_REGION_COLOURS = {EASY: "#2a9d8f", HARD: "#e76f51", AMBIGUOUS: "#6a4c93"}


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


def training_dynamics_figure(pairs: pd.DataFrame, *, title: str, subtitle: str = ""):
    """The training-dynamics map of a DPO run as a matplotlib ``Figure``, as Dataset Cartography draws it:
    one point per pair of ``pairs`` (`admap.dynamics.pair_dynamics`), variability on x, confidence on y,
    coloured by correctness, the regions' boundaries and names drawn; beside it the distribution of each
    of the three. Made without pyplot, as `map_figure` is."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 7), dpi=150)
    grid = figure.add_gridspec(3, 2, width_ratios=(3, 1), wspace=0.4, hspace=0.55)
    axes = figure.add_subplot(grid[:, 0])
    histograms = [figure.add_subplot(grid[row, 1]) for row in range(3)]
    # Thousands of pairs overlap; smaller, lighter markers keep density readable.
    size = float(np.clip(3000 / max(len(pairs), 1), 1, 40))
    alpha = float(np.clip(300 / max(len(pairs), 1), 0.2, 0.85))
    # Red for pairs the policy never ordered as annotated, blue for those it always did.
    colours = colormaps["RdYlBu"]
    points = axes.scatter(
        pairs["variability"],
        pairs["confidence"],
        c=pairs["correctness"],
        cmap=colours,
        vmin=0,
        vmax=1,
        s=size,
        alpha=alpha,
        linewidths=0,
    )
    colourbar = figure.colorbar(points, ax=axes, pad=0.02, fraction=0.05)
    colourbar.set_label("correctness: share of points with margin > 0", fontsize=8)
    colourbar.solids.set(alpha=1)
    thresholds = dynamics_thresholds(pairs)
    if np.isfinite(thresholds.variability):
        axes.axvline(thresholds.variability, color="0.35", linestyle="--", linewidth=1)
    if np.isfinite(thresholds.confidence):
        right = thresholds.variability if np.isfinite(thresholds.variability) else axes.get_xlim()[1]
        left = axes.get_xlim()[0]
        axes.plot([left, right], [thresholds.confidence] * 2, color="0.35", linestyle="--", linewidth=1)
        axes.set_xlim(left=left)
    counts = pairs["region"].value_counts()
    # Where the paper names its regions: easy top left, hard bottom left, ambiguous on the right.
    for region, (x, y, align) in {
        EASY: (0.02, 0.98, "left"),
        HARD: (0.02, 0.02, "left"),
        AMBIGUOUS: (0.98, 0.5, "right"),
    }.items():
        axes.annotate(
            f"{DYNAMICS_REGION_LABELS[region]} (n={int(counts.get(region, 0))})",
            xy=(x, y),
            xycoords="axes fraction",
            ha=align,
            va="top" if y > 0.9 else "bottom" if y < 0.1 else "center",
            fontsize=9,
            color=DYNAMICS_REGION_COLOURS[region],
            bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": DYNAMICS_REGION_COLOURS[region]},
        )
    axes.set_xlabel("variability: std of σ(margin) over recording points")
    axes.set_ylabel("confidence: mean σ(margin) over recording points")
    axes.grid(alpha=0.2)
    axes.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    for target, column in zip(histograms, ("confidence", "variability", "correctness")):
        target.hist(pairs[column], bins=20, color="#4e79a7", alpha=0.8)
        target.set_xlabel(column, fontsize=8)
        target.set_ylabel("pairs", fontsize=8)
        target.tick_params(labelsize=7)
    return figure


def plot_training_dynamics(pairs: pd.DataFrame, path: str | Path, *, title: str, subtitle: str = "") -> Path:
    """Write `training_dynamics_figure` as a PNG (whatever ``path`` ends with, so that a staging file works)."""
    path = Path(path)
    training_dynamics_figure(pairs, title=title, subtitle=subtitle).savefig(path, format="png", bbox_inches="tight")
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
