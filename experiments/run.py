"""One experiment run: map → select → train DPO → answer → judge → one results row.

    python -m admap_experiments.run experiments/configs/cpu-smoke.yaml --strategy random

Each stage writes its outputs into the run directory (``OUT/NAME/runs/<run id>``, unique per
configuration) and a rerun skips the stages whose outputs are there, so an interrupted run resumes.
Maps and the untrained policy's reference answers are shared by every run of an experiment that
agrees on their settings.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import yaml

from admap.commands.map import run_map
from admap.config import add_arguments, from_arguments, to_dict
from admap.devices import pick_device
from admap.durable import publish, write_jsonl
from admap.provenance import git_commit, machine_line, package_versions
from admap.run_folder import IncompleteRun, MapRun
from admap.select import preference_pairs, trl_records
from admap_baselines import SelectionInputs
from admap_experiments import tracking
from admap_experiments.config import ExperimentConfig
from admap_experiments.evaluate.stages import evaluate_policy, reference_answers
from admap_experiments.train import MARGIN_COLUMNS, policy_checkpoint, train_dpo

logger = logging.getLogger(__name__)


def process_state(config: ExperimentConfig):
    """Under ``accelerate launch`` or ``torchrun`` every process runs the experiment: the main one
    builds the map, selects, writes every file, answers and judges; the others train beside it. One
    process alone is its own main process. (Training on CPUs says so here: accelerate's state is set
    once per process, and only a CPU state joins CPU processes into one group, over gloo.)"""
    from accelerate import PartialState

    return PartialState(cpu=pick_device(config.train.device) == "cpu")


def publish_text(path: Path, text: str) -> Path:
    return publish(path, lambda staging: staging.write_text(text))


def ensure_map(config: ExperimentConfig, *, progress: bool) -> Path:
    """The map run directory: ``map_run``, else ``map.out`` or this experiment's map for these
    settings, built once (a map that is already complete is reused)."""
    if config.map_run:
        return MapRun.open(config.map_run).path
    map_dir = config.experiment_dir / "maps" / f"{config.map.input.stem}-{config.map.scorer}-{config.map_fingerprint()}"
    if config.map.out:
        map_dir = Path(config.map.out)
    try:
        MapRun.open(map_dir)
    except IncompleteRun:
        run_map(replace(config.map, out=str(map_dir)), progress=progress)
    return map_dir


def selection_inputs(map_dir: Path, config: ExperimentConfig) -> SelectionInputs:
    run = MapRun.open(map_dir)
    responses, map_config = run.scores(), run.summary["config"]
    pairs = preference_pairs(
        responses, rule=map_config["pair_rule"], annotated=run.preferences(), seed=map_config.get("seed", 42)
    )
    dynamics = pd.read_parquet(config.selection.dynamics) if config.selection.dynamics else None
    return SelectionInputs(run.map_table(), responses, pairs, scorer=run.scorer, dynamics=dynamics)


def select_stage(inputs: SelectionInputs, config: ExperimentConfig, run_dir: Path, *, map_run_id: str | None) -> dict:
    """Write the subset's TRL pairs and ``selection.json`` (naming the map run it selected from);
    returns the selection record."""
    ids = config.selection.select(inputs)
    pairs = inputs.pairs[inputs.pairs["instruction_id"].isin(set(ids))].reset_index(drop=True)
    if pairs.empty:
        raise ValueError(f"strategy {config.selection.strategy!r} selected {len(ids)} instructions with no pairs")
    write_jsonl(trl_records(pairs, inputs.map_table, inputs.responses), run_dir / "pairs.jsonl")
    publish(run_dir / "pairs.parquet", lambda staging: pairs.to_parquet(staging, index=False))
    record = {
        "strategy": config.selection.strategy,
        "strategy_options": to_dict(config.selection).get(config.selection.strategy),
        "fraction": config.selection.fraction,
        "seed": config.selection.seed,
        "n_candidates": int(len(inputs.candidates)),
        "n_instructions": int(len(ids)),
        "n_pairs": int(len(pairs)),
        "instruction_ids": [str(i) for i in ids],
        "map_run_id": map_run_id,
    }
    publish_text(run_dir / "selection.json", json.dumps(record, indent=2))
    return record


def train_stage(
    config: ExperimentConfig, run_dir: Path, wandb_run, *, main_process: bool
) -> tuple[Path, dict, pd.DataFrame]:
    """Every process trains; the main one writes the margins and the metrics (the same on every
    process: the margins are gathered, the metrics are TRL's, reduced across processes)."""
    model_dir, metrics, margins = train_dpo(
        run_dir / "pairs.jsonl",
        config.train,
        out_dir=run_dir,
        run_name=run_dir.name,
        report_to=["wandb"] if wandb_run is not None else [],
    )
    if main_process:
        publish(run_dir / "pair_margins.parquet", lambda staging: margins.to_parquet(staging, index=False))
        publish_text(run_dir / "train.json", json.dumps(metrics, indent=2))
    return model_dir, metrics, margins


def append_result(row: dict, path: Path) -> pd.DataFrame:
    """Add ``row`` to the CSV at ``path``, replacing an earlier row of the same run id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pd.read_csv(path) if path.exists() else pd.DataFrame()
    if not table.empty:
        table = table[table["run_id"] != row["run_id"]]
    table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
    publish(path, lambda staging: table.to_csv(staging, index=False))
    return table


def run_experiment(config: ExperimentConfig, *, progress: bool = True, command: str | None = None) -> dict:
    """Run the configured stages and return the results row (also in ``result.json`` and appended
    to ``OUT/NAME/results.csv``)."""
    started = time.perf_counter()
    run_id = config.run_id()
    run_dir = config.experiment_dir / "runs" / run_id
    resolved = to_dict(config)
    state = process_state(config)
    main_process = state.is_main_process
    if main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        publish_text(run_dir / "config.yaml", yaml.safe_dump(tracking.redacted(resolved), sort_keys=False))
        logger.info("run %s in %s", run_id, run_dir)
    with state.main_process_first():  # the others find the main process's map complete
        map_dir = ensure_map(config, progress=progress)
    wandb_run = None
    if main_process:
        wandb_run = tracking.start_run(
            config.wandb, run_dir=run_dir, name=run_id, group=config.name, config=resolved | {"command": command}
        )
    try:
        row = _run_stages(config, run_dir, map_dir, wandb_run, state=state, progress=progress)
        row |= {
            "experiment": config.name,
            "run_id": run_id,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine_line(),
            "git_commit": git_commit(),
            "wall_s": round(time.perf_counter() - started, 1),
            "command": command,
        }
        if not main_process:
            return row
        publish_text(run_dir / "result.json", json.dumps(row | {"versions": package_versions()}, indent=2))
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


def _run_stages(config: ExperimentConfig, run_dir: Path, map_dir: Path, wandb_run, *, state, progress: bool) -> dict:
    map_summary = MapRun.open(map_dir).summary
    row: dict = {
        "dataset": map_summary["config"]["input"]["dataset"],
        "scorer": map_summary["config"]["scorer"],
        "length_debias": map_summary["config"].get("length_debias", False),
        "model": config.train.model,
    }
    selection_path = run_dir / "selection.json"
    if "select" in config.stages and state.is_main_process:
        select_stage(selection_inputs(map_dir, config), config, run_dir, map_run_id=map_summary.get("run_id"))
    state.wait_for_everyone()
    if selection_path.exists():
        selection = json.loads(selection_path.read_text())
    else:
        raise FileNotFoundError(f"{selection_path} is missing: run the select stage first")
    if selection.get("map_run_id") != map_summary.get("run_id"):
        raise ValueError(
            f"{selection_path} was selected from map run {selection.get('map_run_id')}, but {map_dir} now holds run "
            f"{map_summary.get('run_id')}: run the select stage again"
        )
    row |= {k: v for k, v in selection.items() if k not in ("instruction_ids", "map_run_id")}

    train_path, model_dir = run_dir / "train.json", run_dir / "model"
    if "train" in config.stages and not (train_path.exists() and (model_dir / "config.json").exists()):
        model_dir, metrics, _ = train_stage(config, run_dir, wandb_run, main_process=state.is_main_process)
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

    if {"answer", "judge"} & set(config.stages) and state.is_main_process:
        reference = reference_answers(
            config, policy_checkpoint(config.train.model), config.experiment_dir / "reference", progress=progress
        )
        row |= evaluate_policy(
            config, model_dir, run_dir / "eval", reference=reference, stages=config.stages, progress=progress
        )
    return row


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m admap_experiments.run", description=ExperimentConfig.__doc__)
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
    command = shlex.join(["python", "-m", "admap_experiments.run", *(sys.argv[1:] if argv is None else argv)])
    row = run_experiment(config, progress=not quiet, command=command)
    print(json.dumps(row, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
