"""Time and peak memory of the map stage (statistics, regions, the aligned subset's pairs) at scale.

`measure_map_stage` runs in a fresh Python process so that its peak resident memory is the stage's
own and not the caller's:

    python -m admap.timing.map_stage --instructions 1000000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from admap.datamap import HIGH_MEAN, assign_regions, instruction_statistics, region_counts
from admap.select import preference_pairs, rows_of_instructions
from admap.timing.hardware import in_fresh_process, reset_peak_rss, status_bytes


def synthetic_responses(n_instructions: int, responses_per_instruction: int = 4, seed: int = 0) -> pd.DataFrame:
    """Scored, rated responses laid out as the loaders lay them out (an instruction's responses together).

    ``instruction_id`` ``i0000000``, ...; ``response_id`` ``<instruction_id>-<k>``; ``alignment_score``
    (float32, as embeddings give it): an instruction mean ~ N(0.5, 0.1) plus per-response noise whose
    spread varies by instruction; ``rating``: 1 to 5, rising with the score, float64 as the loaders'
    rating column (which holds NaN for unrated responses).
    """
    rng = np.random.default_rng(seed)
    n_responses = n_instructions * responses_per_instruction
    instruction_of_response = np.repeat(np.arange(n_instructions), responses_per_instruction)
    # The ids are built in pyarrow: millions of Python strings would be slow to make and leave their
    # memory behind in the process whose peak is measured.
    width = max(7, len(str(n_instructions - 1)))
    digits = pc.utf8_lpad(pa.array(np.arange(n_instructions)).cast(pa.string()), width, "0")
    instruction_ids = pc.binary_join_element_wise("i", digits, "").take(instruction_of_response)
    suffixes = pa.array([f"-{k}" for k in range(responses_per_instruction)])
    response_ids = pc.binary_join_element_wise(
        instruction_ids, suffixes.take(np.tile(np.arange(responses_per_instruction), n_instructions)), ""
    )
    instruction_mean = rng.normal(0.5, 0.1, n_instructions)[instruction_of_response]
    instruction_spread = rng.uniform(0.01, 0.15, n_instructions)[instruction_of_response]
    scores = instruction_mean + instruction_spread * rng.standard_normal(n_responses)
    ratings = np.clip(np.rint(3 + 10 * (scores - 0.5) + rng.normal(0, 0.7, n_responses)), 1, 5)
    return pd.DataFrame(
        {
            "instruction_id": pd.Series(instruction_ids, dtype="str"),
            "response_id": pd.Series(response_ids, dtype="str"),
            "alignment_score": scores.astype(np.float32),
            "rating": ratings,
        }
    )


def map_stage(responses: pd.DataFrame, instruction_ids, *, seed: int) -> dict:
    """What `admap map` does after scoring for the statistics, regions and aligned subset: per-instruction
    statistics, the paper's regions, the ``high_mean`` instructions and the ``annotated`` pairs of their
    responses (only those: selection needs no others). Returns the counts."""
    stats = instruction_statistics(
        responses["instruction_id"], responses["alignment_score"].to_numpy(), all_instruction_ids=instruction_ids
    )
    regions, _ = assign_regions(stats, method="paper")
    selected = stats["instruction_id"][regions.to_numpy() == HIGH_MEAN]
    pairs = preference_pairs(rows_of_instructions(responses, selected), rule="annotated", seed=seed)
    return {"regions": region_counts(regions), "selected": len(selected), "pairs": len(pairs)}


def measure_in_this_process(n_instructions: int, responses_per_instruction: int, seed: int) -> dict:
    """`measure_map_stage` in this process (call it in a fresh one)."""
    responses = synthetic_responses(n_instructions, responses_per_instruction, seed)
    instruction_ids = responses["instruction_id"].drop_duplicates().reset_index(drop=True)
    gc.collect()
    pa.default_memory_pool().release_unused()  # what generating the data freed, so the baseline is the data
    data_rss = status_bytes("VmRSS")
    peak_is_stage_only = reset_peak_rss()
    start = time.perf_counter()
    counts = map_stage(responses, instruction_ids, seed=seed)
    seconds = time.perf_counter() - start
    return {
        "instructions": n_instructions,
        "responses": len(responses),
        "seconds": seconds,
        "peak_rss_bytes": status_bytes("VmHWM"),
        "peak_rss_covers": "map_stage" if peak_is_stage_only else "whole process",
        "data_rss_bytes": data_rss,
        # Other processes' work slows the stage down: the time is only comparable at a low load.
        "load_average": os.getloadavg()[0],
        **counts,
    }


def measure_map_stage(n_instructions: int = 1_000_000, responses_per_instruction: int = 4, seed: int = 0) -> dict:
    """Wall time and peak resident memory of `map_stage` on `synthetic_responses`, in a fresh process.

    ``seconds``: `map_stage` alone (time.perf_counter), data generation excluded. ``data_rss_bytes``:
    the process's resident size once the data is made (interpreter, numpy, pandas, pyarrow, admap and
    the responses table). ``peak_rss_bytes``: the process's peak resident size (VmHWM) while
    `map_stage` runs, the data included: the peak is reset to the current resident size just before
    it starts (``peak_rss_covers`` is ``"map_stage"``); where Linux refuses the reset it is the peak of
    the whole process, data generation included (``"whole process"``). ``load_average``: the
    machine's one-minute load average when the stage ends.
    """
    return in_fresh_process(
        "admap.timing.map_stage", "measure_in_this_process", n_instructions, responses_per_instruction, seed
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instructions", type=int, default=1_000_000)
    parser.add_argument("--responses-per-instruction", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(measure_map_stage(args.instructions, args.responses_per_instruction, args.seed), indent=2))


if __name__ == "__main__":
    main()
