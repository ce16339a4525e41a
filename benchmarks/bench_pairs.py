"""The five pairs files of `admap map` (pairs/high_mean, low_mean, high_variance, random, full): admap's
columnar writer against the per-record writer, on one synthetic UltraFeedback run.

Writes a raw UltraFeedback file (``--rows`` rows of 4 rated completions of about 100 words in paragraphs,
with quotes, backslashes and non-ASCII characters as real answers have them), maps it with ``admap map
--scorer annotation`` (no model), then, from the run's own tables, pairs and subsets, times writing the
five files (durable: staging file, then rename) into a fresh folder with each writer, the two
interleaved over ``--repeats``:

- admap: `write_subsets_pairs` (`trl_fragments` encodes each prompt, text and id once; `trl_jsonl` joins
  the lines in pyarrow, a chunk at a time);
- the peer, the straightforward writer as a TRL user writes it (and as admap did before): `trl_records`'s
  dicts, ``json.dumps(record, ensure_ascii=False)`` per record, the lines written to the file; timed by
  part (subset rows, records, JSON, write).

Both writers' files are compared byte for byte. Also times how a TRL user reads one file, high_mean:
``datasets.load_dataset("json")`` against ``("parquet")`` of the same records (into fresh caches), which
decides whether a Parquet copy beside the JSONL would serve them. Prints medians, the ratio and the goal
(the five files of 64k rows in at most 10 s); ``--out-dir`` writes ``bench_pairs.md`` and ``.csv``.

    python benchmarks/bench_pairs.py --rows 64000 4000 --out-dir results/pairs
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from admap.provenance import machine, machine_line

GOAL_ROWS = 64_000
GOAL_SECONDS = 10.0
QUICK_ROWS = 4_000
WORDS = (
    "river stone light paper garden music winter signal market bridge engine forest number planet letter "
    "window silver orange circle memory travel coffee harbor answer method example reason step"
).split()
# What real answers carry besides words, each a JSON escape or a character of several UTF-8 bytes.
ODDITIES = ['"quoted"', "C:\\path", "naïve", "café", "→", "中文", "🙂", "tab\there", "50%"]
ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")


def answer(rng: random.Random, index: int, k: int) -> str:
    """About 100 words in two to four paragraphs, a few of them `ODDITIES`."""
    paragraphs = [
        " ".join(rng.choice(ODDITIES) if rng.random() < 0.03 else rng.choice(WORDS) for _ in range(rng.randint(20, 40)))
        for _ in range(rng.randint(2, 4))
    ]
    return "\n\n".join(paragraphs) + f" ({index}.{k})"


def write_ultrafeedback(path: Path, rows: int, seed: int = 0) -> dict:
    """The synthetic raw file; returns its rows and size."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for index in range(rows):
            completions = []
            for k in range(4):
                ratings = {aspect: str(rng.randint(1, 5)) for aspect in ASPECTS}
                completions.append(
                    {
                        "model": f"model-{k}",
                        "principle": "helpfulness",
                        "response": answer(rng, index, k),
                        "annotations": {a: {"Rating": r, "Rationale": "why"} for a, r in ratings.items()},
                        "fine-grained_score": sum(map(int, ratings.values())) / 4,
                        "overall_score": rng.randint(2, 20) / 2,
                    }
                )
            instruction = f"Question {index}: " + " ".join(rng.choice(WORDS) for _ in range(20))
            record = {"source": "synthetic", "instruction": instruction, "completions": completions}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return {"rows": rows, "bytes": path.stat().st_size}


def mapped_run(folder: Path, rows: int) -> dict:
    """``admap map`` of a fresh synthetic file into ``folder/run``; returns the data's facts and the run's
    own select step (pairs and the five files) in seconds."""
    from admap.cli import main

    raw = folder / "ultrafeedback.jsonl"
    data = write_ultrafeedback(raw, rows)
    run = folder / "run"
    argv = ["map", str(raw), "--scorer", "annotation", "--generator", "none", "--out", str(run), "--quiet"]
    assert main([*argv, "--no-plot", "--no-view"]) == 0, "admap map failed"
    summary = json.loads((run / "summary.json").read_text())
    return {**data, "map_select_s": summary["timings_s"]["select"]}


def subsets_of(run: Path):
    """The run's tables, its pairs and the five subsets' instruction ids, as `admap map` makes them."""
    from admap.commands.map import MAP_STRATEGIES, map_subset_ids
    from admap.select import preference_pairs
    from admap_baselines import SelectionInputs

    responses, map_table = pd.read_parquet(run / "scores.parquet"), pd.read_parquet(run / "map.parquet")
    pairs = preference_pairs(responses, rule="annotated", seed=42)
    inputs = SelectionInputs(map_table, responses, pairs, "annotation")
    return pairs, map_table, responses, {name: map_subset_ids(inputs, name, seed=42) for name in MAP_STRATEGIES}


def time_admap(pairs, map_table, responses, subsets, folder: Path) -> dict:
    from admap.commands.select import write_subsets_pairs

    start, cpu_start = time.perf_counter(), time.process_time()
    counts = write_subsets_pairs(pairs, map_table, responses, subsets, folder=folder)
    return {
        "seconds": time.perf_counter() - start,
        # This process's CPU time: what other work on a shared machine adds to the wall time is left out.
        "cpu_seconds": time.process_time() - cpu_start,
        "pairs": sum(c["pairs"] for c in counts.values()),
    }


def time_per_record(pairs, map_table, responses, subsets, folder: Path) -> dict:
    """The peer, by part: json.dumps per record of `trl_records`'s dicts, then the lines written."""
    from admap.durable import publish
    from admap.select import rows_of_instructions, trl_records

    parts = dict.fromkeys(("subset rows", "trl_records", "json.dumps", "write"), 0.0)
    for name, ids in subsets.items():
        start = time.perf_counter()
        subset = rows_of_instructions(pairs, ids)
        parts["subset rows"] += time.perf_counter() - start
        start = time.perf_counter()
        records = trl_records(subset, map_table, responses)
        parts["trl_records"] += time.perf_counter() - start
        start = time.perf_counter()
        lines = [json.dumps(record, ensure_ascii=False) + "\n" for record in records]
        parts["json.dumps"] += time.perf_counter() - start

        def write(staging: Path, lines=lines) -> None:
            with staging.open("w", encoding="utf-8") as handle:
                handle.writelines(lines)

        start = time.perf_counter()
        publish(folder / f"{name}.jsonl", write)
        parts["write"] += time.perf_counter() - start
    return {"seconds": sum(parts.values()), "parts": parts}


def same_files(first: Path, second: Path) -> bool:
    names = sorted(path.name for path in first.glob("*.jsonl"))
    return names == sorted(path.name for path in second.glob("*.jsonl")) and all(
        (first / name).read_bytes() == (second / name).read_bytes() for name in names
    )


def load_seconds(pairs_file: Path, folder: Path) -> dict:
    """``datasets.load_dataset`` of the file as JSON and of the same records as Parquet, fresh caches, and
    what writing the Parquet copy (pyarrow's defaults) costs."""
    import datasets
    import pyarrow.parquet as pq

    datasets.disable_progress_bars()
    parquet = folder / "pairs.parquet"
    table = datasets.load_dataset("json", data_files=str(pairs_file), split="train").data.table
    start = time.perf_counter()
    pq.write_table(table, parquet)
    seconds = {"parquet_write": time.perf_counter() - start}
    for kind, path in (("json", pairs_file), ("parquet", parquet)):
        with tempfile.TemporaryDirectory(dir=folder) as cache:
            start = time.perf_counter()
            datasets.load_dataset(kind, data_files=str(path), split="train", cache_dir=cache)
            seconds[kind] = time.perf_counter() - start
    return {**seconds, "json_mb": pairs_file.stat().st_size / 1e6, "parquet_mb": parquet.stat().st_size / 1e6}


def measure(rows: int, repeats: int) -> dict:
    """Everything above for one size; the figures are medians over ``repeats``."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        data = mapped_run(folder, rows)
        tables = subsets_of(folder / "run")
        runs = {"admap": [], "per_record": []}
        for repeat in range(repeats):
            admap_out, peer_out = folder / f"admap-{repeat}", folder / f"peer-{repeat}"
            runs["admap"].append(time_admap(*tables, admap_out))
            runs["per_record"].append(time_per_record(*tables, peer_out))
            identical = same_files(admap_out, peer_out)
            assert identical, f"the writers' files differ at {rows} rows"
            pairs_mb = sum(path.stat().st_size for path in admap_out.glob("*.jsonl")) / 1e6
            for out in (admap_out, peer_out):
                for path in out.glob("*.jsonl"):
                    path.unlink()
        reading = load_seconds(folder / "run" / "pairs" / "high_mean.jsonl", folder)
    admap_s = statistics.median(r["seconds"] for r in runs["admap"])
    admap_cpu_s = statistics.median(r["cpu_seconds"] for r in runs["admap"])
    peer_s = statistics.median(r["seconds"] for r in runs["per_record"])
    parts = {
        key: statistics.median(r["parts"][key] for r in runs["per_record"]) for key in runs["per_record"][0]["parts"]
    }
    return {
        "rows": rows,
        "data": data,
        "pairs": runs["admap"][0]["pairs"],
        "pairs_mb": pairs_mb,
        "admap_s": admap_s,
        "admap_cpu_s": admap_cpu_s,
        "per_record_s": peer_s,
        "per_record_parts_s": parts,
        "speedup": peer_s / admap_s,
        "identical_bytes": identical,
        "high_mean_load_s": reading,
        "runs": runs,
    }


def goal_row(result: dict, command: str) -> dict:
    """The goal at 64k rows: at most 10 s. At other sizes, a check that admap beats the peer."""
    at_goal_size = result["rows"] == GOAL_ROWS
    return {
        "goal": f"the five pairs files of a {result['rows']:,}-row UltraFeedback run ({result['pairs']:,} pairs)",
        "target": f"<= {GOAL_SECONDS:g} s" if at_goal_size else "faster than the per-record peer",
        "measured": f"{result['admap_s']:.2f} s",
        "peer": f"per-record writer (a dict and a json.dumps per pair) {result['per_record_s']:.2f} s",
        "met": bool(result["admap_s"] <= GOAL_SECONDS if at_goal_size else result["admap_s"] < result["per_record_s"]),
        "command": command,
    }


def goal_rows(quick: bool = False) -> list[dict]:
    """The goal as rows for a summary: goal, target, measured, peer, met, command. ``quick`` measures
    `QUICK_ROWS` rows once (admap against the peer) instead of the goal's 64k rows three times."""
    rows, repeats = (QUICK_ROWS, 1) if quick else (GOAL_ROWS, 3)
    return [goal_row(measure(rows, repeats), f"python benchmarks/bench_pairs.py --rows {rows} --repeats {repeats}")]


def markdown(results: list[dict], goals: list[dict], record: dict) -> str:
    lines = [
        "# The five pairs files of `admap map`: columnar writer against the per-record writer",
        "",
        f"Command: `{record['command']}`  ",
        f"Machine: {record['machine_line']}, shared; load average (1, 5, 15 min) at the start "
        f"{' '.join(record['load_average'])}, at the end {' '.join(record['load_average_after'])}  ",
        "Data: synthetic raw UltraFeedback (4 rated completions of ~100 words in paragraphs, with quotes, "
        "backslashes, tabs and non-ASCII characters), mapped by `admap map --scorer annotation`; the five files "
        "written from the run's tables (medians; both writers' files byte-identical in every repeat).",
        "",
        "| rows | pairs | MB written | admap (s) | admap CPU (s) | per-record peer (s) | speedup | goal | met |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for result, goal in zip(results, goals):
        lines.append(
            f"| {result['rows']:,} | {result['pairs']:,} | {result['pairs_mb']:,.0f} | {result['admap_s']:.2f} | "
            f"{result['admap_cpu_s']:.2f} | {result['per_record_s']:.2f} | {result['speedup']:.1f}x | "
            f"{goal['target']} | {'yes' if goal['met'] else 'no'} |"
        )
    lines += ["", "The peer by part (s):", "", "| rows | " + " | ".join(results[0]["per_record_parts_s"]) + " |"]
    lines.append("|---:|" + "---:|" * len(results[0]["per_record_parts_s"]))
    for result in results:
        lines.append(
            f"| {result['rows']:,} | " + " | ".join(f"{v:.2f}" for v in result["per_record_parts_s"].values()) + " |"
        )
    lines += [
        "",
        "Reading high_mean with `datasets.load_dataset` into a fresh cache, JSONL against Parquet of the same records:",
        "",
        "| rows | json (s) | parquet (s) | writing the Parquet copy (s) | JSONL MB | Parquet MB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        reading = result["high_mean_load_s"]
        lines.append(
            f"| {result['rows']:,} | {reading['json']:.2f} | {reading['parquet']:.2f} | "
            f"{reading['parquet_write']:.2f} | {reading['json_mb']:.0f} | {reading['parquet_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[GOAL_ROWS, QUICK_ROWS], help="UltraFeedback rows")
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each writer, interleaved")
    parser.add_argument("--out-dir", help="write bench_pairs.md and bench_pairs.csv here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    command = shlex.join(["python", "benchmarks/bench_pairs.py", *(sys.argv[1:] if argv is None else argv)])
    load_average = Path("/proc/loadavg").read_text().split()[:3]
    results = [measure(rows, args.repeats) for rows in args.rows]
    load_average_after = Path("/proc/loadavg").read_text().split()[:3]
    facts = machine("cpu")
    record = {
        "command": command,
        "machine": facts,
        "machine_line": machine_line(facts),
        "load_average": load_average,
        "load_average_after": load_average_after,
    }
    goals = [goal_row(result, command) for result in results]
    for result, goal in zip(results, goals):
        print(
            f"{result['rows']:,} rows, {result['pairs']:,} pairs, {result['pairs_mb']:,.0f} MB: admap "
            f"{result['admap_s']:.2f} s, per-record {result['per_record_s']:.2f} s ({result['speedup']:.1f}x); "
            f"goal {goal['target']}: {'met' if goal['met'] else 'not met'}"
        )
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_pairs.md").write_text(markdown(results, goals, record))
        (out / "bench_pairs.json").write_text(json.dumps({**record, "results": results}, indent=2) + "\n")
        with (out / "bench_pairs.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(goals[0]))
            writer.writeheader()
            writer.writerows(goals)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
