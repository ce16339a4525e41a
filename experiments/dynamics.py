"""A run's training-dynamics map (admap/dynamics.py) from the pair margins its DPO recorded.

``dynamics.parquet`` (one row per pair: ids, points, confidence, variability, correctness, region) and
``dynamics.png`` (the Cartography figure) go into the run directory beside ``pair_margins.parquet``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from admap.durable import publish
from admap.dynamics import dynamics_summary, pair_dynamics, recording_points
from admap.plot import plot_training_dynamics

logger = logging.getLogger(__name__)


def write_training_dynamics(margins: pd.DataFrame, run_dir: Path) -> dict:
    """Write ``dynamics.parquet`` and ``dynamics.png`` into ``run_dir`` when ``margins``
    (``pair_margins.parquet``) holds at least 2 recording points. Returns, for the results row, the
    number of points (``dynamics_points``), and when the map was drawn the two paths
    (``dynamics_table``, ``dynamics_figure``) and the aggregates of `dynamics_summary`: pairs, mean
    confidence, variability and correctness, and each region's share of the pairs."""
    points = recording_points(margins)
    if points < 2:
        logger.info(
            "no training-dynamics map: %d recording point(s) of the pair margins; it needs 2 (several epochs, "
            "or train.pair_margins_every)",
            points,
        )
        return {"dynamics_points": points}
    pairs = pair_dynamics(margins)
    table = publish(run_dir / "dynamics.parquet", lambda staging: pairs.to_parquet(staging, index=False))
    summary = dynamics_summary(pairs)
    subtitle = f"{summary['dynamics_pairs']} pairs, {points} recording points"
    figure = publish(
        run_dir / "dynamics.png",
        lambda staging: plot_training_dynamics(
            pairs, staging, title=f"Training dynamics — {run_dir.name}", subtitle=subtitle
        ),
    )
    return summary | {"dynamics_points": points, "dynamics_table": str(table), "dynamics_figure": str(figure)}
