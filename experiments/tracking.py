"""Weights & Biases at the edge of a run: config, metrics, the map figure, the results table and each
pair's margins. Offline by default (a local run directory, no login; ``wandb sync`` uploads it)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from admap_experiments.config import WandbOptions

logger = logging.getLogger(__name__)

# Config values under these names never reach W&B, whatever they hold.
SECRET_NAME = re.compile(r"(api_?key|token|secret|password)(?!_env)", re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def redacted(values):
    """``values`` (nested dicts/lists from a config) with secret-named fields and credentials in
    URLs replaced by ``***``. A field naming the environment variable that holds a key stays."""
    if isinstance(values, dict):
        return {k: "***" if SECRET_NAME.search(str(k)) else redacted(v) for k, v in values.items()}
    if isinstance(values, list):
        return [redacted(v) for v in values]
    if isinstance(values, str):
        return URL_CREDENTIALS.sub("***@", values)
    return values


def start_run(options: WandbOptions, *, run_dir: Path, name: str, group: str, config: dict):
    """A W&B run for one experiment run, or None when W&B is disabled. TRL's W&B callback finds it
    and streams the training metrics into it."""
    if options.mode == "disabled":
        return None
    try:
        import wandb
    except ImportError as error:
        raise ImportError(
            "W&B logging needs wandb: pip install 'admap[train]' (or set wandb.mode: disabled)"
        ) from error
    run_dir.mkdir(parents=True, exist_ok=True)
    return wandb.init(
        project=options.project,
        entity=options.entity,
        name=name,
        group=group,
        job_type="dpo",
        config=redacted(config),
        dir=str(run_dir),
        mode=options.mode,
        reinit="finish_previous",
    )


def log_outcome(
    run,
    *,
    result: dict,
    map_figure: Path | None,
    results: pd.DataFrame,
    margins: pd.DataFrame,
    dynamics_figure: Path | None = None,
) -> None:
    """Final metrics into the run summary; the map, the training-dynamics map, the experiment's results so
    far and the pair margins as media and tables."""
    if run is None:
        return
    import wandb

    numbers = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    run.summary.update(numbers)
    payload = {"results": wandb.Table(dataframe=results.astype(str))}
    if map_figure is not None and map_figure.exists():
        payload["data_map"] = wandb.Image(str(map_figure))
    if dynamics_figure is not None and dynamics_figure.exists():
        payload["training_dynamics"] = wandb.Image(str(dynamics_figure))
    if not margins.empty:
        payload["pair_margins"] = wandb.Table(dataframe=margins)
    run.log(payload)


def finish(run) -> None:
    if run is not None:
        run.finish()
