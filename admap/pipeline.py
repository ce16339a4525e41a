"""The `admap map` and `admap select` commands: configuration, and the I/O around the pure stages.

A run directory holds ``scores.parquet`` (per response), ``map.parquet`` (per instruction,
with region), ``proxies.jsonl``, ``pairs/<subset>.jsonl`` (TRL conversational format),
``preferences.parquet`` (the dataset's own pairs, for pair datasets), ``map.png`` and
``summary.json`` (counts, thresholds, models, versions, seed, timings, and every skipped
row with its reason).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import platform
import shlex
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from admap import __version__
from admap.config import option, to_dict
from admap.datamap import (
    HIGH_MEAN,
    REGION_METHODS,
    REGIONS,
    RegionThresholds,
    assign_regions,
    instruction_statistics,
    region_counts,
)
from admap.generate import GENERATORS, PROXY_SYSTEM_PROMPT
from admap.load import LoadOptions, load_preferences
from admap.models import DEFAULT_EMBEDDING_MODEL, DEFAULT_GENERATOR_MODEL
from admap.plot import plot_map
from admap.proxy import attach_proxies
from admap.score import SCORERS
from admap.select import PAIR_RULES, preference_pairs, random_instruction_ids, trl_records

logger = logging.getLogger(__name__)

DEMO_DATASET = "demo"
SUBSETS = (*REGIONS, "random", "full")


def demo_dataset_path() -> str:
    return str(resources.files("admap") / "demo" / "demo_preferences.jsonl")


@dataclass
class MapConfig:
    """`admap map`: score every response, map the instructions, split the regions, write the pairs."""

    dataset: str = option(
        DEMO_DATASET,
        "a file (.jsonl, .json, .parquet, .csv, optionally .gz) or a Hugging Face dataset id; "
        "'demo' maps the small demo set that ships with admap",
        positional=True,
    )
    out: str | None = option(None, "run directory (default: runs/<dataset name>)")
    format: str = option("auto", "input format: auto, ultrafeedback, preference, alpaca, hh_rlhf, columns")
    split: str | None = option(None, "dataset split for hub datasets (None reads 'train')")
    limit: int | None = option(None, "read only the first N records")
    skip_invalid: bool = option(False, "list bad rows in summary.json and go on, instead of stopping at the first")
    load: LoadOptions = option(LoadOptions(), "how to read the dataset's fields")
    proxy_file: str | None = option(None, "side file of proxy responses keyed by instruction_id or instruction text")
    generator: str = option("transformers", "generator for missing proxies ('none' to leave them unscored)")
    generator_model: str = option(DEFAULT_GENERATOR_MODEL, "model that writes proxy responses")
    proxy_max_new_tokens: int = option(256, "longest proxy response, in tokens")
    proxy_batch_size: int = option(64, "prompts per generation batch (larger batches are faster, also on CPU)")
    generator_dtype: str = option("auto", "auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16")
    proxy_system_prompt: str = option(PROXY_SYSTEM_PROMPT, "system prompt for proxy generation")
    scorer: str = option("reference", "alignment scorer")
    embedding_model: str = option(DEFAULT_EMBEDDING_MODEL, "sentence-transformers model (the paper: all-mpnet-base-v2)")
    embed_batch_size: int | None = option(None, "texts per embedding batch (default: 16 on CPU, 128 on CUDA)")
    device: str = option("auto", "auto, cpu, cuda, cuda:1, ...")
    min_responses: int = option(2, "scored responses an instruction needs to be mapped")
    region_method: Literal["paper", "quantile", "absolute"] = option("paper", "how regions are split")
    variance_quantile: float = option(2 / 3, "region_method quantile: variance quantile above which is high_variance")
    mean_quantile: float = option(0.5, "region_method quantile: mean quantile (of the rest) splitting high/low mean")
    variance_threshold: float | None = option(None, "region_method absolute: variance above which is high_variance")
    mean_threshold: float | None = option(None, "region_method absolute: mean at or above which is high_mean")
    pair_rule: Literal["annotated", "best_vs_random", "alignment_score"] = option("annotated", "DPO pair rule")
    seed: int = option(42, "seed for the random subset and sampled pairs")
    plot: bool = option(True, "write map.png")

    def __post_init__(self) -> None:
        if self.region_method not in REGION_METHODS:
            raise ValueError(f"region_method must be one of {REGION_METHODS}, got {self.region_method!r}")
        if self.pair_rule not in PAIR_RULES:
            raise ValueError(f"pair_rule must be one of {PAIR_RULES}, got {self.pair_rule!r}")
        if self.min_responses < 1:
            raise ValueError(f"min_responses must be >= 1, got {self.min_responses}")
        if self.region_method == "absolute" and (self.variance_threshold is None or self.mean_threshold is None):
            raise ValueError("region_method 'absolute' needs variance_threshold and mean_threshold")
        if self.scorer not in SCORERS:
            SCORERS.get(self.scorer)  # raises with suggestions
        if self.generator != "none" and self.generator not in GENERATORS:
            GENERATORS.get(self.generator)

    @property
    def dataset_path(self) -> str:
        return demo_dataset_path() if self.dataset == DEMO_DATASET else self.dataset

    @property
    def dataset_label(self) -> str:
        return "admap demo set" if self.dataset == DEMO_DATASET else Path(self.dataset).name

    @property
    def run_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        stem = Path(self.dataset).name.split(".")[0] if self.dataset != DEMO_DATASET else DEMO_DATASET
        return Path("runs") / stem.replace("/", "_")


@dataclass
class SelectConfig:
    """`admap select`: one subset's DPO pairs from a finished map run."""

    run_dir: str = option(help="a run directory written by `admap map`", positional=True)
    subset: Literal["high_mean", "low_mean", "high_variance", "random", "full"] = option(
        HIGH_MEAN, "which instructions: a region, a same-size random draw (of high_mean's size), or all"
    )
    pair_rule: Literal["annotated", "best_vs_random", "alignment_score"] = option("annotated", "DPO pair rule")
    seed: int = option(42, "seed for the random subset and sampled pairs")
    out: str | None = option(None, "output JSONL (default: RUN_DIR/pairs/<subset>-<pair_rule>-seed<seed>.jsonl)")

    def __post_init__(self) -> None:
        if self.subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {self.subset!r}")
        if self.pair_rule not in PAIR_RULES:
            raise ValueError(f"pair_rule must be one of {PAIR_RULES}, got {self.pair_rule!r}")


class Timings(dict):
    @contextmanager
    def step(self, name: str):
        start = time.perf_counter()
        yield
        self[name] = round(time.perf_counter() - start, 3)


def package_versions() -> dict[str, str]:
    versions = {"admap": __version__, "python": platform.python_version()}
    for package in ("torch", "transformers", "sentence-transformers", "faiss-cpu", "faiss-gpu", "numpy", "pandas"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def subset_instruction_ids(map_table: pd.DataFrame, subset: str, *, seed: int) -> np.ndarray:
    """Instruction ids of a region, of a random draw the size of ``high_mean``, or of all mapped ones."""
    mapped = map_table[map_table["is_mapped"]]
    if subset in REGIONS:
        return mapped.loc[mapped["region"] == subset, "instruction_id"].to_numpy()
    if subset == "random":
        size = int((mapped["region"] == HIGH_MEAN).sum())
        return random_instruction_ids(mapped["instruction_id"].to_numpy(), size, seed=seed)
    if subset == "full":
        return mapped["instruction_id"].to_numpy()
    raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")


def write_jsonl(records: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _unmapped_reason(row) -> str:
    if row.n_responses == 0:
        return "no responses left after validation"
    if row.n_scored < row.n_responses:
        return f"{row.n_scored} of {row.n_responses} responses scored (no proxy response)"
    return f"only {row.n_scored} scored response(s)"


def _proxy_generator(config: MapConfig, *, progress: bool):
    if config.generator == "none":
        return None
    return GENERATORS.get(config.generator)(
        model=config.generator_model,
        max_new_tokens=config.proxy_max_new_tokens,
        batch_size=config.proxy_batch_size,
        seed=config.seed,
        device=config.device,
        dtype=config.generator_dtype,
        progress=progress,
    )


def build_map_table(
    instructions: pd.DataFrame, responses: pd.DataFrame, config: MapConfig
) -> tuple[pd.DataFrame, RegionThresholds]:
    """One row per instruction: its text and proxy, score statistics, region, mean rating, and
    why it is unmapped when it is."""
    stats = instruction_statistics(
        responses["instruction_id"].to_numpy(),
        responses["alignment_score"].to_numpy(),
        all_instruction_ids=instructions["instruction_id"].to_numpy(),
        min_responses=config.min_responses,
    )
    regions, thresholds = assign_regions(
        stats,
        method=config.region_method,
        variance_quantile=config.variance_quantile,
        mean_quantile=config.mean_quantile,
        variance_threshold=config.variance_threshold,
        mean_threshold=config.mean_threshold,
    )
    map_table = instructions.merge(stats, on="instruction_id", how="left")
    map_table["region"] = regions.to_numpy()
    map_table["mean_rating"] = map_table["instruction_id"].map(responses.groupby("instruction_id")["rating"].mean())
    map_table["unmapped_reason"] = [None if row.is_mapped else _unmapped_reason(row) for row in map_table.itertuples()]
    return map_table, thresholds


def write_subset_pairs(
    pairs: pd.DataFrame, map_table: pd.DataFrame, responses: pd.DataFrame, subset: str, *, seed: int, path: Path
) -> dict[str, int]:
    """Write the pairs of one subset's instructions as TRL records; returns the counts."""
    ids = subset_instruction_ids(map_table, subset, seed=seed)
    subset_pairs = pairs[pairs["instruction_id"].isin(ids)]
    write_jsonl(trl_records(subset_pairs, map_table, responses), path)
    logger.info("%s: %d pairs from %d instructions", path, len(subset_pairs), len(ids))
    return {"instructions": int(len(ids)), "pairs": int(len(subset_pairs))}


def run_map(config: MapConfig, *, progress: bool = True, command: str | None = None) -> Path:
    """Run `admap map` and return the run directory; ``command`` is recorded in the summary."""
    timings = Timings()
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)

    with timings.step("load"):
        data = load_preferences(
            config.dataset_path,
            format=config.format,
            options=config.load,
            skip_invalid=config.skip_invalid,
            split=config.split,
            limit=config.limit,
            progress=progress,
        )
    scorer = SCORERS.get(config.scorer).from_config(config, progress=progress)
    instructions = data.instructions
    if scorer.needs_proxy:
        with timings.step("proxy"):
            instructions = attach_proxies(
                instructions,
                proxy_file=config.proxy_file,
                generator=_proxy_generator(config, progress=progress),
                system_prompt=config.proxy_system_prompt,
            )
        proxies = instructions.loc[instructions["proxy_response"].notna()]
        write_jsonl(
            proxies[["instruction_id", "instruction", "proxy_response", "proxy_source"]].to_dict(orient="records"),
            run_dir / "proxies.jsonl",
        )

    with timings.step("score"):
        responses = data.responses.copy()
        responses["alignment_score"] = scorer.score(instructions, responses)
        responses["response_chars"] = responses["response"].str.len()
        responses["response_words"] = responses["response"].str.split().str.len()

    with timings.step("map"):
        map_table, thresholds = build_map_table(instructions, responses, config)
        responses = responses.merge(map_table[["instruction_id", "region"]], on="instruction_id", how="left")

    with timings.step("select"):
        pairs = preference_pairs(responses, rule=config.pair_rule, annotated=data.preferences, seed=config.seed)
        pair_counts = {
            subset: write_subset_pairs(
                pairs, map_table, responses, subset, seed=config.seed, path=run_dir / "pairs" / f"{subset}.jsonl"
            )
            for subset in SUBSETS
        }

    responses.to_parquet(run_dir / "scores.parquet", index=False)
    map_table.to_parquet(run_dir / "map.parquet", index=False)
    if data.has_preferences:
        data.preferences.to_parquet(run_dir / "preferences.parquet", index=False)
    proxy_sources = instructions.get("proxy_source", pd.Series(dtype=object))
    if config.plot:
        with timings.step("plot"):
            scorer_label = f"reference ({config.embedding_model})" if config.scorer == "reference" else config.scorer
            plot_map(
                map_table,
                thresholds,
                run_dir / "map.png",
                title=f"Alignment Data Map — {config.dataset_label}",
                subtitle=f"score: {scorer_label}; proxy: {', '.join(sorted(proxy_sources.dropna().unique())) or 'none'}"
                f"; {int(map_table['is_mapped'].sum())} instructions",
            )

    summary = {
        "admap_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command or shlex.join(sys.argv),
        "config": to_dict(config),
        "dataset": {"source": data.source, "format": data.format, **data.counts()},
        "models": {
            "scorer": config.scorer,
            "embedding_model": config.embedding_model if config.scorer == "reference" else None,
            "proxy_generator": f"{config.generator}:{config.generator_model}" if config.generator != "none" else None,
        },
        "proxies": proxy_sources.fillna("missing").value_counts().to_dict(),
        "scores": _describe(responses["alignment_score"]),
        "regions": region_counts(map_table["region"]),
        "thresholds": thresholds.to_dict(),
        "pairs": pair_counts,
        "unmapped": map_table.loc[~map_table["is_mapped"], ["instruction_id", "unmapped_reason"]].to_dict(
            orient="records"
        ),
        "skipped": [s.to_dict() for s in data.skipped],
        "seed": config.seed,
        "timings_s": dict(timings),
        "versions": package_versions(),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n")
    logger.info("wrote %s (regions %s)", run_dir, summary["regions"])
    return run_dir


def _describe(scores: pd.Series) -> dict[str, float | int]:
    valid = scores.dropna()
    if valid.empty:
        return {"scored": 0, "unscored": int(len(scores))}
    return {
        "scored": int(len(valid)),
        "unscored": int(scores.isna().sum()),
        "mean": float(valid.mean()),
        "median": float(valid.median()),
        "min": float(valid.min()),
        "max": float(valid.max()),
    }


def run_select(config: SelectConfig) -> Path:
    """Write one subset's pairs from a finished run; returns the output path."""
    run_dir = Path(config.run_dir)
    missing = [name for name in ("scores.parquet", "map.parquet", "summary.json") if not (run_dir / name).exists()]
    if missing:
        raise FileNotFoundError(f"{run_dir} is not an `admap map` run directory (missing {', '.join(missing)})")
    responses = pd.read_parquet(run_dir / "scores.parquet")
    map_table = pd.read_parquet(run_dir / "map.parquet")
    preferences_path = run_dir / "preferences.parquet"
    annotated = pd.read_parquet(preferences_path) if preferences_path.exists() else None
    pairs = preference_pairs(responses, rule=config.pair_rule, annotated=annotated, seed=config.seed)
    out = Path(config.out or run_dir / "pairs" / f"{config.subset}-{config.pair_rule}-seed{config.seed}.jsonl")
    write_subset_pairs(pairs, map_table, responses, config.subset, seed=config.seed, path=out)
    return out
