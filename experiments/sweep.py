"""A sweep: one experiment config, a grid of values over its fields, every point run in turn.

    python -m admap_experiments.sweep experiments/configs/sweeps/cpu-smoke.yaml

The sweep file holds ``name``, ``base`` (an experiment config: a mapping, or the path of a YAML
file, relative to the sweep file), ``grid`` (dotted field names to lists of values; their product is run) and optionally
``seeds`` (each seed sets every field of ``seed_fields``, by default ``selection.seed``). Every point is
validated before the first one runs.
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

import numpy as np
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
    "train_runtime_s",
    "held_out_pairs",
    "preference_accuracy",
    "preference_accuracy_low",
    "preference_accuracy_high",
    "logprob_accuracy",
    "logprob_accuracy_per_token",
    "reference_logprob_accuracy",
    "preference_margin",
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
    seeds: list[int] | None = option(None, "seeds, crossed with the grid; each sets every field of seed_fields")
    seed_fields: list[str] = option(
        ["selection.seed"],
        "dotted experiment fields a seed sets: add train.dpo.seed for seeds that vary the training's order and "
        "initialisation as well as the random subset",
    )
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
    seed_key = "seed"
    if sweep.seeds is not None:
        # Seeds outermost: one seed of every point first, so that a sweep stopped early compares them all.
        grid = {seed_key: sweep.seeds} | grid
    keys = list(grid)
    configs = []
    for values in itertools.product(*(grid[k] for k in keys)):
        point = deep_merge(base, {"name": sweep.name})
        for key, value in zip(keys, values):
            for field in sweep.seed_fields if key == seed_key else [key]:
                point = deep_merge(point, _nested(field, value))
        label = ", ".join(f"{k}={v}" for k, v in zip(keys, values))
        configs.append(build(ExperimentConfig, point, source=f"{source} [{label}]"))
    return configs


def markdown_table(rows: pd.DataFrame, *, columns: list[str] | None = None) -> str:
    columns = [c for c in (columns or TABLE_COLUMNS) if c in rows.columns]

    def cell(value) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else f"{value:.3g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for _, row in rows.iterrows()]
    return "\n".join(lines)


# The metrics drawn in the sweep's figure, where the runs have them. Each is drawn with its interval
# (``_low``/``_high`` columns) or its standard error (``_se``) where the rows carry one.
FIGURE_METRICS = [
    "preference_accuracy",
    "logprob_accuracy",
    "mt_bench_score",
    "mt_bench_expected_score",
    "evol_win_rate",
    "mt_bench_pair_win_rate",
    "alpaca_eval_win_rate",
]


def error_bars(rows: pd.DataFrame, metric: str) -> np.ndarray | None:
    """Below and above each value: its interval where the rows have one, else its standard error."""
    if f"{metric}_low" in rows.columns and f"{metric}_high" in rows.columns:
        return np.vstack([rows[metric] - rows[f"{metric}_low"], rows[f"{metric}_high"] - rows[metric]])
    if f"{metric}_se" in rows.columns:
        return np.vstack([rows[f"{metric}_se"], rows[f"{metric}_se"]])
    return None


def strategy_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per strategy and fraction, each figure metric's mean over seeds, its standard deviation and a 95%
    Student-t interval of the mean across seeds (the spread that seeds cause, not the held-out sampling)."""
    from scipy import stats

    metrics = [m for m in FIGURE_METRICS if m in rows.columns and rows[m].notna().any()]
    keys = ["strategy", "fraction"] if "fraction" in rows.columns else ["strategy"]
    records = []
    for group, runs in rows.groupby(keys, dropna=False, sort=False):
        record = dict(zip(keys, group if isinstance(group, tuple) else (group,)))
        record["seeds"] = runs["seed"].nunique()
        if "n_pairs" in runs.columns:
            record["n_pairs"] = runs["n_pairs"].mean()
        for metric in metrics:
            values = runs[metric].dropna().to_numpy(dtype=float)
            mean, spread = values.mean(), values.std(ddof=1) if len(values) > 1 else float("nan")
            half = stats.t.ppf(0.975, len(values) - 1) * spread / np.sqrt(len(values)) if len(values) > 1 else np.nan
            record |= {
                metric: mean,
                f"{metric}_std": spread,
                f"{metric}_low": mean - half,
                f"{metric}_high": mean + half,
            }
        records.append(record)
    return pd.DataFrame(records)


def run_label(row: pd.Series, *, with_seed: bool) -> str:
    fraction = row.get("fraction")
    # `full` keeps every instruction whatever the fraction says.
    label = (
        str(row["strategy"]) if pd.isna(fraction) or row["strategy"] == "full" else f"{row['strategy']} {fraction:g}"
    )
    return f"{label} seed {row['seed']}" if with_seed else label


def paired_differences(
    rows: pd.DataFrame, outcomes: dict[str, pd.DataFrame], *, against: str = "random", resamples: int = 2000
) -> pd.DataFrame:
    """Each strategy's held-out preference accuracy less ``against``'s, pair by pair on the same held-out pairs
    and seed by seed, averaged over the seeds both ran; with a 95% bootstrap interval that resamples the
    held-out pairs (the same draw for every run). ``outcomes`` maps run ids to their per-pair tables
    (``eval/preference_accuracy/pairs.parquet``). The interval is the held-out sample's uncertainty for these
    trained policies; the spread across seeds is `strategy_summary`'s."""
    keys = ["instruction_id", "chosen_id", "rejected_id"]
    correct = {run_id: table.set_index(keys)["reward_correct"] for run_id, table in outcomes.items() if not table.empty}
    baseline = rows[rows["strategy"] == against].set_index("seed")["run_id"]
    records = []
    for strategy, runs in rows[rows["strategy"] != against].groupby("strategy", sort=False):
        paired = [
            (correct[run_id], correct[baseline[seed]])
            for seed, run_id in zip(runs["seed"], runs["run_id"])
            if seed in baseline.index and run_id in correct and baseline[seed] in correct
        ]
        if not paired:
            continue
        index = paired[0][0].index
        differences = np.vstack([(mine.reindex(index) - theirs.reindex(index)).to_numpy() for mine, theirs in paired])
        per_pair = differences.mean(axis=0)  # averaged over seeds
        draws = np.random.default_rng(0).integers(0, len(per_pair), size=(resamples, len(per_pair)))
        low, high = np.percentile(per_pair[draws].mean(axis=1), [2.5, 97.5])
        records.append(
            {
                "strategy": strategy,
                "against": against,
                "seeds": len(paired),
                "held_out_pairs": len(per_pair),
                "accuracy_difference": float(per_pair.mean()),
                "accuracy_difference_low": float(low),
                "accuracy_difference_high": float(high),
            }
        )
    return pd.DataFrame(records)


def plot_sweep(rows: pd.DataFrame, path: Path, *, title: str) -> Path | None:
    """One panel per evaluation metric the runs have. One seed: each run's value with its interval or
    standard error. Several: each strategy's mean over seeds with its 95% interval across seeds, and every
    run's own value as a dot. Where the rows have the untrained policy's value (``reference_<metric>``) it
    is a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in FIGURE_METRICS if m in rows.columns and rows[m].notna().any()]
    if not metrics:
        return None
    seeded = rows["seed"].nunique() > 1
    bars = strategy_summary(rows) if seeded else rows
    labels = [run_label(row, with_seed=False) for _, row in bars.iterrows()]
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        # Points, not bars: the values sit far from zero and their intervals are what to compare.
        axis.errorbar(
            range(len(bars)), bars[metric], yerr=error_bars(bars, metric), fmt="s", capsize=4, color="#4c72b0"
        )
        if seeded:
            position = {label: i for i, label in enumerate(labels)}
            x = [position[run_label(row, with_seed=False)] for _, row in rows.iterrows()]
            axis.plot(x, rows[metric], "o", color="#dd8452", markersize=3.5, label="one seed")
        untrained = f"reference_{metric}"
        if untrained in rows.columns and rows[untrained].notna().any():
            axis.axhline(rows[untrained].mean(), color="grey", linestyle="--", linewidth=1, label="untrained policy")
        elif metric == "preference_accuracy":
            axis.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="untrained policy")
        axis.set_xticks(range(len(bars)), labels, rotation=35, ha="right", fontsize=8)
        axis.set_title(metric, fontsize=9)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7, loc="lower right")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_sweep_results(
    sweep: SweepConfig, rows: pd.DataFrame, *, command: str, outcomes: dict[str, pd.DataFrame] | None = None
) -> Path:
    """``results/<name>.csv`` (one row per run), ``results/<name>.md`` (the command, data, model, judge and
    machine, the strategies' means over seeds, their paired differences from ``random`` where ``outcomes``
    holds the runs' held-out pairs, every run's row) and ``results/<name>.png``."""
    folder = Path(sweep.results)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / f"{sweep.name}.csv"
    rows.to_csv(csv_path, index=False)
    first = rows.iloc[0]
    seeds = ", ".join(str(s) for s in sorted(rows["seed"].dropna().unique()))
    header = [
        f"# Sweep `{sweep.name}`",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Data: {first.get('dataset')} (map scorer {first.get('scorer')}). Policy: {first.get('model')}. "
        f"Judge: {first.get('judge', 'none')}. Machine: {machine_line()}. Seeds: "
        f"{seeds} (each sets {', '.join(sweep.seed_fields)}).",
        "Per-run rows (with run ids, dates, git commits and wall times): "
        f"`{csv_path.name}`. Standard errors (`_se`) are over questions; `_low`/`_high` in a run's row are "
        "percentile-bootstrap 95% intervals over the held-out pairs.",
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
    sections = []
    if rows["seed"].nunique() > 1:
        summary = strategy_summary(rows)
        summary.to_csv(folder / f"{sweep.name}_strategies.csv", index=False)
        sections += [
            "## Strategies, over seeds",
            "",
            "Mean over seeds, standard deviation across seeds (`_std`) and a 95% Student-t interval of the mean "
            f"across seeds (`_low`, `_high`); also in `{sweep.name}_strategies.csv`.",
            "",
            markdown_table(summary, columns=list(summary.columns)),
            "",
        ]
    differences = paired_differences(rows, outcomes) if outcomes and "random" in set(rows["strategy"]) else None
    if differences is not None and not differences.empty:
        differences.to_csv(folder / f"{sweep.name}_paired.csv", index=False)
        sections += [
            "## Against `random`, pair by pair",
            "",
            "Held-out preference accuracy less `random`'s on the same pairs with the same seed, averaged over "
            "seeds, with a 95% bootstrap interval over the held-out pairs (it holds the trained policies fixed: "
            f"the spread across seeds is the table above); also in `{sweep.name}_paired.csv`.",
            "",
            markdown_table(differences, columns=list(differences.columns)),
            "",
        ]
    if sections:
        sections += ["## Runs", ""]
    text = "\n".join([*header, "", *sections, markdown_table(rows)]) + "\n"
    (folder / f"{sweep.name}.md").write_text(text)
    return csv_path


def run_sweep(sweep: SweepConfig, *, source: str, command: str, progress: bool = True) -> Path:
    configs = expand(sweep, source=source)
    logger.info("sweep %s: %d runs", sweep.name, len(configs))
    rows, outcomes = [], {}
    for number, config in enumerate(configs, 1):
        logger.info("sweep %s: run %d of %d (%s)", sweep.name, number, len(configs), config.run_id())
        rows.append(run_experiment(config, progress=progress, command=command))
        pairs = config.experiment_dir / "runs" / config.run_id() / "eval" / "preference_accuracy" / "pairs.parquet"
        if pairs.exists():
            outcomes[config.run_id()] = pd.read_parquet(pairs)
        path = write_sweep_results(sweep, pd.DataFrame(rows), command=command, outcomes=outcomes)
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
