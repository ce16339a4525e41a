"""Loading raw UltraFeedback: admap's loader against the authors' (``datasets.load_dataset("json")``).

Writes a synthetic file in openbmb/UltraFeedback's format (``--rows`` rows of 4 completions of about
100 words, every aspect rated, 1% of the rows repeated exactly, one completion in 500 empty), then
reads it in fresh processes, the two loaders interleaved over ``--repeats``: admap's
`load_preferences` (parse, validate, group rows into instructions, find repeats, build the tables)
and the peer, `datasets.load_dataset("json", data_files=...)` into a new cache folder, which is how
the paper's code reads its data (it then walks the rows in Python, not counted here). Each
measurement gives seconds and the peak resident memory the load adds to a process that has already
imported its libraries. Prints the medians and their ratios; ``--out`` writes them as JSON.

    python benchmarks/bench_load.py --rows 64000 --out results/load/bench_load.json
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from admap.provenance import machine
from admap.timing.hardware import in_fresh_process, reset_peak_rss, status_bytes

WORDS = (
    "river stone light paper garden music winter signal market bridge engine forest number planet letter "
    "window silver orange circle memory travel coffee harbor answer method example reason step"
).split()
ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")


def write_ultrafeedback(path: str, rows: int, seed: int = 0) -> dict:
    """The synthetic file; returns its size and how many repeats and empty completions it holds."""
    rng = random.Random(seed)
    written, repeats, empty = [], 0, 0
    with open(path, "w", encoding="utf-8") as handle:
        for index in range(rows):
            if written and rng.random() < 0.01:
                line, repeats = rng.choice(written), repeats + 1
            else:
                completions = []
                for k in range(4):
                    text = " ".join(rng.choice(WORDS) for _ in range(100)) + f" ({index}.{k})"
                    if rng.random() < 1 / 500:
                        text, empty = "", empty + 1
                    ratings = {a: str(rng.randint(1, 5)) for a in ASPECTS}
                    completions.append(
                        {
                            "model": f"model-{k}",
                            "principle": "helpfulness",
                            "response": text,
                            "annotations": {a: {"Rating": r, "Rationale": "why"} for a, r in ratings.items()},
                            "fine-grained_score": sum(map(int, ratings.values())) / 4,
                            "overall_score": rng.randint(2, 20) / 2,
                        }
                    )
                instruction = f"Question {index}: " + " ".join(rng.choice(WORDS) for _ in range(20))
                record = {"source": "synthetic", "instruction": instruction, "completions": completions}
                line = json.dumps(record) + "\n"
                if len(written) < 1000:
                    written.append(line)
            handle.write(line)
    return {"rows": rows, "repeated_rows": repeats, "empty_completions": empty, "bytes": Path(path).stat().st_size}


def load_with_admap(path: str) -> dict:
    """One measurement in this process (run it in a fresh one)."""
    from admap.load import load_preferences

    gc.collect()
    before = status_bytes("VmRSS")
    reset_peak_rss()
    start = time.perf_counter()
    data = load_preferences(path, progress=False)
    seconds = time.perf_counter() - start
    counts = data.counts()
    return {
        "seconds": seconds,
        "peak_added_bytes": status_bytes("VmHWM") - before,
        "instructions": counts["instructions"],
        "rows_duplicate": counts["rows_duplicate"],
        "responses_empty": counts["responses_empty"],
    }


def load_with_datasets(path: str) -> dict:
    """The peer, the same way: ``datasets.load_dataset("json")`` into a fresh cache folder."""
    import datasets

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as cache:
        gc.collect()
        before = status_bytes("VmRSS")
        reset_peak_rss()
        start = time.perf_counter()
        rows = len(datasets.load_dataset("json", data_files=path, split="train", cache_dir=cache))
        seconds = time.perf_counter() - start
        peak = status_bytes("VmHWM") - before
    return {"seconds": seconds, "peak_added_bytes": peak, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=64_000, help="UltraFeedback rows (the real file: 63,967)")
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each loader, interleaved")
    parser.add_argument("--out", help="write the medians and every measurement as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "ultrafeedback.jsonl")
        data = write_ultrafeedback(path, args.rows)
        runs = {"admap": [], "datasets": []}
        for _ in range(args.repeats):
            runs["admap"].append(in_fresh_process("benchmarks.bench_load", "load_with_admap", path))
            runs["datasets"].append(in_fresh_process("benchmarks.bench_load", "load_with_datasets", path))
    median = {
        name: {key: statistics.median(r[key] for r in results) for key in ("seconds", "peak_added_bytes")}
        for name, results in runs.items()
    }
    ratios = {key: median["admap"][key] / median["datasets"][key] for key in ("seconds", "peak_added_bytes")}
    record = {
        "command": shlex.join(["python", "benchmarks/bench_load.py", *(sys.argv[1:] if argv is None else argv)]),
        "data": data,
        "machine": machine("cpu"),
        "median": median,
        "admap_over_datasets": ratios,
        "runs": runs,
    }
    print(f"{data['rows']:,} UltraFeedback rows, {data['bytes'] / 1e6:.0f} MB, {args.repeats} runs each (medians)")
    print(f"{'loader':<10} {'seconds':>8} {'peak MB':>8}")
    for name, values in median.items():
        print(f"{name:<10} {values['seconds']:>8.2f} {values['peak_added_bytes'] / 1e6:>8.0f}")
    print(f"admap / datasets: {ratios['seconds']:.2f}x time, {ratios['peak_added_bytes']:.2f}x peak memory")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
