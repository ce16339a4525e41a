"""The learned-preference scorer on whole datasets: out-of-fold agreement with the labels and planted-flip
detection, per feature set and L2 penalty, against the length heuristic.

No `admap map` run is needed: each dataset is loaded (``admap.inputs.InputOptions(..., skip_invalid=True)``),
its labelled pairs taken (the dataset's own pairs, else every pair with different ratings), and each
feature set computed once by the `learned` scorer's own featurizer (cached under ``--cache``). Feature sets:

- ``length``: log(1 + characters), one feature.
- ``embedding``: the sentence embedding of the response (``--embedding-model``).
- ``lm_hidden``: a causal LM's last hidden state mean-pooled over the response, read as the reply to
  its conversation (``--lm``, ``--max-length``); slow on a CPU.
- ``A+B``: the two side by side, e.g. ``embedding+length``.

Per feature set and penalty: agreement = share of the clean pairs that the model cross-fitted on the
clean labels (fold seed 0) orders as labelled. Then per seed, the planted set of
``bench_diagnosis.py`` (the same ``flip_pairs`` with ``numpy.random.default_rng(seed)``, so the same
pairs flipped), the model refit on the flipped pairs with fold seed = seed, and suspicion = minus the
flipped label's out-of-fold utility margin: AUROC, AP and precision@k against the planted set, as in
``bench_diagnosis.py``. The length heuristic ("longer is better", `bench_diagnosis.py`'s ``length``)
and its mirror ("shorter is better") are scored on the same planted sets.

    HF_HUB_OFFLINE=1 python benchmarks/bench_learned.py \\
        --dataset tests/data/hh_rlhf/harmless-base-test.jsonl.gz --dataset demo \\
        --features length embedding embedding+length --regularization 0.1 1 10 100 --out results/learned
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

# Run as a script, this folder is on sys.path and the repository, which holds the `benchmarks` package, is not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from admap.inputs import InputOptions, demo_dataset_path  # noqa: E402
from admap.models import DEFAULT_EMBEDDING_MODEL, DEFAULT_GENERATOR_MODEL  # noqa: E402
from admap.score.learned import LearnedScorer, cross_fitted_utilities, pair_agreement, rated_pairs  # noqa: E402
from benchmarks.bench_diagnosis import (  # noqa: E402
    flip_pairs,
    fmt,
    length_suspicion,
    markdown,
    pair_positions,
    precision_at_k,
)

logger = logging.getLogger("bench_learned")

METRICS = ["agreement", "auroc", "ap", "p_at_k"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset", action="append", required=True, help="a dataset admap can load, or 'demo' (repeatable)"
    )
    parser.add_argument("--limit", type=int, default=None, help="first rows of each dataset only")
    parser.add_argument("--features", nargs="+", default=["length", "embedding", "embedding+length"])
    parser.add_argument("--regularization", type=float, nargs="+", default=[0.1, 1.0, 10.0, 100.0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--flip-rate", type=float, default=0.15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--embedding-model", default=DEFAULT_EMBEDDING_MODEL)
    parser.add_argument("--lm", default=DEFAULT_GENERATOR_MODEL, help="causal LM of the lm_hidden features")
    parser.add_argument("--max-length", type=int, default=512, help="lm_hidden: tokens per conversation")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache", default=None, help="folder to keep computed features in between runs")
    parser.add_argument("--out", default="results/learned")
    return parser.parse_args(argv)


def load(dataset: str, limit: int | None):
    path = demo_dataset_path() if dataset == "demo" else dataset
    return InputOptions(dataset=path, skip_invalid=True, limit=limit).read(progress=False)


def log_length(responses: pd.DataFrame) -> np.ndarray:
    """``(N, 1)`` log(1 + characters) of each response."""
    return np.log1p(responses["response"].fillna("").str.len().to_numpy(dtype=np.float64))[:, None]


def source_features(source: str, data, args: argparse.Namespace, cache: Path | None, label: str) -> np.ndarray:
    """``(N, d)`` features of one source (``length``, ``embedding`` or ``lm_hidden``), from the cache if there."""
    if source == "length":
        return log_length(data.responses)
    if source not in ("embedding", "lm_hidden"):
        raise ValueError(f"unknown feature source {source!r} (length, embedding, lm_hidden)")
    model = args.embedding_model if source == "embedding" else args.lm
    name = f"{label}-{source}-{Path(model).name}" + (f"-{args.max_length}" if source == "lm_hidden" else "")
    path = cache / f"{name}.npy" if cache else None
    if path is not None and path.exists():
        features = np.load(path)
        if len(features) == len(data.responses):
            return features
    scorer = LearnedScorer(
        features=source,
        embedding_model=args.embedding_model,
        lm_model=args.lm,
        max_length=args.max_length,
        device=args.device,
        progress=False,
    )
    features = scorer.featurize(data.instructions, data.responses)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, features)
    return features


def detection(planted: np.ndarray, suspicion: np.ndarray) -> dict[str, float]:
    k = int(planted.sum())
    return {
        "auroc": roc_auc_score(planted, suspicion),
        "ap": average_precision_score(planted, suspicion),
        "p_at_k": precision_at_k(planted, suspicion, k),
    }


def evaluate(
    dataset: str, data, feature_sets: dict[str, np.ndarray], args: argparse.Namespace
) -> tuple[list[dict], dict]:
    """Rows per (feature set, penalty, seed) and per (length heuristic, seed); and the dataset's counts."""
    responses = data.responses
    pairs_array = rated_pairs(responses, data.preferences if data.has_preferences else None)
    ids = responses["response_id"].to_numpy()
    pairs = pd.DataFrame(
        {
            "instruction_id": responses["instruction_id"].to_numpy()[pairs_array[:, 0]],
            "chosen_id": ids[pairs_array[:, 0]],
            "rejected_id": ids[pairs_array[:, 1]],
        }
    )
    groups = responses["instruction_id"].to_numpy()
    chars = responses["response"].fillna("").str.len().to_numpy(dtype=np.float64)
    flips = [flip_pairs(pairs, args.flip_rate, np.random.default_rng(seed)) for seed in args.seeds]
    rows = []
    for seed, (flipped, planted) in zip(args.seeds, flips):
        flipped_array = pair_positions(responses, flipped)
        longer = length_suspicion(chars[flipped_array[:, 0]], chars[flipped_array[:, 1]])
        for method, suspicion in (("length (longer is better)", longer), ("length (shorter is better)", -longer)):
            rows.append({"dataset": dataset, "method": method, "seed": seed, **detection(planted, suspicion)})
    for name, features in feature_sets.items():
        for regularization in args.regularization:
            fit = {"folds": args.folds, "regularization": regularization}
            clean = cross_fitted_utilities(features, pairs_array, groups, seed=0, **fit)
            agreement = pair_agreement(clean, pairs_array)
            for seed, (flipped, planted) in zip(args.seeds, flips):
                flipped_array = pair_positions(responses, flipped)
                utilities = cross_fitted_utilities(features, flipped_array, groups, seed=seed, **fit)
                margin = utilities[flipped_array[:, 0]] - utilities[flipped_array[:, 1]]
                rows.append(
                    {
                        "dataset": dataset,
                        "method": "learned",
                        "features": name,
                        "regularization": regularization,
                        "seed": seed,
                        "agreement": agreement,
                        **detection(planted, -margin),
                    }
                )
            logger.info("%s %s λ=%g: agreement %.3f", dataset, name, regularization, agreement)
    counts = {"dataset": dataset, "instructions": len(data.instructions), "pairs": len(pairs)}
    return rows, counts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else None
    rows, counts = [], []
    for dataset in args.dataset:
        data = load(dataset, args.limit)
        label = "demo" if dataset == "demo" else Path(dataset).name.split(".")[0]
        if args.limit:
            label += f"-first{args.limit}"
        sources = {s: source_features(s, data, args, cache, label) for f in args.features for s in f.split("+")}
        feature_sets = {f: np.hstack([sources[s] for s in f.split("+")]) for f in args.features}
        dataset_rows, dataset_counts = evaluate(label, data, feature_sets, args)
        rows += dataset_rows
        counts.append(dataset_counts)

    detail = pd.DataFrame(rows)
    detail.to_csv(out / "sweep.csv", index=False)
    keys = ["dataset", "method", "features", "regularization"]
    summary = detail.fillna({"features": ""}).groupby(keys, sort=False, dropna=False)[METRICS].agg(["mean", "std"])
    summary.columns = [f"{m}_{stat}" for m, stat in summary.columns]
    summary = summary.reset_index()
    summary.to_csv(out / "sweep_summary.csv", index=False)
    table = pd.DataFrame(
        {
            "dataset": summary["dataset"],
            "method": summary["method"],
            "features": summary["features"],
            "λ": [f"{r:g}" if r == r else "" for r in summary["regularization"]],
            "agreement (no flips)": [f"{a:.3f}" if a == a else "" for a in summary["agreement_mean"]],
            "AUROC": [fmt(m, s) for m, s in zip(summary["auroc_mean"], summary["auroc_std"])],
            "AP": [fmt(m, s) for m, s in zip(summary["ap_mean"], summary["ap_std"])],
            "P@k": [fmt(m, s) for m, s in zip(summary["p_at_k_mean"], summary["p_at_k_std"])],
        }
    )
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    text = README.format(
        command=command,
        counts=markdown(pd.DataFrame(counts)),
        embedding_model=args.embedding_model,
        lm=args.lm,
        max_length=args.max_length,
        folds=args.folds,
        rate=args.flip_rate,
        seeds=" ".join(map(str, args.seeds)),
        machine=f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()})",
        table=markdown(table),
    )
    (out / "README.md").write_text(text)
    print(markdown(table))
    return 0


README = """# The learned-preference scorer: features and L2 penalty

```bash
{command}
```

Datasets, loaded with `skip_invalid` (pairs: the dataset's own, else every pair with different ratings):

{counts}

The `learned` scorer (`admap.score.learned`): logistic regression without intercept on the feature
difference of a pair's two responses (both orientations, each feature scaled by its root mean square
difference), L2 penalty λ per pair, cross-fitted over {folds} folds of instructions so that no
response is scored by a model that saw its instruction. Features: `length` = log(1 + characters);
`embedding` = {embedding_model}; `lm_hidden` = {lm}'s last hidden state mean-pooled over the response,
read as the reply to its conversation ({max_length} tokens at most, cut on the left).

`agreement (no flips)`: share of the clean pairs the model, cross-fitted on the clean labels (fold seed 0),
orders as labelled. Detection: flip rate {rate}, seeds {seeds}, the planted sets of
`benchmarks/bench_diagnosis.py` (same pairs flipped per seed); the model is refit on the flipped pairs
(fold seed = seed) and suspicion = minus the flipped label's out-of-fold utility margin. AUROC, average
precision and precision@k (k = number planted), mean ± std over seeds. The length heuristic is
`bench_diagnosis.py`'s `length` ("longer is better") and its mirror. Machine: {machine}.
Per-seed rows: `sweep.csv`; means and stds: `sweep_summary.csv`.

{table}
"""


if __name__ == "__main__":
    raise SystemExit(main())
