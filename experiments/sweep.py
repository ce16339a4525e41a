"""A sweep: one experiment config, a grid of values over its fields, every point run in turn.

    python -m admap_experiments.sweep experiments/configs/sweeps/cpu-smoke.yaml

The sweep file holds ``name``, ``base`` (an experiment config: a mapping, or the path of a YAML
file, relative to the sweep file), ``grid`` (dotted field names to lists of values; their product is run) and optionally
``seeds`` (values of ``selection.seed``). Every point is validated before the first one runs.
Rows go to ``OUT/NAME/results.csv`` as each run ends, and the sweep's table, restricted to its
own points, to ``results/<name>.csv`` and ``results/<name>.md`` with the command that made them.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from admap.config import build, deep_merge, option, read_yaml
from admap.provenance import machine_line
from admap_experiments.config import ExperimentConfig
from admap_experiments.run import configure_logging, run_experiment

logger = logging.getLogger(__name__)

# Columns of the Markdown view, in order, where the runs have them.
TABLE_COLUMNS = [
    "strategy",
    "fraction",
    "scorer",
    "seed",
    "n_instructions",
    "n_pairs",
    "train_steps",
    "train_loss",
    "train_rewards_accuracies",
    "mt_bench_score",
    "mt_bench_score_se",
    "mt_bench_expected_score",
    "mt_bench_turn1",
    "mt_bench_turn2",
    "mt_bench_unparsed",
    "evol_win_rate",
    "evol_win_rate_se",
    "evol_wins",
    "evol_ties",
    "evol_losses",
    "evol_unparsed",
    "evol_inconsistent",
    "evol_win_rate_model_first",
    "evol_win_rate_model_second",
    "wall_s",
]


@dataclass
class SweepConfig:
    name: str = option(help="sweep name: results/<name>.csv and .md")
    base: dict | str = option(help="the experiment config all points start from (a mapping or a YAML path)")
    grid: dict = option({}, "dotted experiment fields to lists of values, e.g. {selection.strategy: [full, random]}")
    seeds: list[int] | None = option(None, "values of selection.seed, crossed with the grid")
    results: str = option("results", "folder for the sweep's table")
    description: str = option("", "what the sweep is for and how to read its table (goes into the Markdown)")

    def __post_init__(self) -> None:
        for key, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid.{key}: expected a non-empty list of values, got {values!r}")


def _nested(dotted: str, value) -> dict:
    node: dict = {}
    target = node
    *parents, leaf = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value
    return node


def expand(sweep: SweepConfig, *, source: str) -> list[ExperimentConfig]:
    """Every point of the grid as a validated experiment config (the experiment named after the sweep)."""
    base = read_yaml(sweep.base) if isinstance(sweep.base, str) else dict(sweep.base)
    grid = dict(sweep.grid)
    if sweep.seeds is not None:
        grid["selection.seed"] = sweep.seeds
    keys = list(grid)
    configs = []
    for values in itertools.product(*(grid[k] for k in keys)):
        point = deep_merge(base, {"name": sweep.name})
        for key, value in zip(keys, values):
            point = deep_merge(point, _nested(key, value))
        label = ", ".join(f"{k}={v}" for k, v in zip(keys, values))
        configs.append(build(ExperimentConfig, point, source=f"{source} [{label}]"))
    return configs


def markdown_table(rows: pd.DataFrame) -> str:
    columns = [c for c in TABLE_COLUMNS if c in rows.columns]

    def cell(value) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else f"{value:.3g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for _, row in rows.iterrows()]
    return "\n".join(lines)


# The metrics drawn in the sweep's figure, with the standard-error column of each where there is one.
FIGURE_METRICS = {
    "mt_bench_score": "mt_bench_score_se",
    "mt_bench_expected_score": "mt_bench_expected_score_se",
    "evol_win_rate": "evol_win_rate_se",
    "mt_bench_pair_win_rate": "mt_bench_pair_win_rate_se",
    "alpaca_eval_win_rate": "alpaca_eval_win_rate_se",
}


def run_label(row: pd.Series, *, with_seed: bool) -> str:
    fraction = row.get("fraction")
    label = str(row["strategy"]) if pd.isna(fraction) else f"{row['strategy']} {fraction:g}"
    return f"{label} seed {row['seed']}" if with_seed else label


def plot_sweep(rows: pd.DataFrame, path: Path, *, title: str) -> Path | None:
    """One panel per evaluation metric the runs have: each run's value with its standard error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in FIGURE_METRICS if m in rows.columns and rows[m].notna().any()]
    if not metrics:
        return None
    with_seed = rows["seed"].nunique() > 1
    labels = [run_label(row, with_seed=with_seed) for _, row in rows.iterrows()]
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        errors = rows[FIGURE_METRICS[metric]] if FIGURE_METRICS[metric] in rows.columns else None
        axis.bar(range(len(rows)), rows[metric], yerr=errors, capsize=3, color="#4c72b0")
        axis.set_xticks(range(len(rows)), labels, rotation=35, ha="right", fontsize=8)
        axis.set_title(metric, fontsize=9)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_sweep_results(sweep: SweepConfig, rows: pd.DataFrame, *, command: str) -> Path:
    """``results/<name>.csv`` (one row per run), ``results/<name>.md`` (the table, the command,
    data, model, judge and machine) and ``results/<name>.png`` (the evaluation metrics)."""
    folder = Path(sweep.results)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / f"{sweep.name}.csv"
    rows.to_csv(csv_path, index=False)
    first = rows.iloc[0]
    header = [
        f"# Sweep `{sweep.name}`",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Data: {first.get('dataset')} (map scorer {first.get('scorer')}). Policy: {first.get('model')}. "
        f"Judge: {first.get('judge', 'none')}. Machine: {machine_line()}. Seeds: "
        f"{', '.join(str(s) for s in sorted(rows['seed'].dropna().unique()))}.",
        "Per-run rows (with run ids, dates, git commits and wall times): "
        f"`{csv_path.name}`. Standard errors (`_se`) are over questions.",
        "",
        *([sweep.description.strip(), ""] if sweep.description else []),
    ]
    figure = plot_sweep(
        rows,
        folder / f"{sweep.name}.png",
        title=f"{sweep.name}: {first.get('model')} on {first.get('dataset')}, judge {first.get('judge', 'none')}, "
        f"{machine_line()}",
    )
    if figure is not None:
        header.append(f"![{sweep.name}]({figure.name})\n")
    (folder / f"{sweep.name}.md").write_text("\n".join(header) + "\n" + markdown_table(rows) + "\n")
    return csv_path


def run_sweep(sweep: SweepConfig, *, source: str, command: str, progress: bool = True) -> Path:
    configs = expand(sweep, source=source)
    logger.info("sweep %s: %d runs", sweep.name, len(configs))
    rows = []
    for number, config in enumerate(configs, 1):
        logger.info("sweep %s: run %d of %d (%s)", sweep.name, number, len(configs), config.run_id())
        rows.append(run_experiment(config, progress=progress, command=command))
        path = write_sweep_results(sweep, pd.DataFrame(rows), command=command)
    return path


def load_sweep(path: str, *, results: str | None = None) -> SweepConfig:
    """The sweep file at ``path``; a relative ``base`` path is read from the sweep file's folder."""
    values = read_yaml(path)
    if isinstance(values.get("base"), str) and not Path(values["base"]).is_absolute():
        values["base"] = str(Path(path).parent / values["base"])
    if results:
        values["results"] = results
    return build(SweepConfig, values, source=path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m admap_experiments.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="sweep YAML (name, base, grid, seeds)")
    parser.add_argument("--results", help="folder for the sweep's table (default: the file's, or results)")
    parser.add_argument("--quiet", action="store_true", help="warnings and errors only")
    args = parser.parse_args(argv)
    configure_logging(args.quiet)
    sweep = load_sweep(args.sweep, results=args.results)
    command = shlex.join(["python", "-m", "admap_experiments.sweep", *(sys.argv[1:] if argv is None else argv)])
    print(run_sweep(sweep, source=args.sweep, command=command, progress=not args.quiet))
    return 0


if __name__ == "__main__":
    sys.exit(main())
