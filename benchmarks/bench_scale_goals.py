"""UltraFeedback-sized runs on one ordinary machine: every goal beside its measured figure and its peer, in one run.

    HF_HUB_OFFLINE=1 python benchmarks/bench_scale_goals.py --out results/scale_goals
    HF_HUB_OFFLINE=1 python benchmarks/bench_scale_goals.py --quick     # small sizes: the rows come out

Each benchmark owns its goals and measures them its own way (fresh processes for memory, interleaved
repeats for speed, the same prompts through both generators); this script runs them one after another and
prints one table: goal, target, measured, peer, met, and the command that measures that row alone.

- ``bench_memory``: peak RSS of `admap map` on synthetic raw UltraFeedback, 16k and 64k rows;
- ``bench_pairs``: the five pairs files of a 64k-row run, against the per-record writer;
- ``bench_generation``: offline proxy generation, tokens/s against transformers on HH-RLHF prompts;
- ``admap.timing.goals``: the scoring stage on 1,000 UltraFeedback-shaped instructions against the
  paper's per-pair loop (`admap bench --shape ultrafeedback`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import shlex
import sys
import time
from pathlib import Path

import pandas as pd

from admap.plot import markdown_table
from admap.provenance import machine_line, provenance

GOAL_MODULES = (
    "bench_memory",
    "bench_pairs",
    "bench_generation",
    "admap.timing.goals",
)
# The benchmarks beside this script are imported as a script's siblings are (run it from the repository's root,
# as every script here: `python benchmarks/bench_scale_goals.py`); the scoring goals are admap's own.
COLUMNS = ["goal", "target", "measured", "peer", "met", "command"]


def collect(modules: tuple[str, ...], *, quick: bool) -> tuple[pd.DataFrame, dict[str, float]]:
    """Every module's goal rows, in order, and the seconds each took. A benchmark that cannot run here (an
    optional engine not installed) gives one row saying why, and the others still run."""
    rows, seconds = [], {}
    for name in modules:
        start = time.perf_counter()
        try:
            rows += importlib.import_module(name).goal_rows(quick=quick)
        except Exception as error:  # any failure of one benchmark is that row's result, not the table's end
            logging.exception("%s failed", name)
            rows.append({"goal": name, "measured": f"not measured: {type(error).__name__}: {error}", "met": None})
        seconds[name] = round(time.perf_counter() - start, 1)
        logging.info("%s: %.0f s", name, seconds[name])
    return pd.DataFrame(rows, columns=COLUMNS), seconds


def shown(met) -> str:
    return "—" if met is None or met != met else ("yes" if met else "**no**")


def report(table: pd.DataFrame, record: dict) -> str:
    timings = ", ".join(f"{name}: {seconds:.0f} s" for name, seconds in record["seconds"].items())
    view = table.assign(met=table["met"].map(shown), command=table["command"].map(lambda c: f"`{c}`"))
    return "\n".join(
        [
            "# UltraFeedback-sized runs on one ordinary machine: goals and measurements",
            "",
            f"Command: `{record['command']}`  ",
            f"Machine: {machine_line(record['machine'])}; admap "
            f"{record['admap_version']} ({record.get('git_commit') or 'no commit'}); "
            f"{record['seconds_total']:.0f} s in all ({timings})",
            "",
            markdown_table(view),
            "",
            "Each row's own command measures it alone and writes its detailed table (results/memory/, results/pairs/, "
            "results/generation/, results/bench/ultrafeedback/).",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that every row comes out")
    parser.add_argument("--out", help="folder for goals.csv, goals.md and goals.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    command = shlex.join(["python", "benchmarks/bench_scale_goals.py", *(sys.argv[1:] if argv is None else argv)])
    table, seconds = collect(GOAL_MODULES, quick=args.quick)
    record = {**provenance(command), "seconds": seconds, "seconds_total": sum(seconds.values())}
    text = report(table, record)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "goals.csv", index=False)
        (out / "goals.md").write_text(text)
        (out / "goals.json").write_text(json.dumps({**record, "goals": table.to_dict("records")}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
