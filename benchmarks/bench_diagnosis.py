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

Without flips, the share of pairs that the alignment scores and the out-of-fold learned model
order as the labels do is reported too.

Metrics against the planted set: AUROC, average precision and precision@k (k = number planted;
ties at the cut-off count by their expected share under random tie-breaking).

    HF_HUB_OFFLINE=1 python benchmarks/bench_diagnosis.py runs/demo runs/hh120 --flip-rate 0.15 \\
        --seeds 0 1 2 3 4 --out results/diagnosis
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from sklearn.metrics import average_precision_score, roc_auc_score

from admap.diagnose import instruction_agreement, pair_suspicion
from admap.embed import encode_unique
from admap.encoders import load_encoder
from admap.models import DEFAULT_EMBEDDING_MODEL
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
)
CLEANLAB_METHODS = ("cleanlab", "learned_cleanlab")
PAIR_COLUMNS = ["instruction_id", "chosen_id", "rejected_id"]


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


def agreement(responses: pd.DataFrame, pairs: pd.DataFrame) -> tuple[float, int]:
    """Share of the original pairs whose scores order them as the labels do, and the number of score ties."""
    score = responses.set_index("response_id")["alignment_score"].astype(np.float64)
    margin = pairs["chosen_id"].map(score).to_numpy() - pairs["rejected_id"].map(score).to_numpy()
    return float(np.mean(margin > 0)), int(np.sum(margin == 0))


def fmt(mean: float, std: float, digits: int = 3) -> str:
    return "n/a" if np.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "| " + " | ".join("---" for _ in table.columns) + " |"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    encoder = load_encoder(args.learned_embedding_model, device=args.device)
    feature_cache: dict = {}
    rows, baselines = [], []
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
            flagged_sets = {"cleanlab": issues, "learned_cleanlab": learned_issues}
            k = int(planted.sum())
            for method in METHODS:
                s = scores[method]
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
    text = README.format(
        command=command,
        rate=args.flip_rate,
        seeds=" ".join(map(str, args.seeds)),
        machine=f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()})",
        device=encoder.device,
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

Each run directory was written by `admap map` (the `dataset` column; `pairs` below): the demo set
(`admap/demo/demo_preferences.jsonl`, 48 instructions × 4 responses, pairs = every pair with different
ratings, higher rating chosen) and the HH-RLHF harmless-base test set (each pair the dataset's own
chosen/rejected pair). Alignment scores (the `scorer` column): cosine similarity (all-MiniLM-L6-v2) or
ROUGE-L to greedy SmolLM2-135M-Instruct proxy responses; `length debias` is the reference score with its
length trend removed. Machine: {machine}; embeddings on {device}.

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

`cleanlab.filter.find_label_issues` (default `prune_by_noise_rate`) on the same probabilities:

{flagged}

Without flips, the share of pairs whose alignment scores order them as the labels do, and the share
that the learned model, cross-fitted on the clean labels (fold seed 0), orders as the labels do:

{baseline}
"""


if __name__ == "__main__":
    raise SystemExit(main())
