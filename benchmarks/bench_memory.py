"""Peak memory of `admap map` on full-UltraFeedback-sized raw data, at two sizes.

Writes seeded synthetic files in raw openbmb/UltraFeedback's shape (as ``tests/ultrafeedback_raw.py``
writes it: ``source``, ``instruction``, ``models`` and four ``completions`` each with ``model``,
``principle``, ``custom_system_prompt``, ``response``, four rated ``annotations`` with rationales,
``critique``, ``overall_score`` and ``fine-grained_score``) at realistic lengths: completions of about
1,300 characters (log-normal), instructions of about 300, rationales of about 150 and critiques of
about 400; 1% of the rows repeat an earlier one exactly and one completion in 500 is empty. Then runs
``admap map FILE --scorer annotation`` in a fresh process per size and reads the process's peak
resident size from the kernel (``wait4``'s ``ru_maxrss``), so the figure is the whole command's:
interpreter, libraries, load, scoring, map, pairs, plot, viewer and writes.

The peer is the data's own size: the bytes of raw text (instructions and completions) the file holds,
which any loader that keeps the texts in memory holds at least once; ``pd.read_json(lines=True)`` of
the same file is measured beside it (``--pandas-peer``) as the plain library read of it.

``--reference`` also runs ``--scorer reference`` with a proxy file and an embedding cache filled
beforehand with seeded random unit vectors for every completion and proxy (`fill_embedding_store`): the
run reads every vector from the cache and loads no model, so its memory is a cached run's (encoding 320k
texts with the real all-MiniLM-L6-v2 takes about half an hour on a 2-core CPU) and its scores mean nothing.
``--stages`` runs the command once more per size with each stage's peak recorded (the peak is reset as
each stage starts; ``between`` is the writing and bookkeeping outside the timed stages).

    python benchmarks/bench_memory.py --reference --pandas-peer --data-dir /tmp/uf --out results/memory
    python benchmarks/bench_memory.py --quick          # 2k and 8k rows
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from admap.provenance import machine
from admap.timing.hardware import in_fresh_process, reset_peak_rss, status_bytes

GOAL_BYTES = 2 * 10**9
SIZES = (16_000, 64_000)
QUICK_SIZES = (2_000, 8_000)
ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
MODELS = ["gpt-4", "gpt-3.5-turbo", "llama-2-7b-chat", "alpaca-7b", "falcon-40b-instruct", "wizardlm-13b", "bard"]
SOURCES = ["evol_instruct", "flan_v2_niv2", "sharegpt", "ultrachat", "false_qa", "truthful_qa"]
WORDS = (
    "river stone light paper garden music winter signal market bridge engine forest number planet letter "
    "window silver orange circle memory travel coffee harbor answer method example reason step function "
    "value result because however therefore python list data model question first second important "
    "consider following provide information example specific approach using would could should the a of"
).split()
# Mean characters of each text, as raw UltraFeedback has them (roughly).
COMPLETION_CHARS, INSTRUCTION_CHARS, RATIONALE_CHARS, CRITIQUE_CHARS = 1300, 300, 150, 400


def _word_pool(rng: np.random.Generator, n_chars: int) -> str:
    """A long text of random words; every text of the file is a slice of it."""
    n_words = n_chars // 6 + 1
    return " ".join(np.asarray(WORDS)[rng.integers(len(WORDS), size=n_words)])


def write_ultrafeedback(path: str | Path, rows: int, seed: int = 0) -> dict:
    """The synthetic file; returns its size, the bytes of its instruction and completion texts, and how
    many repeats and empty completions it holds."""
    rng = np.random.default_rng(seed)
    pool = _word_pool(rng, 4_000_000)

    def text(mean_chars: int) -> str:
        length = int(min(rng.lognormal(np.log(mean_chars) - 0.18, 0.6), 8 * mean_chars))
        start = int(rng.integers(len(pool) - length))
        return pool[start : start + length]

    written, repeats, empty, text_bytes = [], 0, 0, 0
    with open(path, "w", encoding="utf-8") as handle:
        for index in range(rows):
            if written and rng.random() < 0.01:
                line, row_text_bytes = written[int(rng.integers(len(written)))]
                repeats += 1
            else:
                models = [MODELS[k] for k in rng.permutation(len(MODELS))[:4]]
                completions = []
                for k, model in enumerate(models):
                    response = f"({index}.{k}) " + text(COMPLETION_CHARS)
                    if rng.random() < 1 / 500:
                        response, empty = "", empty + 1
                    ratings = {a: str(int(rng.integers(1, 6))) for a in ASPECTS}
                    completions.append(
                        {
                            "model": model,
                            "principle": "helpfulness",
                            "custom_system_prompt": "Answer helpfully and accurately.",
                            "response": response,
                            "annotations": {
                                a: {"Rating": r, "Rationale": text(RATIONALE_CHARS)} for a, r in ratings.items()
                            },
                            "critique": text(CRITIQUE_CHARS),
                            "overall_score": float(rng.integers(2, 21)) / 2,
                            "fine-grained_score": sum(map(int, ratings.values())) / 4,
                        }
                    )
                instruction = f"Question {index}: " + text(INSTRUCTION_CHARS)
                record = {
                    "source": SOURCES[index % len(SOURCES)],
                    "instruction": instruction,
                    "models": models,
                    "completions": completions,
                }
                line = json.dumps(record) + "\n"
                row_text_bytes = len(instruction.encode()) + sum(len(c["response"].encode()) for c in completions)
                if len(written) < 1000:
                    written.append((line, row_text_bytes))
            text_bytes += row_text_bytes
            handle.write(line)
    return {
        "rows": rows,
        "seed": seed,
        "repeated_rows": repeats,
        "empty_completions": empty,
        "file_bytes": Path(path).stat().st_size,
        "text_bytes": text_bytes,
    }


def write_proxies(data_path: str | Path, proxy_path: str | Path, seed: int = 1) -> int:
    """A proxy response of about a completion's length for each distinct instruction of ``data_path``, as
    ``--proxy-file`` reads them (``{"instruction", "proxy"}`` per line); returns how many."""
    rng = np.random.default_rng(seed)
    pool = _word_pool(rng, 4_000_000)
    seen: set[str] = set()
    with open(data_path, encoding="utf-8") as rows, open(proxy_path, "w", encoding="utf-8") as proxies:
        for line in rows:
            instruction = json.loads(line)["instruction"]
            if instruction in seen:
                continue
            seen.add(instruction)
            start = int(rng.integers(len(pool) - COMPLETION_CHARS))
            proxy = f"Proxy {len(seen)}: " + pool[start : start + COMPLETION_CHARS]
            proxies.write(json.dumps({"instruction": instruction, "proxy": proxy}) + "\n")
    return len(seen)


def fill_embedding_store(
    data_path: str | Path, proxy_path: str | Path, cache_dir: str | Path, *, dimension: int = 384, chunk: int = 8192
) -> int:
    """Puts a vector for every completion and proxy text of the files into the embedding cache under
    ``cache_dir`` for all-MiniLM-L6-v2 in fp32 (what `admap map --scorer reference` reads on a CPU), so
    that the run encodes nothing. The vectors are seeded random unit vectors, not the model's: the
    scores are meaningless, the memory and the reading are the real run's. Returns the texts stored."""
    from admap.embed import text_keys
    from admap.embedding_store import EmbeddingStore, store_directory
    from admap.encoders import EmbeddingSpec
    from admap.models import DEFAULT_EMBEDDING_MODEL

    spec = EmbeddingSpec(DEFAULT_EMBEDDING_MODEL, "fp32")
    store = EmbeddingStore(store_directory(spec, str(cache_dir)), spec)
    rng = np.random.default_rng(0)

    def texts():
        with open(data_path, encoding="utf-8") as rows:
            for line in rows:
                yield from (c["response"] for c in json.loads(line)["completions"])
        with open(proxy_path, encoding="utf-8") as proxies:
            yield from (json.loads(line)["proxy"] for line in proxies)

    stored, batch = 0, []
    for text in texts():
        batch.append(text)
        if len(batch) == chunk:
            stored += _store_random(store, text_keys(batch), rng, dimension)
            batch = []
    return stored + _store_random(store, text_keys(batch), rng, dimension)


def _store_random(store, keys: np.ndarray, rng: np.random.Generator, dimension: int) -> int:
    vectors = rng.standard_normal((len(keys), dimension), dtype=np.float32)
    store.add(keys, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    return len(keys)


def peak_rss_of(command: list[str]) -> tuple[int, float]:
    """``(peak resident bytes, seconds)`` of ``command`` run as a child process (``wait4``'s rusage)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed ({process.returncode}):\n{stderr.decode()[-3000:]}")
    return usage.ru_maxrss * 1024, time.perf_counter() - start


def map_command(path: str | Path, out: str | Path, scorer: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        sys.executable,
        "-m",
        "admap.cli",
        "map",
        str(path),
        "--out",
        str(out),
        "--scorer",
        scorer,
        "--quiet",
        *extra,
    ]


def map_stage_peaks(path: str, out: str, scorer: str, extra: list[str]) -> dict:
    """`admap map` in this process with each stage's peak resident size (run it in a fresh process).

    The peak is reset as each timed stage starts and read as it ends; ``between`` is the highest peak
    outside the timed stages (the writes and the summary)."""
    from admap.cli import main as admap_main
    from admap.commands import map as map_command_module

    peaks: dict[str, int] = {"between": 0}
    step = map_command_module.Timings.step

    def measured_step(self, name: str):
        peaks["between"] = max(peaks["between"], status_bytes("VmHWM"))
        reset_peak_rss()
        with step(self, name):
            yield
        peaks[name] = status_bytes("VmHWM")
        reset_peak_rss()

    from contextlib import contextmanager

    map_command_module.Timings.step = contextmanager(measured_step)
    admap_main(["map", path, "--out", out, "--scorer", scorer, "--quiet", *extra])
    peaks["between"] = max(peaks["between"], status_bytes("VmHWM"))
    return peaks


def pandas_read_peak(path: str) -> dict:
    """The named library peer: ``pd.read_json(path, lines=True)`` in this process (run it in a fresh one)."""
    import pandas as pd

    reset_peak_rss()
    start = time.perf_counter()
    frame = pd.read_json(path, lines=True)
    return {"peak_rss_bytes": status_bytes("VmHWM"), "seconds": time.perf_counter() - start, "rows": len(frame)}


def measure(
    sizes: tuple[int, ...],
    folder: Path,
    *,
    reference: bool = False,
    stages: bool = False,
    pandas_peer: bool = False,
    data_dir: Path | None = None,
    seed: int = 0,
) -> list[dict]:
    """One row per size and scorer: the data's description, the command and its peak resident bytes."""
    rows = []
    for size in sizes:
        path = (data_dir or folder) / f"ultrafeedback-{size}-seed{seed}.jsonl"
        described = path.with_suffix(".json")
        if described.exists():  # written by an earlier run with the same size and seed
            data = json.loads(described.read_text())
        else:
            data = write_ultrafeedback(path, size, seed=seed)
            described.write_text(json.dumps(data))
        runs = {"annotation": []}
        if reference:
            proxies = path.with_suffix(".proxies.jsonl")
            if not proxies.exists():
                write_proxies(path, proxies)
            cache = folder / f"embeddings-{size}"
            stored = fill_embedding_store(path, proxies, cache)
            runs["reference"] = ["--proxy-file", str(proxies), "--embedding-cache-dir", str(cache)]
        for scorer, extra in runs.items():
            command = map_command(path, folder / f"run-{size}-{scorer}", scorer, tuple(extra))
            peak, seconds = peak_rss_of(command)
            row = {**data, "scorer": scorer, "peak_rss_bytes": peak, "seconds": seconds}
            row["command"] = shlex.join(["admap", *command[3:]])
            if scorer == "reference":
                row["texts_in_store"] = stored
            if stages:
                row["stage_peaks"] = in_fresh_process(
                    "benchmarks.bench_memory",
                    "map_stage_peaks",
                    str(path),
                    str(folder / f"stages-{size}-{scorer}"),
                    scorer,
                    extra,
                )
            if pandas_peer:
                row["pandas_read_json"] = in_fresh_process("benchmarks.bench_memory", "pandas_read_peak", str(path))
            rows.append(row)
            print(f"{size:>7,} rows, {scorer}: peak {peak / 1e9:.2f} GB in {seconds:.0f} s", flush=True)
    return rows


def goal_rows(quick: bool = False) -> list[dict]:
    """The memory goals against their targets, for a summary script: one row per goal with ``goal``,
    ``target``, ``measured``, ``peer``, ``met`` and ``command``. ``quick``: 2k and 8k rows instead
    of 16k and 64k (the ≤ 2 GB goal is then only indicative). Both scorers: annotation, and reference on an
    embedding cache filled beforehand."""
    sizes = QUICK_SIZES if quick else SIZES
    with tempfile.TemporaryDirectory() as folder:
        rows = measure(sizes, Path(folder), reference=True)
    return _goals(rows, quick=quick)


def _goals(rows: list[dict], *, quick: bool) -> list[dict]:
    """≤ 2 GB at the larger size, and sublinear growth, for each scorer measured."""
    command = "python benchmarks/bench_memory.py" + (" --quick" if quick else "")
    largest = max(row["rows"] for row in rows)
    goals = [
        {
            "goal": f"admap map --scorer {row['scorer']}, {row['rows']:,} raw UltraFeedback rows: peak RSS",
            "target": "<= 2 GB",
            "measured": f"{row['peak_rss_bytes'] / 1e9:.2f} GB",
            "peer": f"raw text {row['text_bytes'] / 1e9:.2f} GB ({row['peak_rss_bytes'] / row['text_bytes']:.2f}x it)",
            "met": row["peak_rss_bytes"] <= GOAL_BYTES,
            "command": command + (" --reference" if row["scorer"] == "reference" else ""),
        }
        for row in rows
        if row["rows"] == largest
    ]
    for scorer in dict.fromkeys(row["scorer"] for row in rows):
        small, large = (
            row for row in rows if row["scorer"] == scorer and row["rows"] in (min(r["rows"] for r in rows), largest)
        )
        growth = large["peak_rss_bytes"] / small["peak_rss_bytes"]
        rows_ratio = large["rows"] / small["rows"]
        goals.append(
            {
                "goal": f"admap map --scorer {scorer}: peak RSS growth {small['rows']:,} -> {large['rows']:,} rows",
                "target": f"sublinear (< {rows_ratio:.0f}x)",
                "measured": f"{growth:.2f}x",
                "peer": f"raw text {large['text_bytes'] / small['text_bytes']:.2f}x",
                "met": growth < rows_ratio,
                "command": command + (" --reference" if scorer == "reference" else ""),
            }
        )
    return goals


def write_results(
    out: Path, rows: list[dict], goals: list[dict], command: str, load_average: tuple[float, ...] | None = None
) -> None:
    """``memory.md`` (the tables and goals), ``memory.csv`` (a line per size and scorer) and ``memory.json``;
    ``load_average``: the machine's as the measurements ended (now when None)."""
    load_average = tuple(load_average or os.getloadavg())
    out.mkdir(parents=True, exist_ok=True)
    stage_names = list(dict.fromkeys(name for row in rows for name in row.get("stage_peaks", {})))
    with open(out / "memory.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        fields = ["rows", "scorer", "file_bytes", "text_bytes", "peak_rss_bytes", "seconds"]
        writer.writerow([*fields, "pandas_read_json_peak_bytes", *(f"stage_peak_{n}_bytes" for n in stage_names)])
        for row in rows:
            writer.writerow(
                [row[f] for f in fields]
                + [row.get("pandas_read_json", {}).get("peak_rss_bytes", "")]
                + [row.get("stage_peaks", {}).get(name, "") for name in stage_names]
            )
    info = machine("cpu")
    lines = [
        "# `admap map` peak memory on raw-UltraFeedback-sized data",
        "",
        f"Command: `{command}`  ",
        f"Machine: {json.dumps(info)}, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB  ",
        f"Load average (1, 5, 15 min) at the end: {', '.join(f'{x:.2f}' for x in load_average)}  ",
        "Data: synthetic raw UltraFeedback (`benchmarks/bench_memory.py` `write_ultrafeedback`, seed 0): 4 "
        f"completions a row of ~{COMPLETION_CHARS} characters, instructions ~{INSTRUCTION_CHARS}, four rated "
        "aspects with rationales and a critique per completion; 1% repeated rows, 1 completion in 500 empty. "
        "Peak RSS: the whole `admap map` process (`wait4`'s ru_maxrss). Peer: the raw text (instruction and "
        "completion bytes) the file holds; `pd.read_json(lines=True)` of the file (its process's peak) where "
        "measured. `reference`: `--proxy-file` of one ~1,300-character proxy per instruction and an embedding cache "
        "filled beforehand (`fill_embedding_store`) with a seeded random unit vector per completion and proxy "
        "under all-MiniLM-L6-v2 fp32, so the run reads every vector from the cache and loads no model (encoding "
        "320k texts with the real model takes about half an hour on this CPU): its memory and reading are a real "
        "cached run's, its scores are meaningless.",
        "",
        "| rows | scorer | file MB | raw text MB | peak RSS MB | peak / raw text | pd.read_json peak MB "
        "| peak / pd.read_json | seconds |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        pandas_peak = row.get("pandas_read_json", {}).get("peak_rss_bytes")
        ratio = f"{row['peak_rss_bytes'] / pandas_peak:.2f}" if pandas_peak else ""
        lines.append(
            f"| {row['rows']:,} | {row['scorer']} | {row['file_bytes'] / 1e6:.0f} | {row['text_bytes'] / 1e6:.0f} "
            f"| {row['peak_rss_bytes'] / 1e6:.0f} | {row['peak_rss_bytes'] / row['text_bytes']:.2f} "
            f"| {f'{pandas_peak / 1e6:.0f}' if pandas_peak else ''} "
            f"| {ratio} | {row['seconds']:.0f} |"
        )
    if stage_names:
        lines += [
            "",
            "Peak RSS per stage (MB; the peak reset as each stage starts, the data held before it included):",
            "",
        ]
        lines += ["| rows | scorer | " + " | ".join(stage_names) + " |", "|---:|---|" + "---:|" * len(stage_names)]
        for row in rows:
            cells = [f"{row.get('stage_peaks', {}).get(name, 0) / 1e6:.0f}" for name in stage_names]
            lines.append(f"| {row['rows']:,} | {row['scorer']} | " + " | ".join(cells) + " |")
    lines += ["", "| goal | target | measured | peer | met |", "|---|---|---|---|---|"]
    lines += [f"| {g['goal']} | {g['target']} | {g['measured']} | {g['peer']} | {g['met']} |" for g in goals]
    (out / "memory.md").write_text("\n".join(lines) + "\n")
    record = {"command": command, "machine": info, "load_average": load_average, "rows": rows, "goals": goals}
    (out / "memory.json").write_text(json.dumps(record, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SIZES} rows instead of {SIZES}")
    parser.add_argument(
        "--reference", action="store_true", help="also --scorer reference, on an embedding cache filled beforehand"
    )
    parser.add_argument("--stages", action="store_true", help="also measure each stage's peak (one more run a size)")
    parser.add_argument("--pandas-peer", action="store_true", help="also measure pd.read_json(lines=True) of each file")
    parser.add_argument("--out", help="folder for memory.md, memory.csv and memory.json")
    parser.add_argument("--data-dir", help="keep the synthetic files here and reuse them (default: a temporary folder)")
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else SIZES
    with tempfile.TemporaryDirectory() as folder:
        rows = measure(
            sizes,
            Path(folder),
            reference=args.reference,
            stages=args.stages,
            pandas_peer=args.pandas_peer,
            data_dir=Path(args.data_dir) if args.data_dir else None,
        )
    goals = _goals(rows, quick=args.quick)
    print(f"{'rows':>7} {'scorer':>10} {'raw text MB':>11} {'peak RSS MB':>11} {'peak/text':>9} {'goal MB':>8}")
    for row in rows:
        print(
            f"{row['rows']:>7,} {row['scorer']:>10} {row['text_bytes'] / 1e6:>11.0f} "
            f"{row['peak_rss_bytes'] / 1e6:>11.0f} {row['peak_rss_bytes'] / row['text_bytes']:>9.2f} "
            f"{GOAL_BYTES / 1e6:>8.0f}"
        )
        if "stage_peaks" in row:
            print("        stage peaks MB: " + ", ".join(f"{k} {v / 1e6:.0f}" for k, v in row["stage_peaks"].items()))
        if "pandas_read_json" in row:
            print(f"        pd.read_json peak MB: {row['pandas_read_json']['peak_rss_bytes'] / 1e6:.0f}")
    for goal in goals:
        print(f"{goal['goal']}: {goal['measured']} (target {goal['target']}; peer {goal['peer']}) met={goal['met']}")
    if args.out:
        command = shlex.join(["python", "benchmarks/bench_memory.py", *(sys.argv[1:] if argv is None else argv)])
        write_results(Path(args.out), rows, goals, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
