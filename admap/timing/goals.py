"""The UltraFeedback-shaped scoring goals as rows, for a summary script to import:

    from admap.timing.goals import goal_rows
    rows = goal_rows(quick=True)   # minutes; quick=False runs the published measurement

Each call runs `admap bench --shape ultrafeedback` (the scoring stage only: no map stage, no memory
measurement) in a temporary folder and reads its ``bench.json``.
"""

from __future__ import annotations

import json
import shlex
import tempfile
from pathlib import Path

from admap.commands.bench import PAPER_LOOP, targets

HH_RLHF_TEST_FILE = "tests/data/hh_rlhf/harmless-base-test.jsonl.gz"
# The published measurement (results/bench/ultrafeedback/) and a smoke-sized one: instructions built,
# instructions the paper's loop is timed on, rounds.
FULL_SIZE = (1000, 100, 1)
QUICK_SIZE = (24, 6, 1)


def bench_argv(*, quick: bool = False, dataset: str = HH_RLHF_TEST_FILE) -> list[str]:
    """``admap bench`` arguments of the UltraFeedback-shaped scoring measurement, without ``--out``;
    ``dataset`` as the command shows it (relative to the repository's root), or as a path to run."""
    instructions, loop_instructions, repeats = QUICK_SIZE if quick else FULL_SIZE
    return [
        *("bench", dataset, "--skip-invalid", "--shape", "ultrafeedback"),
        *("--instructions", str(instructions), "--paper-loop-instructions", str(loop_instructions)),
        *("--repeats", str(repeats), "--map-instructions", "0", "--memory-instructions", "0"),
    ]


def goal_rows(quick: bool = False) -> list[dict]:
    """One row per goal: ``goal``, ``target``, ``measured`` (strings), ``peer`` (what it is measured
    against), ``met`` (a bool; None for a figure reported without a target) and ``command`` (to rerun it).
    ``quick`` measures 24 instructions instead of 1,000: a check that the rows come out, not the figures."""
    from admap.cli import main

    command = shlex.join(["admap", *bench_argv(quick=quick)])
    argv = bench_argv(quick=quick, dataset=str(Path(__file__).resolve().parents[2] / HH_RLHF_TEST_FILE))
    with tempfile.TemporaryDirectory(prefix="admap-goals-") as out:
        status = main([*argv, "--out", out, "--quiet"])
        if status != 0:
            raise RuntimeError(f"admap bench failed ({status}): {command}")
        return rows_of(json.loads((Path(out) / "bench.json").read_text()), command=command)


def rows_of(record: dict, *, command: str) -> list[dict]:
    """The goal rows of an UltraFeedback-shaped ``bench.json`` record."""
    bounds = {name: bound for name, _, bound in targets(record["shape"])}
    met = record["targets_met"]
    size = f"{record['instructions']:,} UltraFeedback-shaped instructions × 4"
    precision = record["precision"]
    return [
        {
            "goal": f"admap's scoring stage ({precision}) vs {PAPER_LOOP}, {size}",
            "target": f"≥ {bounds['speedup_vs_paper_loop']:g}×",
            "measured": f"{record['speedup_vs_paper_loop']:.2f}×",
            "peer": f"{PAPER_LOOP} (fp32, [proxy, response] per call, timed on "
            f"{record['paper_loop_responses']:,} responses, scaled by tokens)",
            "met": met["speedup_vs_paper_loop"],
            "command": command,
        },
        {
            "goal": f"the highest ratio to {PAPER_LOOP} this machine allows, {size}",
            "target": "reported",
            "measured": f"{record['paper_loop_ceiling']:.2f}×",
            "peer": f"the precision check's fp32 pass with the model's loading as measured "
            f"({record['check_fp32_seconds']:.1f} s), every other FLOP at the measured {precision} matmul peak",
            "met": None,
            "command": command,
        },
        {
            "goal": f"Spearman of admap's scores ({precision}) to fp32, {size}",
            "target": f"≥ {bounds['spearman_vs_fp32']:g}",
            "measured": f"{record['spearman_vs_fp32']:.6f}",
            "peer": "plain sentence-transformers encode in fp32",
            "met": met["spearman_vs_fp32"],
            "command": command,
        },
        {
            "goal": f"admap's scoring stage, share of the measured {precision} matmul peak, {size}",
            "target": "reported",
            "measured": f"{record['admap_fraction_of_matmul_peak']:.1%} of "
            f"{record['matmul_flops'][precision] / 1e9:,.0f} GFLOP/s",
            "peer": f"torch.matmul of 2048² {precision} matrices on this machine",
            "met": None,
            "command": command,
        },
    ]
