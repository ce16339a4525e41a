"""Detection benchmark: plant label flips in a dataset's preference pairs and measure how well each
diagnosis method ranks the flipped pairs first.

For each run directory (written by ``admap map``: ``scores.parquet``, ``summary.json`` and, for pair
datasets, ``preferences.parquet``) and each seed, ``round(flip_rate * n_pairs)`` pairs are drawn
uniformly (``numpy.random.default_rng(seed)``) and their chosen/rejected swapped: that is the
planted set. Every method then sees the same corrupted annotation; per-response labels are
recomputed from the flipped pairs only (win rate, the ratings set aside). Methods, each a per-pair
suspicion (higher = more suspect):

- ``paper_cosine``: the pair's instruction's cosine between labels and alignment scores
  (``admap.diagnose.instruction_agreement``), negated: the paper's per-instruction rule.
- ``admap_pair_suspicion``: ``admap.diagnose.pair_suspicion(...)["suspicion_score"]``.
- ``length``: (chars of rejected - chars of chosen) / (sum of both), the "longer is better" prior.
- ``random``: uniform noise from the seed's generator.
- ``cleanlab``: each pair oriented at random as (a, b), given label 1 if a is the (flipped) chosen;
  p(a better) = sigmoid((score_a - score_b) / s) with s the root mean square of the pair score
  differences (their standard deviation about zero: it does not depend on the flips or the
  orientation); suspicion = 1 - ``cleanlab.rank.get_label_quality_scores``; the
  ``cleanlab.filter.find_label_issues`` flagged set is reported with its size and precision.
- ``learned_pair_suspicion``: the learned-preference model (``admap.score.learned``: logistic
  regression on embedding differences of the run's responses, ``--learned-embedding-model``),
  REFIT ON THE FLIPPED PAIRS for every seed and cross-fitted over instruction folds; suspicion =
  minus the flipped label's out-of-fold utility margin (chosen minus rejected). Fitting it on the
  clean labels would leak the planted flips.
- ``learned_cleanlab``: as ``cleanlab``, with p(a better) = sigmoid(utility_a - utility_b), the
  fitted model's own scale, and its own random orientation (a separate generator, so that the
  other methods' draws are unchanged).
- ``neighbour_labels``: ``admap.diagnose.neighbour_label_suspicion`` on the same response features and
  the flipped pairs: each pair's preference direction (rejected to chosen) against those of the 10 pairs
  whose contents are most alike (found by FAISS on the unit sum of the two responses, which a flip does
  not move), weighted by that likeness. No fit and no score: the labels of similar pairs alone.

Without flips, the share of pairs that the alignment scores and the out-of-fold learned model
order as the labels do is reported too.

Metrics against the planted set: AUROC, average precision and precision@k (k = number planted;
ties at the cut-off count by their expected share under random tie-breaking). Figures: the ROC and
precision-recall curves of every method, a panel per run, each the mean over the seeds of the per-seed curves
on a common grid (ROC: true-positive rate at each false-positive rate; precision-recall: the precision where
the ranking first reaches each recall) with a band of one standard deviation, beside the tables
(``roc.png``, ``precision_recall.png``; the plotted points in ``curve_points.csv``).

    HF_HUB_OFFLINE=1 python benchmarks/bench_diagnosis.py runs/demo runs/hh120 --flip-rate 0.15 \\
        --seeds 0 1 2 3 4 --out results/diagnosis
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from admap.diagnose import instruction_agreement, neighbour_label_suspicion, pair_suspicion
from admap.embed import encode_unique
from admap.encoders import load_encoder
from admap.models import DEFAULT_EMBEDDING_MODEL
from admap.provenance import git_commit, machine, machine_line, package_versions
from admap.score.annotation import annotation_labels, pair_counts
from admap.score.learned import DEFAULT_REGULARIZATION, cross_fitted_utilities, pair_agreement
from admap.select import preference_pairs

logger = logging.getLogger("bench_diagnosis")

METHODS = (
    "paper_cosine",
    "admap_pair_suspicion",
    "length",
    "random",
    "cleanlab",
    "learned_pair_suspicion",
    "learned_cleanlab",
    "neighbour_labels",
)
CLEANLAB_METHODS = ("cleanlab", "learned_cleanlab")
PAIR_COLUMNS = ["instruction_id", "chosen_id", "rejected_id"]
# The packages whose versions the README names.
REPORTED_VERSIONS = ("torch", "sentence-transformers", "scikit-learn", "cleanlab")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories written by `admap map`")
    parser.add_argument("--flip-rate", type=float, default=0.15, help="share of pairs flipped (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="default: %(default)s")
    parser.add_argument("--out", default="results/diagnosis", help="output folder (default: %(default)s)")
    parser.add_argument(
        "--learned-embedding-model",
        default=DEFAULT_EMBEDDING_MODEL,
        help="sentence-transformers model of the learned methods' features (default: %(default)s)",
    )
    parser.add_argument("--learned-folds", type=int, default=5, help="instruction folds (default: %(default)s)")
    parser.add_argument(
        "--learned-regularization",
        type=float,
        default=DEFAULT_REGULARIZATION,
        help="L2 penalty per pair of the learned model (default: %(default)s)",
    )
    parser.add_argument("--device", default="auto", help="embedding device (default: %(default)s)")
    return parser.parse_args(argv)


def describe_run(run: Path) -> tuple[str, str]:
    """(dataset, scorer) labels from the run's summary.json."""
    summary = json.loads((run / "summary.json").read_text())
    config = summary.get("config", {})
    source = config.get("input", {}).get("dataset", run.name)
    limit = config.get("input", {}).get("limit")
    if "hh_rlhf" in str(source):
        dataset = f"HH-RLHF {Path(source).name.split('.')[0]}"
    else:
        dataset = Path(str(source)).name
    if limit:
        dataset += f" (first {limit} rows)"
    scorer = config.get("scorer", "?")
    if config.get("length_debias"):
        scorer += " + length debias"
    return dataset, scorer


def run_command(run: Path) -> str:
    """The `admap map` command that wrote ``run``, as its summary.json records it."""
    return json.loads((run / "summary.json").read_text()).get("command") or f"# {run}: no command recorded"


def load_run(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    responses = pd.read_parquet(run / "scores.parquet")
    pref_path = run / "preferences.parquet"
    annotated = pd.read_parquet(pref_path) if pref_path.exists() else None
    pairs = preference_pairs(responses, rule="annotated", annotated=annotated)
    return responses, pairs[PAIR_COLUMNS].reset_index(drop=True)


def flip_pairs(pairs: pd.DataFrame, rate: float, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """Swap chosen/rejected on round(rate * n) uniformly drawn pairs; returns the pairs and the planted mask."""
    n_flip = int(round(rate * len(pairs)))
    planted = np.zeros(len(pairs), dtype=bool)
    planted[rng.choice(len(pairs), size=n_flip, replace=False)] = True
    flipped = pairs.copy()
    flipped.loc[planted, ["chosen_id", "rejected_id"]] = pairs.loc[planted, ["rejected_id", "chosen_id"]].to_numpy()
    return flipped, planted


def flipped_labels(responses: pd.DataFrame, flipped: pd.DataFrame) -> pd.DataFrame:
    """Responses with column ``label`` = win rate in the flipped pairs only (ratings set aside)."""
    relabelled = responses.copy()
    relabelled["rating"] = np.nan
    relabelled[["pair_wins", "pair_losses"]] = pair_counts(relabelled, flipped)
    relabelled["label"] = annotation_labels(relabelled)
    return relabelled


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def length_suspicion(chosen_chars: np.ndarray, rejected_chars: np.ndarray) -> np.ndarray:
    """``(P,)`` (chars rejected - chars chosen) / (sum of both), 0 where both are empty: "longer is better"."""
    total = chosen_chars + rejected_chars
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (rejected_chars - chosen_chars) / total, 0.0)


def cleanlab_suspicion(p_a: np.ndarray, a_is_chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(1 - label quality, find_label_issues mask)`` of pairs oriented as (a, b), labelled 1 where a is
    the chosen one, with ``p_a`` ``(P,)`` the probability that a is better."""
    pred_probs = np.column_stack([1.0 - p_a, p_a])
    labels = a_is_chosen.astype(int)
    issues = find_label_issues(labels, pred_probs, n_jobs=1)
    return 1.0 - get_label_quality_scores(labels, pred_probs), np.asarray(issues, dtype=bool)


def response_features(responses: pd.DataFrame, encoder, cache: dict) -> np.ndarray:
    """``(len(responses), d)`` embeddings of the responses' texts, computed once per distinct text list
    (the runs of one dataset share their responses)."""
    texts = tuple(responses["response"].fillna("").astype(str))
    if texts not in cache:
        batch_size = 128 if str(encoder.device).startswith("cuda") else 16
        unique, index = encode_unique(encoder, list(texts), batch_size=batch_size, progress=False)
        cache[texts] = unique[index]
    return cache[texts]


def pair_positions(responses: pd.DataFrame, pairs: pd.DataFrame) -> np.ndarray:
    """``(P, 2)`` row positions in ``responses`` of each pair's (chosen, rejected)."""
    position = pd.Series(np.arange(len(responses)), index=responses["response_id"].to_numpy())
    return np.column_stack([pairs["chosen_id"].map(position), pairs["rejected_id"].map(position)]).astype(np.int64)


def learned_suspicions(
    responses: pd.DataFrame, features: np.ndarray, flipped: pd.DataFrame, args: argparse.Namespace, seed: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-pair suspicion of the learned methods, fitted on the flipped pairs, and its cleanlab mask."""
    pairs = pair_positions(responses, flipped)
    utilities = cross_fitted_utilities(
        features,
        pairs,
        responses["instruction_id"].to_numpy(),
        folds=args.learned_folds,
        seed=seed,
        regularization=args.learned_regularization,
    )
    margin = utilities[pairs[:, 0]] - utilities[pairs[:, 1]]
    # A generator of its own, so that the other methods' draws from the seed's stay as they were.
    a_is_chosen = np.random.default_rng([seed, 1]).uniform(size=len(pairs)) < 0.5
    suspicion, issues = cleanlab_suspicion(sigmoid(np.where(a_is_chosen, margin, -margin)), a_is_chosen)
    return {"learned_pair_suspicion": -margin, "learned_cleanlab": suspicion}, issues


def suspicions(
    responses: pd.DataFrame, flipped: pd.DataFrame, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-pair suspicion of every method, and cleanlab's find_label_issues mask."""
    relabelled = flipped_labels(responses, flipped)
    out: dict[str, np.ndarray] = {}

    cosine = instruction_agreement(relabelled, label="label").set_index("instruction_id")["cosine"]
    out["paper_cosine"] = -flipped["instruction_id"].map(cosine).to_numpy(dtype=np.float64)

    out["admap_pair_suspicion"] = pair_suspicion(flipped, responses)["suspicion_score"].to_numpy(dtype=np.float64)

    chars = responses.set_index("response_id")["response_chars"].astype(np.float64)
    out["length"] = length_suspicion(
        flipped["chosen_id"].map(chars).to_numpy(), flipped["rejected_id"].map(chars).to_numpy()
    )

    out["random"] = rng.uniform(size=len(flipped))

    score = responses.set_index("response_id")["alignment_score"].astype(np.float64)
    chosen_score = flipped["chosen_id"].map(score).to_numpy()
    rejected_score = flipped["rejected_id"].map(score).to_numpy()
    a_is_chosen = rng.uniform(size=len(flipped)) < 0.5
    diff = np.where(a_is_chosen, chosen_score - rejected_score, rejected_score - chosen_score)
    scale = float(np.sqrt(np.nanmean(diff**2)))
    p_a = sigmoid(np.nan_to_num(diff) / scale) if scale > 0 else np.full(len(diff), 0.5)
    out["cleanlab"], issues = cleanlab_suspicion(p_a, a_is_chosen)

    for name, values in out.items():  # NaN (e.g. no cosine): the median, neither suspect nor trusted
        if np.isnan(values).any():
            out[name] = np.where(np.isnan(values), np.nanmedian(values), values)
    return out, issues


def precision_at_k(planted: np.ndarray, suspicion: np.ndarray, k: int) -> float:
    """Expected precision of the k most suspect pairs, ties at the cut-off broken at random."""
    if k == 0:
        return np.nan
    threshold = np.sort(suspicion)[::-1][k - 1]
    above = suspicion > threshold
    at = suspicion == threshold
    share = (k - above.sum()) / at.sum()
    return float((planted[above].sum() + share * planted[at].sum()) / k)


def curve_points(planted: np.ndarray, suspicion: np.ndarray) -> pd.DataFrame:
    """The ranking's ROC and precision-recall points: one row per distinct suspicion, as the threshold sweeps
    down from flagging nothing (``threshold`` +inf) to flagging every pair.

    ``planted`` ``(P,)`` bool, both values present; ``suspicion`` ``(P,)`` float, higher = more suspect. Columns:
    ``threshold``, ``flagged`` (pairs at or above it), ``false_positive_rate``, ``true_positive_rate`` (the
    recall) and ``precision`` (1 where nothing is flagged, sklearn's convention). The ROC curve is
    (false_positive_rate, true_positive_rate), the precision-recall curve (true_positive_rate, precision).
    """
    planted = np.asarray(planted, dtype=bool)
    suspicion = np.asarray(suspicion, dtype=np.float64)
    if planted.shape != suspicion.shape or planted.ndim != 1:
        raise ValueError(f"planted {planted.shape} and suspicion {suspicion.shape} must be (P,) alike")
    if planted.all() or not planted.any():
        raise ValueError("curves need planted and clean pairs both")
    false_positive_rate, true_positive_rate, thresholds = roc_curve(planted, suspicion, drop_intermediate=False)
    precision, recall, pr_thresholds = precision_recall_curve(planted, suspicion)
    # Both sweep the distinct suspicions, the precision-recall curve upwards and ending at (recall 0, precision 1).
    assert np.array_equal(pr_thresholds[::-1], thresholds[1:]) and np.allclose(recall[::-1], true_positive_rate)
    ordered = np.sort(suspicion)
    return pd.DataFrame(
        {
            "threshold": thresholds,
            "flagged": len(ordered) - np.searchsorted(ordered, thresholds, side="left"),
            "false_positive_rate": false_positive_rate,
            "true_positive_rate": true_positive_rate,
            "precision": precision[::-1],
        }
    )


def seed_averaged_curves(points: pd.DataFrame, keys: list[str], *, grid_points: int = 101) -> pd.DataFrame:
    """Each ``keys`` group's per-seed curves (`curve_points` rows with ``keys`` and ``seed``) on a common grid
    of ``grid_points`` in [0, 1], averaged over the seeds.

    Tidy rows: ``keys``, ``curve`` (``roc``: x the false-positive rate, y the true-positive rate, linear between
    the points, the highest where several share a false-positive rate; ``precision_recall``: x the recall, y
    the precision at the first point of the sweep that reaches it, the step that average precision sums),
    ``x``, ``y_mean``, ``y_std`` (over the seeds, ddof 1 as the tables') and ``seeds``.
    """
    grid = np.linspace(0.0, 1.0, grid_points)
    rows = []
    for key, group in points.groupby(keys, sort=False):
        roc, precision_recall = [], []
        for _, seed_points in group.groupby("seed", sort=True):
            fpr = seed_points["false_positive_rate"].to_numpy()
            tpr = seed_points["true_positive_rate"].to_numpy()
            # fpr repeats along a vertical step; np.interp takes the last point at or left of each x, the step's
            # top, and the next point, the following step's foot: the curve as drawn, the highest rate at an x.
            roc.append(np.interp(grid, fpr, tpr))
            precision_recall.append(seed_points["precision"].to_numpy()[np.searchsorted(tpr, grid, side="left")])
        for curve, ys in (("roc", np.array(roc)), ("precision_recall", np.array(precision_recall))):
            rows.append(
                pd.DataFrame(
                    {
                        **dict(zip(keys, key, strict=True)),
                        "curve": curve,
                        "x": grid,
                        "y_mean": ys.mean(axis=0),
                        "y_std": ys.std(axis=0, ddof=1) if len(ys) > 1 else np.nan,
                        "seeds": len(ys),
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def agreement(responses: pd.DataFrame, pairs: pd.DataFrame) -> tuple[float, int]:
    """Share of the original pairs whose scores order them as the labels do, and the number of score ties."""
    score = responses.set_index("response_id")["alignment_score"].astype(np.float64)
    margin = pairs["chosen_id"].map(score).to_numpy() - pairs["rejected_id"].map(score).to_numpy()
    return float(np.mean(margin > 0)), int(np.sum(margin == 0))


# Per curve: its axes, the metric its legend gives and where chance lies.
FIGURES = {
    "roc": ("false-positive rate", "true-positive rate (recall)", "auroc", "AUROC"),
    "precision_recall": ("recall", "precision", "ap", "AP"),
}
PANEL_COLUMNS = 3
# In the order of METHODS; random in grey, near chance's black.
METHOD_COLOURS = ("tab:blue", "tab:orange", "tab:green", "0.55", "tab:red", "tab:purple", "tab:pink", "tab:olive")


def plot_curves(curves: pd.DataFrame, summary: pd.DataFrame, path: Path, *, curve: str, seeds: list[int]) -> None:
    """``curve``'s figure (`FIGURES`), a panel per run in the order of ``summary``: each method's seed-mean curve
    (`seed_averaged_curves`) with a band of one standard deviation, its metric's mean ± std in the legend, and
    chance (the diagonal; precision at the flip rate)."""
    from matplotlib.figure import Figure  # Figure alone renders through Agg: no display, no pyplot state.

    x_label, y_label, metric, metric_label = FIGURES[curve]
    runs = list(dict.fromkeys(summary["run"]))
    columns = min(PANEL_COLUMNS, len(runs))
    rows = -(-len(runs) // columns)
    figure = Figure(figsize=(5.2 * columns, 5.0 * rows), dpi=110, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    colours = dict(zip(METHODS, METHOD_COLOURS, strict=True))
    for ax, run in zip(axes, runs, strict=False):
        run_summary = summary[summary["run"] == run].set_index("method")
        first = run_summary.iloc[0]
        for method, row in run_summary.iterrows():
            points = curves[(curves["run"] == run) & (curves["method"] == method) & (curves["curve"] == curve)]
            label = f"{method} ({metric_label} {fmt(row[f'{metric}_mean'], row[f'{metric}_std'])})"
            # cleanlab's variants rank much as their own scores do: dashed, so that a curve under its twin shows.
            style = "--" if method in CLEANLAB_METHODS else "-"
            ax.plot(points["x"], points["y_mean"], style, color=colours[method], lw=1.4, label=label)
            ax.fill_between(
                points["x"],
                np.clip(points["y_mean"] - points["y_std"], 0, 1),
                np.clip(points["y_mean"] + points["y_std"], 0, 1),
                color=colours[method],
                alpha=0.1,
                lw=0,
            )
        if curve == "roc":
            ax.plot([0, 1], [0, 1], ":", color="black", lw=1, label="chance (AUROC 0.5)")
        else:
            rate = first["n_planted"] / first["n_pairs"]
            ax.axhline(rate, ls=":", color="black", lw=1, label=f"chance (precision {rate:.3f}, the flip rate)")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel=x_label, ylabel=y_label)
        title = f"{first['dataset']}\n{first['scorer']}: {first['n_pairs']} pairs, {first['n_planted']} flipped"
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=6.5, framealpha=0.9, loc="lower right" if curve == "roc" else "upper right")
    for ax in axes[len(runs) :]:
        ax.set_visible(False)
    seed_text = f"seeds {seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}"
    figure.suptitle(
        f"{'ROC' if curve == 'roc' else 'Precision–recall'} of planted-flip detection: mean over {seed_text} "
        f"({len(seeds)}), band ± 1 std; legend: {metric_label} mean ± std"
    )
    figure.savefig(path, pil_kwargs={"optimize": True})


def fmt(mean: float, std: float, digits: int = 3) -> str:
    return "n/a" if np.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "| " + " | ".join("---" for _ in table.columns) + " |"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    start = time.perf_counter()
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    encoder = load_encoder(args.learned_embedding_model, device=args.device)
    feature_cache: dict = {}
    rows, baselines, curve_rows = [], [], []
    for run_arg in args.runs:
        run = Path(run_arg)
        dataset, scorer = describe_run(run)
        responses, pairs = load_run(run)
        rate, ties = agreement(responses, pairs)
        features = response_features(responses, encoder, feature_cache)
        groups = responses["instruction_id"].to_numpy()
        clean_pairs = pair_positions(responses, pairs)
        learned_utilities = cross_fitted_utilities(
            features, clean_pairs, groups, folds=args.learned_folds, regularization=args.learned_regularization
        )
        baselines.append(
            {
                "run": run.name,
                "dataset": dataset,
                "scorer": scorer,
                "n_pairs": len(pairs),
                "agreement": rate,
                "ties": ties,
                "learned_agreement": pair_agreement(learned_utilities, clean_pairs),
            }
        )
        logger.info("%s: scores agree %.3f, learned model %.3f", run, rate, baselines[-1]["learned_agreement"])
        for seed in args.seeds:
            rng = np.random.default_rng(seed)
            flipped, planted = flip_pairs(pairs, args.flip_rate, rng)
            scores, issues = suspicions(responses, flipped, rng)
            learned_scores, learned_issues = learned_suspicions(responses, features, flipped, args, seed)
            scores |= learned_scores
            # The flipped labels against those of the 10 pairs most like each (the same response features).
            scores["neighbour_labels"] = neighbour_label_suspicion(features, pair_positions(responses, flipped))
            flagged_sets = {"cleanlab": issues, "learned_cleanlab": learned_issues}
            k = int(planted.sum())
            for method in METHODS:
                s = scores[method]
                curve_rows.append(curve_points(planted, s).assign(run=run.name, method=method, seed=seed))
                row = {
                    "run": run.name,
                    "dataset": dataset,
                    "scorer": scorer,
                    "method": method,
                    "seed": seed,
                    "n_pairs": len(pairs),
                    "n_planted": k,
                    "auroc": roc_auc_score(planted, s),
                    "ap": average_precision_score(planted, s),
                    "p_at_k": precision_at_k(planted, s, k),
                    "n_flagged": np.nan,
                    "flagged_precision": np.nan,
                }
                if method in flagged_sets:
                    flagged_set = flagged_sets[method]
                    row["n_flagged"] = int(flagged_set.sum())
                    row["flagged_precision"] = float(planted[flagged_set].mean()) if flagged_set.any() else np.nan
                rows.append(row)

    detail = pd.DataFrame(rows)
    detail.to_csv(out / "detection.csv", index=False)
    keys = ["run", "dataset", "scorer", "method"]
    metrics = ["auroc", "ap", "p_at_k", "n_flagged", "flagged_precision"]
    summary = detail.groupby(keys, sort=False)[metrics].agg(["mean", "std"])
    summary.columns = [f"{m}_{stat}" for m, stat in summary.columns]
    summary = summary.reset_index()
    summary.insert(4, "n_pairs", detail.groupby(keys, sort=False)["n_pairs"].first().to_numpy())
    summary.insert(5, "n_planted", detail.groupby(keys, sort=False)["n_planted"].first().to_numpy())
    summary.to_csv(out / "detection_summary.csv", index=False)
    # A run names its dataset and scorer (detection_summary.csv): the points need no more than the run.
    curves = seed_averaged_curves(pd.concat(curve_rows, ignore_index=True), ["run", "method"])
    curves.to_csv(out / "curve_points.csv", index=False, float_format="%.4g")
    for curve in FIGURES:
        plot_curves(curves, summary, out / f"{curve}.png", curve=curve, seeds=args.seeds)

    table = pd.DataFrame(
        {
            "dataset": summary["dataset"],
            "scorer": summary["scorer"],
            "method": summary["method"],
            "AUROC": [fmt(m, s) for m, s in zip(summary["auroc_mean"], summary["auroc_std"])],
            "AP": [fmt(m, s) for m, s in zip(summary["ap_mean"], summary["ap_std"])],
            "P@k": [fmt(m, s) for m, s in zip(summary["p_at_k_mean"], summary["p_at_k_std"])],
        }
    )
    clean = summary[summary["method"].isin(CLEANLAB_METHODS)]
    flagged = pd.DataFrame(
        {
            "dataset": clean["dataset"],
            "scorer": clean["scorer"],
            "method": clean["method"],
            "pairs": clean["n_pairs"],
            "planted (k)": clean["n_planted"],
            "flagged": [fmt(m, s, 1) for m, s in zip(clean["n_flagged_mean"], clean["n_flagged_std"])],
            "precision of flagged": [
                fmt(m, s) for m, s in zip(clean["flagged_precision_mean"], clean["flagged_precision_std"])
            ],
        }
    )
    base = pd.DataFrame(baselines)
    base_table = pd.DataFrame(
        {
            "dataset": base["dataset"],
            "scorer": base["scorer"],
            "pairs": base["n_pairs"],
            "scores agree with labels (no flips)": [f"{a:.3f}" for a in base["agreement"]],
            "score ties": base["ties"],
            "learned model agrees (no flips, out of fold)": [f"{a:.3f}" for a in base["learned_agreement"]],
        }
    )
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    facts, versions = machine(), package_versions(REPORTED_VERSIONS)
    text = README.format(
        command=command,
        rate=args.flip_rate,
        seeds=" ".join(map(str, args.seeds)),
        run_commands="\n".join(run_command(Path(run)) for run in args.runs),
        machine=f"{machine_line(facts)}{'' if facts['gpus'] else ', no GPU'}, Python {platform.python_version()}",
        device=encoder.device,
        commit=git_commit() or "unknown",
        versions=", ".join(f"{name} {versions[name]}" for name in REPORTED_VERSIONS if name in versions),
        seconds=time.perf_counter() - start,
        embedding_model=args.learned_embedding_model,
        folds=args.learned_folds,
        regularization=args.learned_regularization,
        table=markdown(table),
        flagged=markdown(flagged),
        baseline=markdown(base_table),
    )
    (out / "README.md").write_text(text)
    print(markdown(table))
    print()
    print(markdown(flagged))
    print()
    print(markdown(base_table))
    return 0


README = """# Detection of planted label flips

```bash
{command}
```

Each run directory was written by `admap map` (the `dataset` column; `pairs` below), by the commands its
`summary.json` records:

```bash
{run_commands}
```

Data: the demo set (`admap/demo/demo_preferences.jsonl`, 48 instructions × 4 responses, pairs = every pair
with different ratings, higher rating chosen) and the HH-RLHF harmless-base test set (each pair the dataset's
own chosen/rejected pair; "first N rows" where a run read only those). Alignment scores (the `scorer` column):
cosine similarity (all-MiniLM-L6-v2) or ROUGE-L to greedy SmolLM2-135M-Instruct proxy responses; `length
debias` is the reference score with its length trend removed. Machine: {machine}; embeddings on {device};
source commit {commit}; {versions}. The benchmark took {seconds:.0f} s.

Flip rate {rate}, seeds {seeds}. Per seed, `round(rate × pairs)` pairs are drawn uniformly
(`numpy.random.default_rng(seed)`) and their chosen/rejected swapped: the planted set. Labels are
then recomputed from the flipped pairs only (each response's win rate in them), so every method sees
the same corrupted annotation. Methods (higher = more suspect):

- `paper_cosine`: the pair's instruction's cosine between labels and alignment scores
  (`admap.diagnose.instruction_agreement`), negated: the paper's per-instruction rule.
- `admap_pair_suspicion`: `admap.diagnose.pair_suspicion` (the pair's margin against the label,
  scaled by the instruction's spread shrunk towards the dataset's).
- `length`: (chars rejected − chars chosen) / (sum of both), the "longer is better" prior.
- `random`: uniform noise.
- `cleanlab`: each pair oriented at random as (a, b), given label 1 if a is the (flipped) chosen;
  p(a better) = sigmoid((score_a − score_b) / s), s = root mean square of the pair score
  differences (their standard deviation about zero, independent of the flips and the orientation);
  suspicion = 1 − `cleanlab.rank.get_label_quality_scores` (self-confidence).
- `learned_pair_suspicion`: the learned-preference model (`admap.score.learned`, the `learned`
  scorer): a logistic model without intercept on the difference of the two responses' {embedding_model}
  embeddings, L2 penalty {regularization:g} per pair, cross-fitted over {folds} folds of instructions.
  It is refit on the flipped pairs for every seed (fitting it on the clean labels would leak the
  planted set), and no pair is scored by a model that saw its instruction. Suspicion = minus the
  out-of-fold utility margin of the flipped label (chosen − rejected). It does not use the run's
  alignment scores, so it is the same for every run of one dataset.
- `learned_cleanlab`: as `cleanlab`, with p(a better) = sigmoid(utility_a − utility_b), the
  fitted model's own scale: cleanlab's out-of-sample probabilities from a model of the labels themselves.

Metrics against the planted set, mean ± std over seeds: AUROC, average precision (AP), precision@k
with k = number planted (ties at the cut-off counted by their expected share). Random gives AUROC 0.5
and AP ≈ P@k ≈ the flip rate. Per-seed rows: `detection.csv`; means and stds: `detection_summary.csv`.

{table}

![ROC curves of planted-flip detection, a panel per run](roc.png)

![Precision–recall curves of planted-flip detection, a panel per run](precision_recall.png)

The curves (`roc.png`, `precision_recall.png`: a panel per run, a curve per method) are the mean over the
seeds of each seed's curve on a grid of 101 points, with a band of ± 1 standard deviation; the legend gives
the method's AUROC or AP as in the table. ROC: the true-positive rate at each false-positive rate (linear
between the ranking's points). Precision–recall: the precision where the ranking first reaches each recall,
the step that AP sums. Dotted: chance (the diagonal; precision at the flip rate). Dashed: the two cleanlab
methods, drawn over the methods whose scores they read: `cleanlab` ranks the alignment-score margins much as
`admap_pair_suspicion` does, and `learned_cleanlab` is a monotone function of `learned_pair_suspicion`'s
margin, so those two coincide. The plotted points: `curve_points.csv`, one row per run,
method, curve and grid point (`curve` `roc`: `x` the false-positive rate, `y_mean` and `y_std` the
true-positive rate; `precision_recall`: `x` the recall, `y_*` the precision; `seeds` averaged; `run` names
the dataset and scorer in `detection_summary.csv`).

`cleanlab.filter.find_label_issues` (default `prune_by_noise_rate`) on the same probabilities:

{flagged}

Without flips, the share of pairs whose alignment scores order them as the labels do, and the share
that the learned model, cross-fitted on the clean labels (fold seed 0), orders as the labels do:

{baseline}
"""


if __name__ == "__main__":
    raise SystemExit(main())
