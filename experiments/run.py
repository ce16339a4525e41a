"""One experiment run: map → select → train DPO → answer → judge → one results row.

    python -m experiments.run experiments/configs/cpu-smoke.yaml --strategy random

Each stage writes its outputs into the run directory (``OUT/NAME/runs/<run id>``, unique per
configuration) and a rerun skips the stages whose outputs are there, so an interrupted run resumes.
Maps and the untrained policy's reference answers are shared by every run of an experiment that
agrees on their settings.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import yaml

from admap.config import add_arguments, from_arguments, to_dict
from admap.pipeline import package_versions, read_run, require_run, run_map, write_jsonl
from admap.select import preference_pairs, trl_records
from baselines import SelectionInputs, select_instructions
from experiments import tracking
from experiments.config import ExperimentConfig
from experiments.evaluation import evaluate_policy, reference_answers
from experiments.train import MARGIN_COLUMNS, policy_checkpoint, train_dpo

logger = logging.getLogger(__name__)


def git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def machine() -> str:
    """What the run ran on, for the results table."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"{os.cpu_count()}-core CPU ({platform.machine()})"


def is_main_process() -> bool:
    """Under ``accelerate launch`` or ``torchrun`` every process runs the train stage; only the first
    one logs to W&B and writes results."""
    return int(os.environ.get("RANK", "0")) == 0


def ensure_map(config: ExperimentConfig, *, progress: bool) -> Path:
    """The map run directory: ``map_run``, else ``map.out`` or this experiment's map for these
    settings, built once (a map that is already complete is reused)."""
    if config.map_run:
        return require_run(config.map_run)
    map_dir = config.experiment_dir / "maps" / f"{config.map.input.stem}-{config.map.scorer}-{config.map_fingerprint()}"
    if config.map.out:
        map_dir = Path(config.map.out)
    if not (map_dir / "summary.json").exists():
        run_map(replace(config.map, out=str(map_dir)), progress=progress)
    return map_dir


def selection_inputs(map_dir: Path, config: ExperimentConfig) -> SelectionInputs:
    responses, map_table, annotated = read_run(map_dir)
    summary = json.loads((map_dir / "summary.json").read_text())
    map_config = summary["config"]
    pairs = preference_pairs(
        responses, rule=map_config["pair_rule"], annotated=annotated, seed=map_config.get("seed", 42)
    )
    dynamics = pd.read_parquet(config.selection.dynamics) if config.selection.dynamics else None
    return SelectionInputs(map_table, responses, pairs, scorer=map_config["scorer"], dynamics=dynamics)


def select_stage(inputs: SelectionInputs, config: ExperimentConfig, run_dir: Path) -> dict:
    """Write the subset's TRL pairs and ``selection.json``; returns the selection record."""
    ids = select_instructions(
        config.selection.strategy, inputs, fraction=config.selection.fraction, seed=config.selection.seed
    )
    pairs = inputs.pairs[inputs.pairs["instruction_id"].isin(set(ids))].reset_index(drop=True)
    if pairs.empty:
        raise ValueError(f"strategy {config.selection.strategy!r} selected {len(ids)} instructions with no pairs")
    write_jsonl(trl_records(pairs, inputs.map_table, inputs.responses), run_dir / "pairs.jsonl")
    pairs.to_parquet(run_dir / "pairs.parquet", index=False)
    record = {
        "strategy": config.selection.strategy,
        "fraction": config.selection.fraction,
        "seed": config.selection.seed,
        "n_candidates": int(len(inputs.candidates)),
        "n_instructions": int(len(ids)),
        "n_pairs": int(len(pairs)),
        "instruction_ids": [str(i) for i in ids],
    }
    (run_dir / "selection.json").write_text(json.dumps(record, indent=2))
    return record


def train_stage(config: ExperimentConfig, run_dir: Path, wandb_run) -> tuple[Path, dict, pd.DataFrame]:
    pairs = pd.read_parquet(run_dir / "pairs.parquet")
    model_dir, metrics, margins = train_dpo(
        run_dir / "pairs.jsonl",
        pairs,
        config.train,
        out_dir=run_dir,
        run_name=run_dir.name,
        report_to=["wandb"] if wandb_run is not None else [],
    )
    margins.to_parquet(run_dir / "pair_margins.parquet", index=False)
    (run_dir / "train.json").write_text(json.dumps(metrics, indent=2))
    return model_dir, metrics, margins


def append_result(row: dict, path: Path) -> pd.DataFrame:
    """Add ``row`` to the CSV at ``path``, replacing an earlier row of the same run id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pd.read_csv(path) if path.exists() else pd.DataFrame()
    if not table.empty:
        table = table[table["run_id"] != row["run_id"]]
    table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
    staging = path.with_name(f".{path.name}.partial")
    table.to_csv(staging, index=False)
    os.replace(staging, path)
    return table


def run_experiment(config: ExperimentConfig, *, progress: bool = True, command: str | None = None) -> dict:
    """Run the configured stages and return the results row (also in ``result.json`` and appended
    to ``OUT/NAME/results.csv``)."""
    started = time.perf_counter()
    run_id = config.run_id()
    run_dir = config.experiment_dir / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = to_dict(config)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(tracking.redacted(resolved), sort_keys=False))
    logger.info("run %s in %s", run_id, run_dir)

    map_dir = ensure_map(config, progress=progress)
    main_process = is_main_process()
    wandb_run = None
    if main_process:
        wandb_run = tracking.start_run(
            config.wandb, run_dir=run_dir, name=run_id, group=config.name, config=resolved | {"command": command}
        )
    try:
        row = _run_stages(config, run_dir, map_dir, wandb_run, progress=progress)
        row |= {
            "experiment": config.name,
            "run_id": run_id,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(),
            "git_commit": git_commit(),
            "wall_s": round(time.perf_counter() - started, 1),
            "command": command,
        }
        if not main_process:
            return row
        (run_dir / "result.json").write_text(json.dumps(row | {"versions": package_versions()}, indent=2))
        results = append_result(row, config.experiment_dir / "results.csv")
        margins_path = run_dir / "pair_margins.parquet"
        tracking.log_outcome(
            wandb_run,
            result=row,
            map_figure=map_dir / "map.png",
            results=results,
            margins=pd.read_parquet(margins_path) if margins_path.exists() else pd.DataFrame(columns=MARGIN_COLUMNS),
        )
    finally:
        tracking.finish(wandb_run)
    return row


def _run_stages(config: ExperimentConfig, run_dir: Path, map_dir: Path, wandb_run, *, progress: bool) -> dict:
    map_summary = json.loads((map_dir / "summary.json").read_text())
    row: dict = {
        "dataset": map_summary["config"]["input"]["dataset"],
        "scorer": map_summary["config"]["scorer"],
        "length_debias": map_summary["config"].get("length_debias", False),
        "model": config.train.model,
    }
    selection_path = run_dir / "selection.json"
    if "select" in config.stages:
        selection = select_stage(selection_inputs(map_dir, config), config, run_dir)
    elif selection_path.exists():
        selection = json.loads(selection_path.read_text())
    else:
        raise FileNotFoundError(f"{selection_path} is missing: run the select stage first")
    row |= {k: v for k, v in selection.items() if k != "instruction_ids"}

    train_path, model_dir = run_dir / "train.json", run_dir / "model"
    if "train" in config.stages and not (train_path.exists() and (model_dir / "config.json").exists()):
        model_dir, metrics, _ = train_stage(config, run_dir, wandb_run)
    elif train_path.exists():
        metrics = json.loads(train_path.read_text())
    else:
        raise FileNotFoundError(f"{train_path} is missing: run the train stage first")
    row |= {k: metrics[k] for k in ("train_steps", "train_loss", "train_runtime_s") if k in metrics}
    row |= {
        key.replace("train/", "train_").replace("/", "_"): metrics[key]
        for key in ("train/rewards/accuracies", "train/rewards/margins")
        if key in metrics
    }

    if {"answer", "judge"} & set(config.stages):
        reference = reference_answers(
            config, policy_checkpoint(config.train.model), config.experiment_dir / "reference", progress=progress
        )
        row |= evaluate_policy(
            config, model_dir, run_dir / "eval", reference=reference, stages=config.stages, progress=progress
        )
    return row


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.run", description=ExperimentConfig.__doc__)
    parser.add_argument("config", nargs="?", help="experiment YAML (flags override it; unknown keys refused)")
    parser.add_argument("--quiet", action="store_true", help="warnings and errors only")
    add_arguments(parser, ExperimentConfig, positionals=False)
    return parser


def load_config(argv: list[str] | None = None) -> tuple[ExperimentConfig, bool]:
    namespace = build_parser().parse_args(argv)
    quiet = namespace.quiet
    del namespace.quiet
    return from_arguments(ExperimentConfig, namespace), quiet


def configure_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    config, quiet = load_config(argv)
    configure_logging(quiet)
    command = shlex.join(["python", "-m", "experiments.run", *(sys.argv[1:] if argv is None else argv)])
    row = run_experiment(config, progress=not quiet, command=command)
    print(json.dumps(row, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
