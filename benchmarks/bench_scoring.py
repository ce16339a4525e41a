"""Time admap's reference-based scoring against the paper's per-pair loop on the same texts and model.

The paper's code (01choco/Dataset-Cartography, data-map/src/scores/embedding.py) scores each
completion with one ``model.encode([proxy, response])`` call and a cosine of the two rows, so the
proxy is re-encoded for every response. admap's `ReferenceScorer` embeds each distinct text once,
in batches, and takes the paired inner products through a FAISS flat inner-product index.

Both paths share one `SentenceTransformer` object (loaded once, fp32, on ``--device``); model load
is outside every timing. The admap path is `ReferenceScorer.score` end to end (dedup, batched
encode, FAISS scoring) with its model loader patched to hand back the shared model.

    HF_HUB_OFFLINE=1 python benchmarks/bench_scoring.py --out results/bench_scoring.json

Targets (issue): admap at least 1.5x faster than the loop, largest absolute score difference at
most 1e-5. The exit code is 0 either way: this is a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = REPO.parent / "shared" / "data" / "hh_rlhf" / "harmless-base-test.jsonl.gz"
TARGET_RATIO = 1.5
TARGET_DIFF = 1e-5
STAND_IN = "stand-in: last user turn"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset", default=str(DEFAULT_DATASET), help="any dataset admap loads (default: %(default)s)"
    )
    parser.add_argument("--instructions", type=int, default=300, help="first N instructions (default: %(default)s)")
    parser.add_argument(
        "--proxy-file",
        default=None,
        help="proxies.jsonl written by `admap map` (instruction_id, proxy_response); without it, instructions "
        "with no proxy in the dataset get a stand-in proxy: their last user turn",
    )
    parser.add_argument("--model", default=None, help="embedding model (default: admap's default)")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="admap's encode batch size (default: admap's own, 16 on CPU)"
    )
    parser.add_argument("--device", default="cpu", help="device for both paths (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each path (overrides the two below)")
    parser.add_argument("--loop-repeats", type=int, default=1, help="runs of the per-pair loop (default: %(default)s)")
    parser.add_argument("--admap-repeats", type=int, default=3, help="runs of admap (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=4, help="pairs each path scores once before timing")
    parser.add_argument("--out", default=None, help="also write the results as one JSON line to this file")
    args = parser.parse_args(argv)
    if args.repeats is not None:
        args.loop_repeats = args.admap_repeats = args.repeats
    if min(args.loop_repeats, args.admap_repeats, args.instructions) < 1:
        parser.error("--instructions and the repeat counts must be at least 1")
    return args


def last_user_turn(prompt_messages: str, instruction: str) -> str:
    messages = json.loads(prompt_messages) if isinstance(prompt_messages, str) else []
    users = [m["content"] for m in messages if m.get("role") == "user" and m.get("content")]
    return users[-1] if users else instruction


def load_inputs(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """``(instructions, responses, proxy_sources)`` for the first ``--instructions`` instructions."""
    from admap.load import load_preferences
    from admap.proxy import attach_proxies

    data = load_preferences(args.dataset, skip_invalid=True, progress=False)
    instructions = data.instructions.head(args.instructions).reset_index(drop=True)
    instructions = attach_proxies(instructions, proxy_file=args.proxy_file)
    missing = instructions["proxy_response"].isna()
    instructions.loc[missing, "proxy_response"] = [
        last_user_turn(m, i)
        for m, i in zip(instructions.loc[missing, "prompt_messages"], instructions.loc[missing, "instruction"])
    ]
    instructions.loc[missing, "proxy_source"] = STAND_IN
    sources = {str(k): int(v) for k, v in instructions["proxy_source"].value_counts().items()}
    responses = data.responses[data.responses["instruction_id"].isin(instructions["instruction_id"])]
    return instructions[["instruction_id", "proxy_response"]], responses.reset_index(drop=True), sources


def per_pair_loop(model, instructions: pd.DataFrame, responses: pd.DataFrame) -> np.ndarray:
    """The paper's scoring: per response, encode [proxy, response] together, cosine of the two rows.

    The cosine is taken in float64 from the unnormalised encoder outputs, as sklearn's
    ``cosine_similarity`` does it (normalise each row, then the dot product).
    """
    proxies = dict(zip(instructions["instruction_id"], instructions["proxy_response"]))
    scores = np.full(len(responses), np.nan, dtype=np.float64)
    for i, (instruction_id, response) in enumerate(zip(responses["instruction_id"], responses["response"])):
        proxy = proxies.get(instruction_id)
        if proxy is None:
            continue
        embeddings = model.encode([proxy, response], show_progress_bar=False)
        a = np.asarray(embeddings[0], dtype=np.float64)
        b = np.asarray(embeddings[1], dtype=np.float64)
        scores[i] = float((a / np.linalg.norm(a)) @ (b / np.linalg.norm(b)))
    return scores


def admap_scores(model, scorer, instructions: pd.DataFrame, responses: pd.DataFrame) -> np.ndarray:
    """`ReferenceScorer.score` end to end, its loader patched to return the already-loaded model."""
    import admap.score

    with mock.patch.object(admap.score, "load_encoder", lambda *args, **kwargs: model):
        return scorer.score(instructions, responses)


def timed(function, repeats: int) -> tuple[list[float], np.ndarray]:
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return seconds, result


def system_cpu_seconds() -> float | None:
    """CPU seconds all processes have used since boot (Linux ``/proc/stat``), else None."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
        return busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class OtherLoad:
    """Cores' worth of CPU time that other processes used while the block ran (None where unknown)."""

    def __enter__(self) -> OtherLoad:
        self.cores = None
        self._system, self._own, self._wall = system_cpu_seconds(), time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        system = system_cpu_seconds()
        if system is not None and self._system is not None:
            wall = time.perf_counter() - self._wall
            other = (system - self._system) - (time.process_time() - self._own)
            self.cores = round(max(other, 0.0) / max(wall, 1e-9), 2)


def machine(device: str) -> dict[str, object]:
    import faiss
    import sentence_transformers
    import torch

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "sentence_transformers": sentence_transformers.__version__,
        "faiss": faiss.__version__,
        "device": device,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Before anything imports huggingface_hub, which reads it once: the default model is a local package.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from admap.embed import load_encoder
    from admap.models import DEFAULT_EMBEDDING_MODEL, resolve_embedding_model
    from admap.score import ReferenceScorer

    model_name = args.model or DEFAULT_EMBEDDING_MODEL
    instructions, responses, sources = load_inputs(args)
    model = load_encoder(model_name, device=args.device)
    dtype = str(next(model.parameters()).dtype)
    scorer = ReferenceScorer(embedding_model=model_name, batch_size=args.batch_size, device=args.device, progress=False)

    proxy_texts = list(instructions["proxy_response"])
    texts = list(responses["response"]) + proxy_texts
    distinct = len(pd.unique(pd.Series(texts, dtype=object)))
    pairs = int(responses["instruction_id"].isin(instructions["instruction_id"]).sum())

    print(f"dataset: {args.dataset}")
    print(f"proxy source: {', '.join(f'{k}: {v}' for k, v in sources.items())}")
    if STAND_IN in sources:
        print(
            "  (stand-in proxies: the scoring stage's cost depends on text counts and lengths, not on "
            "where the proxy came from)"
        )
    print(
        f"model: {model_name} -> {resolve_embedding_model(model_name)} ({dtype}, max_seq_length {model.max_seq_length})"
    )
    info = machine(args.device)
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    warm = responses.head(args.warmup)
    per_pair_loop(model, instructions, warm)
    admap_scores(model, scorer, instructions, warm)

    with OtherLoad() as other:
        loop_seconds, loop = timed(lambda: per_pair_loop(model, instructions, responses), args.loop_repeats)
        admap_seconds, ours = timed(lambda: admap_scores(model, scorer, instructions, responses), args.admap_repeats)
    info["other_processes_cores"] = other.cores
    loop_s, admap_s = statistics.median(loop_seconds), statistics.median(admap_seconds)

    both = np.isfinite(loop) & np.isfinite(ours)
    if not np.array_equal(np.isfinite(loop), np.isfinite(ours)):
        print("WARNING: the two paths leave different responses unscored", file=sys.stderr)
    diff = float(np.max(np.abs(ours[both].astype(np.float64) - loop[both]))) if both.any() else float("nan")
    ratio = loop_s / admap_s
    ratio_ok, diff_ok = ratio >= TARGET_RATIO, diff <= TARGET_DIFF

    rows = [
        ("instructions", f"{len(instructions)}"),
        ("texts (responses + proxies)", f"{len(texts)}"),
        ("distinct texts (admap encodes)", f"{distinct}"),
        ("pairs (loop encodes 2 per pair)", f"{pairs}  ->  {2 * pairs} texts"),
        (
            "mean chars response / proxy",
            f"{responses['response'].str.len().mean():.0f} / {np.mean([len(p) for p in proxy_texts]):.0f}",
        ),
        (
            "per-pair loop s (median)",
            f"{loop_s:.2f}  of {len(loop_seconds)}: " + ", ".join(f"{s:.2f}" for s in loop_seconds),
        ),
        (
            "admap s (median)",
            f"{admap_s:.2f}  of {len(admap_seconds)}: " + ", ".join(f"{s:.2f}" for s in admap_seconds),
        ),
        ("per-pair loop responses/s", f"{pairs / loop_s:.1f}"),
        ("admap responses/s", f"{pairs / admap_s:.1f}"),
        ("speed ratio (loop / admap)", f"{ratio:.2f}x   target >= {TARGET_RATIO}x: {'PASS' if ratio_ok else 'FAIL'}"),
        ("max |score difference|", f"{diff:.2e}   target <= {TARGET_DIFF:.0e}: {'PASS' if diff_ok else 'FAIL'}"),
    ]
    rows.append(("other processes' CPU use", f"{other.cores} cores (while timing; should be ~0)"))
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")

    if args.out:
        record = {
            "dataset": args.dataset,
            "instructions": len(instructions),
            "proxy_sources": sources,
            "texts": len(texts),
            "distinct_texts": distinct,
            "pairs": pairs,
            "loop_seconds": loop_seconds,
            "admap_seconds": admap_seconds,
            "loop_seconds_median": loop_s,
            "admap_seconds_median": admap_s,
            "loop_responses_per_s": pairs / loop_s,
            "admap_responses_per_s": pairs / admap_s,
            "speed_ratio": ratio,
            "max_abs_diff": diff,
            "target_ratio": TARGET_RATIO,
            "target_diff": TARGET_DIFF,
            "ratio_pass": bool(ratio_ok),
            "diff_pass": bool(diff_ok),
            "model": model_name,
            "model_path": resolve_embedding_model(model_name),
            "dtype": dtype,
            "batch_size": args.batch_size,
            **info,
        }
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record) + "\n")
        print(f"\nwrote {out}")
    if other.cores is not None and other.cores > 0.25:
        print(
            f"\nWARNING: other processes used {other.cores} of {os.cpu_count()} cores while this ran. They compete "
            "with torch's threads, which then wait for each other on every op: the per-pair loop (thousands of "
            "tiny forward passes) suffers far more than admap, so the ratio above is inflated. Rerun on an idle "
            "machine.",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
