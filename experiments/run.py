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
from admap.load import PreferenceData
from admap.load.readers import iter_jsonl
from admap.provenance import git_commit, machine_line, package_versions
from admap.run_folder import IncompleteRun, MapRun
from admap.select import preference_pairs, trl_records
from admap_baselines import SelectionInputs
from admap_experiments import held_out, tracking
from admap_experiments.config import ExperimentConfig, fingerprint
from admap_experiments.dynamics import write_training_dynamics
from admap_experiments.evaluate.lm_evaluation import check_tasks, run_lm_eval
from admap_experiments.evaluate.preference_accuracy import (
    DEFAULT_MAX_LENGTH,
    evaluate_preference_accuracy,
    reference_table,
)
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
    settings, built once (a map that is already complete is reused). With ``held_out.fraction`` the map
    is built from the instructions the split leaves; the held-out pairs are written once beside it."""
    if config.map_run:
        map_dir = MapRun.open(config.map_run).path
    else:
        map_dir = (
            config.experiment_dir / "maps" / f"{config.map.input.stem}-{config.map.scorer}-{config.map_fingerprint()}"
        )
        if config.map.out:
            map_dir = Path(config.map.out)
        try:
            MapRun.open(map_dir)
        except IncompleteRun:
            run_map(
                replace(config.map, out=str(map_dir)),
                progress=progress,
                data=ensure_held_out(config, progress=progress),
            )
    if config.held_out.enabled and not (held_out_dir(config) / "held_out.json").exists():
        ensure_held_out(config, progress=progress)
    return map_dir


def held_out_dir(config: ExperimentConfig) -> Path:
    return config.experiment_dir / "held_out" / config.held_out_fingerprint()


def ensure_held_out(config: ExperimentConfig, *, progress: bool) -> PreferenceData | None:
    """Write the held-out pairs (``held_out/<hash>/pairs.jsonl`` and ``held_out.json``) once; returns the
    data the map is built from when the held-out pairs are split from it (None: the map reads its input)."""
    options = config.held_out
    if not options.enabled:
        return None
    folder = held_out_dir(config)
    if options.dataset:
        held = replace(config.map.input, dataset=options.dataset, limit=None).read(progress=progress)
        pool = None
    else:
        pool, held = held_out.split(
            config.map.input.read(progress=progress), fraction=options.fraction, seed=options.seed
        )
    if not (folder / "held_out.json").exists():
        records = held_out.held_out_records(held)
        write_jsonl(records, folder / "pairs.jsonl")
        record = {
            "source": held.source,
            "held_out": to_dict(options),
            "n_instructions": len(held.instructions),
            "n_pairs": len(records),
            "instruction_ids": sorted(str(i) for i in held.instructions["instruction_id"]),
        }
        publish_text(folder / "held_out.json", json.dumps(record, indent=2))
    return pool


def held_out_instruction_ids(config: ExperimentConfig) -> set[str]:
    path = held_out_dir(config) / "held_out.json"
    return set(json.loads(path.read_text())["instruction_ids"]) if config.held_out.enabled else set()


def selection_inputs(map_dir: Path, config: ExperimentConfig) -> SelectionInputs:
    """The map's tables for the strategies, without any held-out instruction (which a held-out dataset
    given apart from the map's may share with it)."""
    run = MapRun.open(map_dir)
    responses, map_config = run.scores(), run.summary["config"]
    pairs = preference_pairs(
        responses, rule=map_config["pair_rule"], annotated=run.preferences(), seed=map_config.get("seed", 42)
    )
    map_table = run.map_table()
    held_ids = held_out_instruction_ids(config)
    if held_ids:
        shared = map_table["instruction_id"].astype(str).isin(held_ids)
        if shared.any():
            logger.warning("%d mapped instructions are held out: they are not selected", int(shared.sum()))
        map_table = map_table[~shared].reset_index(drop=True)
        responses = responses[~responses["instruction_id"].astype(str).isin(held_ids)].reset_index(drop=True)
        pairs = pairs[~pairs["instruction_id"].astype(str).isin(held_ids)].reset_index(drop=True)
    dynamics = pd.read_parquet(config.selection.dynamics) if config.selection.dynamics else None
    return SelectionInputs(map_table, responses, pairs, scorer=run.scorer, dynamics=dynamics)


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
        if not margins.empty:
            dynamics = write_training_dynamics(margins, run_dir)
            metrics |= {k: v for k, v in dynamics.items() if k not in ("dynamics_table", "dynamics_figure")}
        publish_text(run_dir / "train.json", json.dumps(metrics, indent=2))
    return model_dir, metrics, margins


def preference_accuracy_stage(config: ExperimentConfig, model_dir: Path, run_dir: Path, *, progress: bool) -> dict:
    """The trained policy's accuracy on the held-out pairs (``eval/preference_accuracy/``), against the
    untrained policy's log-probabilities, computed once per experiment."""
    from trl import DPOConfig

    options = config.evaluation.preference_accuracy
    records = [record for _, record in iter_jsonl(held_out_dir(config) / "pairs.jsonl")]
    # Measured as the training pairs were tokenized: the same length and the same end kept.
    truncation = {
        "max_length": options.max_length or config.train.dpo.get("max_length") or DEFAULT_MAX_LENGTH,
        "truncation_mode": config.train.dpo.get("truncation_mode", DPOConfig.truncation_mode),
    }
    device = pick_device(config.train.device)
    cache_key = fingerprint({"model": config.train.model, **truncation})
    reference = reference_table(
        policy_checkpoint(config.train.model),
        records,
        options,
        **truncation,
        cache=held_out_dir(config) / f"reference-{cache_key}.parquet",
        device=device,
        progress=progress,
    )
    return evaluate_preference_accuracy(
        model_dir,
        reference,
        records,
        options,
        beta=config.train.dpo.get("beta", DPOConfig.beta),
        **truncation,
        out_dir=run_dir / "eval" / "preference_accuracy",
        device=device,
        progress=progress,
    )


def lm_eval_stage(config: ExperimentConfig, model_dir: Path, run_dir: Path) -> dict:
    """lm-eval's scores of the trained policy (``eval/lm_eval/``) and of the untrained one (``reference_``
    fields, computed once per experiment and tasks), so that a row shows what DPO kept."""
    options = config.evaluation.lm_eval
    device = pick_device(config.train.device)
    untrained_dir = config.experiment_dir / "reference" / fingerprint({"model": config.train.model} | to_dict(options))
    untrained = run_lm_eval(
        policy_checkpoint(config.train.model), options, out_dir=untrained_dir / "lm_eval", device=device
    )
    trained = run_lm_eval(str(model_dir), options, out_dir=run_dir / "eval" / "lm_eval", device=device)
    return trained | {f"reference_{key}": value for key, value in untrained.items() if key != "lm_eval_tasks"}


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
            dynamics_figure=run_dir / "dynamics.png",
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
    if "lm_eval" in config.stages and config.evaluation.lm_eval.tasks:
        check_tasks(config.evaluation.lm_eval)  # a misspelt task fails now, not after training
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
    row |= {key: value for key, value in metrics.items() if key.startswith("dynamics_")}

    if "preference_accuracy" in config.stages and config.held_out.enabled and state.is_main_process:
        row |= preference_accuracy_stage(config, model_dir, run_dir, progress=progress)
    if "lm_eval" in config.stages and config.evaluation.lm_eval.tasks and state.is_main_process:
        row |= lm_eval_stage(config, model_dir, run_dir)

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
