"""The `admap map` and `admap select` commands: configuration, and the I/O around the pure stages.

A run directory holds ``scores.parquet`` (per response), ``map.parquet`` (per instruction,
with region), ``proxies.jsonl``, ``pairs/<subset>.jsonl`` (TRL conversational format),
``preferences.parquet`` (the dataset's own pairs, for pair datasets), ``map.png``,
``view.html`` (the interactive map, `admap view`) and ``summary.json`` (counts, thresholds,
models, versions, seed, timings, and every skipped row with its reason).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import logging
import platform
import shlex
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from admap import __version__, compare, diagnose, view
from admap.config import option, to_dict
from admap.datamap import (
    REGION_METHODS,
    REGIONS,
    RegionThresholds,
    assign_regions,
    instruction_statistics,
    region_counts,
)
from admap.debias import length_residuals
from admap.durable import publish
from admap.embed import EmbeddingOptions
from admap.faiss_build import FAISS_DISTRIBUTIONS
from admap.generate import GENERATORS
from admap.generate.cache import ResponseCache
from admap.generate.options import GeneratorOptions
from admap.generate.runner import GenerationStats, build_generator
from admap.inputs import InputOptions
from admap.models import DEFAULT_EMBEDDING_MODEL, DEFAULT_GENERATOR_MODEL
from admap.plot import markdown_table, plot_map
from admap.proxy import attach_proxies
from admap.run_folder import IncompleteRun, RunTransaction, read_summary, run_lock, run_transaction, writing_into
from admap.score import SCORERS
from admap.score.annotation import annotation_labels, pair_counts
from admap.score.learned import DEFAULT_REGULARIZATION
from admap.select import PAIR_RULES, preference_pairs, rows_of_instructions, trl_records
from baselines import STRATEGIES, SelectionInputs, SelectionOptions, select_instructions

logger = logging.getLogger(__name__)

# The registered strategies whose pairs `admap map` writes, each to ``pairs/<name>.jsonl``.
MAP_STRATEGIES = (*REGIONS, "random", "full")


@dataclass
class MapConfig:
    """`admap map`: score every response, map the instructions, split the regions, write the pairs."""

    input: InputOptions = option(InputOptions(), "the dataset")
    out: str | None = option(None, "run directory (default: runs/<dataset name>)")
    proxy_file: str | None = option(None, "side file of proxy responses keyed by instruction_id or instruction text")
    generation: GeneratorOptions = option(GeneratorOptions(), "how missing proxy responses are generated")
    scorer: str = option("reference", "alignment scorer: reference, judge, reward, annotation, rouge_l, learned")
    embedding_model: str = option(DEFAULT_EMBEDDING_MODEL, "sentence-transformers model (the paper: all-mpnet-base-v2)")
    embed_batch_size: int | None = option(
        None, "texts per embedding batch (default: 16 on CPU, 128 on CUDA; learned lm_hidden: 8 and 32)"
    )
    embedding: EmbeddingOptions = option(
        EmbeddingOptions(), "scorers reference and learned: precision, chunking, the embedding cache and the engine"
    )
    judge: GeneratorOptions = option(
        GeneratorOptions(max_new_tokens=384), "scorer judge: the judge model", prefix="judge_"
    )
    judge_samples: int = option(
        1, "scorer judge: verdicts per response, their median is the score (>1 needs temperature)"
    )
    judge_prompts: str | None = option(
        None, "scorer judge: FastChat judge_prompts.jsonl to take single-v1 from (default: the copy admap ships)"
    )
    reward_model: str | None = option(None, "scorer reward: a sequence-classification reward model (id or path)")
    reward_batch_size: int = option(8, "scorer reward: responses per batch")
    reward_trust_remote_code: bool = option(
        False, "scorer reward: run the model's own code from its repository (ArmoRM needs it)"
    )
    learned_features: Literal["embedding", "lm_hidden"] = option(
        "embedding",
        "scorer learned: features of each response, a sentence embedding (--embedding-model) or a causal LM's "
        "mean-pooled last hidden state over the response read in its conversation (--learned-lm)",
    )
    learned_lm: str = option(DEFAULT_GENERATOR_MODEL, "scorer learned, features lm_hidden: a causal LM (id or path)")
    learned_max_length: int = option(
        512, "scorer learned, features lm_hidden: tokens per conversation (cut on the left)"
    )
    learned_folds: int = option(
        5, "scorer learned: folds of instructions; each response is scored by the model fitted on the others"
    )
    learned_regularization: float = option(
        DEFAULT_REGULARIZATION, "scorer learned: L2 penalty per pair of the pairwise logistic model"
    )
    learned_seed: int = option(42, "scorer learned: seed of the instructions' fold assignment")
    length_debias: bool = option(
        False, "replace each score by its residual after regressing scores on log response length"
    )
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
    view: bool = option(True, "write view.html, the interactive map in the browser (see admap view)")

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
        _check_generator(self.generation)

    @property
    def run_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / self.input.stem


@dataclass
class ProxyConfig:
    """`admap proxy`: write the proxy (reference) response of every instruction of a dataset."""

    input: InputOptions = option(InputOptions(), "the dataset")
    out: str | None = option(None, "output JSONL (default: runs/<dataset name>/proxies.jsonl)")
    proxy_file: str | None = option(None, "proxies to reuse (keyed by instruction_id or instruction text)")
    generation: GeneratorOptions = option(GeneratorOptions(), "the generator")
    device: str = option("auto", "local models: auto, cpu, cuda, cuda:1, ...")

    def __post_init__(self) -> None:
        _check_generator(self.generation)
        if self.generation.generator == "none":
            raise ValueError("admap proxy needs a generator (generator 'none' writes nothing)")

    @property
    def out_path(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / self.input.stem / "proxies.jsonl"


@dataclass
class CompareConfig:
    """`admap compare-scorers`: agreement between the scores, regions and length bias of several map runs."""

    runs: list[str] = option(help="run directories of `admap map` on the same dataset, one per scorer", positional=True)
    out: str = option("runs/compare-scorers", "output folder")

    def __post_init__(self) -> None:
        if len(self.runs) < 2:
            raise ValueError(f"compare-scorers needs at least 2 run directories, got {len(self.runs)}")


@dataclass
class DiagnoseConfig:
    """`admap diagnose`: rank the pairs whose annotation the alignment scores contradict."""

    run_dir: str = option(help="a run directory written by `admap map`", positional=True)
    top: int = option(50, "suspect pairs shown with their texts in report.md")
    out: str | None = option(None, "output folder (default: RUN_DIR/diagnosis)")

    def __post_init__(self) -> None:
        if self.top < 0:
            raise ValueError(f"top must be >= 0, got {self.top}")


@dataclass
class ViewConfig:
    """`admap view`: the interactive data map as one self-contained HTML page (offline, no CDN)."""

    run_dir: str = option(help="a run directory written by `admap map`", positional=True)
    out: str | None = option(None, "output HTML (default: RUN_DIR/view.html)")
    compare: list[str] = option([], "runs of other scorers on the same dataset, to colour the map by their regions")
    max_points: int = option(100_000, "instructions in the page at most, a seeded random sample beyond (0: all)")
    text_budget: int = option(
        40_000_000, "characters of dataset text in the page; beyond it the longest texts are shortened first (0: all)"
    )
    seed: int = option(42, "seed for the sample when there are more than max_points instructions")
    serve: bool = option(False, "serve the page on 127.0.0.1 until interrupted")
    port: int = option(8765, "port for --serve (0: any free port)")

    def __post_init__(self) -> None:
        for name in ("max_points", "text_budget"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def _check_generator(options: GeneratorOptions) -> None:
    if options.generator != "none" and options.generator not in GENERATORS:
        GENERATORS.get(options.generator)  # raises with suggestions


@dataclass
class SelectConfig:
    """`admap select`: the DPO pairs of the instructions one selection strategy keeps, from a finished map run."""

    run_dir: str = option(help="a run directory written by `admap map`", positional=True)
    selection: SelectionOptions = option(SelectionOptions(), "which instructions (the experiments' selection options)")
    pair_rule: Literal["annotated", "best_vs_random", "alignment_score"] = option(
        "annotated", "DPO pair rule (best_vs_random draws with --seed)"
    )
    out: str | None = option(
        None,
        "output JSONL (default: RUN_DIR/pairs/<strategy>[-f<fraction>]-<pair_rule>-seed<seed>[-dynamics<hash>].jsonl)",
    )

    def __post_init__(self) -> None:
        if self.pair_rule not in PAIR_RULES:
            raise ValueError(f"pair_rule must be one of {PAIR_RULES}, got {self.pair_rule!r}")

    @staticmethod
    def epilog() -> str:
        """The end of `admap select --help`: the strategies registered when the parser is built."""
        return f"selection strategies (--strategy): {', '.join(STRATEGIES.names())}"

    def default_out(self, run_dir: Path) -> Path:
        """A path inside the run's ``pairs/`` that differs whenever the selection or the pair rule does."""
        selection = self.selection
        name = selection.strategy
        if selection.fraction is not None:
            name += f"-f{selection.fraction:g}"
        name += f"-{self.pair_rule}-seed{selection.seed}"
        if selection.dynamics:
            name += "-dynamics" + hashlib.sha256(str(Path(selection.dynamics).resolve()).encode()).hexdigest()[:8]
        return run_dir / "pairs" / f"{name}.jsonl"


class Timings(dict):
    @contextmanager
    def step(self, name: str):
        start = time.perf_counter()
        yield
        self[name] = round(time.perf_counter() - start, 3)


def package_versions() -> dict[str, str]:
    versions = {"admap": __version__, "python": platform.python_version()}
    # Whichever FAISS build is installed (admap's extras `cpu` and `gpu` name different distributions).
    for package in ("torch", "transformers", "sentence-transformers", *FAISS_DISTRIBUTIONS, "numpy", "pandas"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def map_subset_ids(inputs: SelectionInputs, strategy: str, *, seed: int) -> np.ndarray:
    """The instructions of a map run's ``pairs/<strategy>.jsonl``: a region whole, whatever its size;
    any other strategy at its default size (``random``: as many as ``high_mean``)."""
    region_size = int((inputs.candidates["region"] == strategy).sum()) if strategy in REGIONS else None
    return select_instructions(strategy, inputs, size=region_size, seed=seed)


def write_jsonl(records: list[dict], path: Path) -> None:
    """One JSON line per record, published whole (`admap.durable.publish`): never a torn file."""

    def write(staging: Path) -> None:
        with staging.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    publish(path, write)


def _generator_label(options: GeneratorOptions) -> str | None:
    return None if options.generator == "none" else f"{options.generator}:{options.generator_model}"


def region_moves(before: pd.Series, after: pd.Series) -> dict:
    """How many instructions changed region, and between which regions."""
    moved = before.to_numpy() != after.to_numpy()
    transitions = pd.crosstab(before.to_numpy()[moved], after.to_numpy()[moved])
    return {
        "instructions_moved": int(moved.sum()),
        "fraction_moved": float(moved.mean()) if len(moved) else 0.0,
        "moves": {f"{a}->{b}": int(n) for a, row in transitions.iterrows() for b, n in row.items() if n},
    }


def scorer_model(config: MapConfig) -> str | None:
    """The model a reference or learned run takes its features from, e.g. ``all-MiniLM-L6-v2``."""
    if config.scorer == "reference" or (config.scorer == "learned" and config.learned_features == "embedding"):
        return config.embedding_model
    if config.scorer == "learned":
        return config.learned_lm
    return None


def _unmapped_reason(row) -> str:
    if row.n_responses == 0:
        return "no responses left after validation"
    if row.n_scored < row.n_responses:
        return f"{row.n_scored} of {row.n_responses} responses scored (no proxy response)"
    return f"only {row.n_scored} scored response(s)"


def fill_proxies(
    instructions: pd.DataFrame,
    *,
    proxy_file: str | None,
    options: GeneratorOptions,
    device: str,
    scope: Path,
    progress: bool,
) -> tuple[pd.DataFrame, GenerationStats | None]:
    """Proxies from the dataset column, then ``proxy_file``, then the configured generator through the cache."""
    generator = build_generator(options, device=device, progress=progress)
    cache = ResponseCache(options.cache_dir) if options.cache else None
    table, stats = attach_proxies(
        instructions,
        proxy_file=proxy_file,
        generator=generator,
        system_prompt=options.system_prompt,
        cache=cache,
        scope=str(scope.resolve()),
    )
    if stats is not None:
        stats.price(options.price_input_per_million, options.price_output_per_million)
    return table, stats


def write_proxies(instructions: pd.DataFrame, path: Path) -> int:
    """Write the instructions that have a proxy, in input order, atomically; returns how many."""
    proxies = instructions.loc[instructions["proxy_response"].notna()]
    columns = ["instruction_id", "instruction", "proxy_response", "proxy_source"]
    write_jsonl(proxies[columns].to_dict(orient="records"), path)
    return len(proxies)


def build_map_table(
    instructions: pd.DataFrame, responses: pd.DataFrame, config: MapConfig
) -> tuple[pd.DataFrame, RegionThresholds]:
    """One row per instruction: its text and proxy, score statistics, region, mean rating, and
    why it is unmapped when it is."""
    stats = instruction_statistics(
        responses["instruction_id"],
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
    pairs: pd.DataFrame, map_table: pd.DataFrame, responses: pd.DataFrame, ids: np.ndarray, *, path: Path
) -> dict[str, int]:
    """Write the pairs of the instructions ``ids`` as TRL records; returns the counts."""
    subset_pairs = rows_of_instructions(pairs, ids)
    write_jsonl(trl_records(subset_pairs, map_table, responses), path)
    logger.info("%s: %d pairs from %d instructions", path, len(subset_pairs), len(ids))
    return {"instructions": int(len(ids)), "pairs": int(len(subset_pairs))}


def run_map(config: MapConfig, *, progress: bool = True, command: str | None = None) -> Path:
    """Run `admap map` and return the run directory; ``command`` is recorded in the summary."""
    with run_transaction(config.run_dir) as transaction:
        return _run_map(config, transaction, progress=progress, command=command)


def _run_map(config: MapConfig, transaction: RunTransaction, *, progress: bool, command: str | None) -> Path:
    """The stages, writing into the transaction's staging folder; its publication is the last step."""
    timings = Timings()
    run_dir, final = transaction.staging, transaction.final

    with timings.step("load"):
        data = config.input.read(progress=progress)
    scorer = SCORERS.get(config.scorer).from_config(config, progress=progress)
    instructions, generation_stats = data.instructions, None
    if scorer.needs_proxy:
        with timings.step("proxy"):
            instructions, generation_stats = fill_proxies(
                instructions,
                proxy_file=config.proxy_file,
                options=config.generation,
                device=config.device,
                # The final path, not the staging one: a rerun after an interruption resumes generation.
                scope=final / "proxies.jsonl",
                progress=progress,
            )
        write_proxies(instructions, run_dir / "proxies.jsonl")

    with timings.step("score"):
        responses = data.responses.copy()
        responses["response_chars"] = responses["response"].str.len()
        # str.split per text, not pandas' .str.split, which keeps every word list alive at once.
        responses["response_words"] = [len(text.split()) for text in responses["response"]]
        if data.has_preferences:
            responses[["pair_wins", "pair_losses"]] = pair_counts(responses, data.preferences)
        responses["alignment_score"] = scorer.score(
            instructions, responses, preferences=data.preferences if data.has_preferences else None
        )
        # Scorers that ask a model (the judge) keep each raw verdict for audit beside the scores.
        verdicts = getattr(scorer, "verdicts", None)
        if isinstance(verdicts, pd.DataFrame):
            verdicts.to_parquet(run_dir / "judgments.parquet", index=False)

    with timings.step("map"):
        length_debias = None
        if config.length_debias:
            raw_map, _ = build_map_table(instructions, responses, config)
            responses["alignment_score_raw"] = responses["alignment_score"]
            responses["alignment_score"], fit = length_residuals(
                responses["alignment_score_raw"].to_numpy(), responses["response_chars"].to_numpy()
            )
        map_table, thresholds = build_map_table(instructions, responses, config)
        if config.length_debias:
            length_debias = {**fit.to_dict(), **region_moves(raw_map["region"], map_table["region"])}
            map_table["region_before_debias"] = raw_map["region"].to_numpy()
        responses = responses.merge(map_table[["instruction_id", "region"]], on="instruction_id", how="left")

    with timings.step("select"):
        pairs = preference_pairs(responses, rule=config.pair_rule, annotated=data.preferences, seed=config.seed)
        inputs = SelectionInputs(map_table, responses, pairs, config.scorer)
        subset_counts = {
            name: write_subset_pairs(
                pairs,
                map_table,
                responses,
                map_subset_ids(inputs, name, seed=config.seed),
                path=run_dir / "pairs" / f"{name}.jsonl",
            )
            for name in MAP_STRATEGIES
        }

    responses.to_parquet(run_dir / "scores.parquet", index=False)
    map_table.to_parquet(run_dir / "map.parquet", index=False)
    if data.has_preferences:
        data.preferences.to_parquet(run_dir / "preferences.parquet", index=False)
    proxy_sources = instructions.get("proxy_source", pd.Series(dtype=object))
    if config.plot:
        with timings.step("plot"):
            model = scorer_model(config)
            scorer_label = f"{config.scorer} ({model})" if model else config.scorer
            plot_map(
                map_table,
                thresholds,
                run_dir / "map.png",
                title=f"Alignment Data Map — {config.input.label}",
                subtitle=f"score: {scorer_label}; proxy: {', '.join(sorted(proxy_sources.dropna().unique())) or 'none'}"
                f"; {int(map_table['is_mapped'].sum())} instructions",
            )

    summary = {
        "admap_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command or shlex.join(sys.argv),
        "config": to_dict(config),
        "dataset": data.report(),
        "models": {
            "scorer": config.scorer,
            "embedding_model": config.embedding_model if config.scorer == "reference" else None,
            "learned_model": scorer_model(config) if config.scorer == "learned" else None,
            "reward_model": config.reward_model if config.scorer == "reward" else None,
            "judge_model": _generator_label(config.judge) if config.scorer == "judge" else None,
            "proxy_generator": _generator_label(config.generation),
        },
        "proxies": proxy_sources.fillna("missing").value_counts().to_dict(),
        "generation": generation_stats.to_dict() if generation_stats else None,
        "judge_generation": scorer.generation_stats.to_dict() if getattr(scorer, "generation_stats", None) else None,
        "learned_fit": getattr(scorer, "fit_summary", None),
        "embedding": scorer.embedding_report.to_dict() if getattr(scorer, "embedding_report", None) else None,
        "scores": _describe(responses["alignment_score"]),
        "length_debias": length_debias,
        "regions": region_counts(map_table["region"]),
        "thresholds": thresholds.to_dict(),
        "pairs": subset_counts,
        "unmapped": map_table.loc[~map_table["is_mapped"], ["instruction_id", "unmapped_reason"]].to_dict(
            orient="records"
        ),
        "skipped": [s.to_dict() for s in data.skipped],
        "seed": config.seed,
        "timings_s": dict(timings),
        "versions": package_versions(),
    }
    if config.view:
        with timings.step("view"):
            payload = view.build_payload(map_table, responses, summary, seed=config.seed, name=final.name)
            view.write_view(payload, run_dir / "view.html")
        summary["timings_s"] = dict(timings)
    transaction.publish(summary)
    logger.info("wrote %s (regions %s)", final, summary["regions"])
    return final


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


def require_run(path: str | Path) -> Path:
    """``path`` if it holds one complete `admap map` run (`read_summary` checks every file the summary
    lists), else `IncompleteRun` saying why."""
    run_dir = Path(path)
    read_summary(run_dir)
    missing = [name for name in ("scores.parquet", "map.parquet") if not (run_dir / name).exists()]
    if missing:
        raise IncompleteRun(f"{run_dir} is not an `admap map` run directory (missing {', '.join(missing)})")
    return run_dir


def read_run(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """``(scores, map, the dataset's own pairs or None)`` of a finished run."""
    preferences_path = run_dir / "preferences.parquet"
    annotated = pd.read_parquet(preferences_path) if preferences_path.exists() else None
    return pd.read_parquet(run_dir / "scores.parquet"), pd.read_parquet(run_dir / "map.parquet"), annotated


def run_select(config: SelectConfig) -> Path:
    """Write the pairs of the instructions ``config.selection`` keeps from a finished run; returns the output path."""
    run_dir = require_run(config.run_dir)
    responses, map_table, annotated = read_run(run_dir)
    selection = config.selection
    pairs = preference_pairs(responses, rule=config.pair_rule, annotated=annotated, seed=selection.seed)
    dynamics = pd.read_parquet(selection.dynamics) if selection.dynamics else None
    inputs = SelectionInputs(map_table, responses, pairs, read_summary(run_dir)["config"]["scorer"], dynamics)
    ids = select_instructions(selection.strategy, inputs, fraction=selection.fraction, seed=selection.seed)
    out = Path(config.out) if config.out else config.default_out(run_dir)
    # Inside the run's folder, one writer at a time: a map run publishing there replaces the folder.
    with run_lock(run_dir) if out.resolve().is_relative_to(run_dir.resolve()) else nullcontext():
        write_subset_pairs(pairs, map_table, responses, ids, path=out)
    return out


def run_proxy(config: ProxyConfig, *, progress: bool = True, command: str | None = None) -> Path:
    """Run `admap proxy`: the proxies JSONL plus ``<name>.summary.json`` beside it; returns the JSONL path."""
    out = config.out_path
    data = config.input.read(progress=progress)
    start = time.perf_counter()
    instructions, stats = fill_proxies(
        data.instructions,
        proxy_file=config.proxy_file,
        options=config.generation,
        device=config.device,
        scope=out,
        progress=progress,
    )
    written = write_proxies(instructions, out)
    summary = {
        "admap_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command or shlex.join(sys.argv),
        "config": to_dict(config),
        "dataset": data.report(),
        "generator": _generator_label(config.generation),
        "proxies_written": written,
        "missing": instructions.loc[instructions["proxy_response"].isna(), "instruction_id"].tolist(),
        "proxies": instructions["proxy_source"].fillna("missing").value_counts().to_dict(),
        "generation": stats.to_dict() if stats else None,
        "skipped": [s.to_dict() for s in data.skipped],
        "seconds": round(time.perf_counter() - start, 3),
        "versions": package_versions(),
    }
    summary_path = out.with_name(f"{out.name.split('.')[0]}.summary.json")
    summary_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n")
    logger.info("%s: %d of %d proxies (%s)", out, written, len(instructions), summary["generation"])
    return out


def _run_label(summary: dict) -> str:
    label = summary["models"]["scorer"]
    if summary["config"].get("length_debias"):
        label += "+debias"
    return label


def run_compare(config: CompareConfig, *, progress: bool = True, command: str | None = None) -> Path:
    """Write ``agreement.csv``, ``regions.csv``, ``length.csv``, confusion tables, ``compare.png`` and
    ``compare.md`` into ``config.out``; returns that folder."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    scores, regions, labels, sources = {}, {}, [], set()
    lengths = None
    for run in map(Path, config.runs):
        summary = read_summary(run)
        label = _run_label(summary)
        if label in labels:
            label = f"{label} ({run.name})"
        labels.append(label)
        sources.add(summary["dataset"]["source"])
        responses = pd.read_parquet(run / "scores.parquet").set_index("response_id")
        scores[label] = responses["alignment_score"]
        lengths = responses["response_chars"] if lengths is None else lengths.combine_first(responses["response_chars"])
        regions[label] = pd.read_parquet(run / "map.parquet").set_index("instruction_id")["region"]
    if len(sources) > 1:
        raise ValueError(f"the runs map different datasets: {sorted(sources)}")
    score_table, region_table = pd.DataFrame(scores), pd.DataFrame(regions)
    agreement = compare.score_agreement(score_table)
    region_overlap = compare.region_agreement(region_table)
    length = compare.length_correlation(score_table, lengths.reindex(score_table.index))
    agreement.to_csv(out / "agreement.csv", index=False)
    region_overlap.to_csv(out / "regions.csv", index=False)
    length.to_csv(out / "length.csv", index=False)
    for first, second in itertools.combinations(labels, 2):
        confusion = compare.region_confusion(region_table, first, second)
        confusion.to_csv(out / f"confusion_{_slug(first)}__{_slug(second)}.csv")
    dataset = Path(next(iter(sources))).name
    compare.plot_comparison(agreement, length, out / "compare.png", title=f"Scorers on {dataset}")
    lines = [
        f"# Scorer agreement on `{dataset}`",
        "",
        f"- runs: {', '.join(f'`{r}`' for r in config.runs)}",
        f"- command: `{command or shlex.join(sys.argv)}`",
        "",
        "## Per response",
        "",
        markdown_table(agreement),
        "",
        "## Regions (Jaccard, instructions mapped by both)",
        "",
        markdown_table(
            region_overlap.pivot_table(index=["scorer_a", "scorer_b"], columns="region", values="jaccard").reset_index()
        ),
        "",
        "## Length bias (correlation with response length in characters)",
        "",
        markdown_table(length),
        "",
    ]
    (out / "compare.md").write_text("\n".join(lines))
    logger.info("wrote %s", out)
    return out


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label).strip("_")


def run_diagnose(config: DiagnoseConfig, *, progress: bool = True, command: str | None = None) -> Path:
    """Write ``suspects.parquet`` (ranked pairs with texts), ``instructions.parquet`` (per-instruction
    agreement and flags), ``report.md`` and ``diagnosis.json``; returns the output folder."""
    run_dir = require_run(config.run_dir)
    map_run_id = read_summary(run_dir).get("run_id")
    responses, map_table, annotated = read_run(run_dir)
    if annotated is None and not responses["rating"].notna().any():
        raise ValueError(f"{run_dir}: the dataset has neither ratings nor pairs to diagnose against")
    pairs = preference_pairs(responses, rule="annotated", annotated=annotated)
    out = Path(config.out) if config.out else run_dir / "diagnosis"

    instructions = diagnose.instruction_agreement(responses.assign(label=annotation_labels(responses)))
    instructions = instructions.merge(
        map_table[["instruction_id", "instruction", "region", "mean_score", "score_variance"]],
        on="instruction_id",
        how="left",
    )
    suspects = diagnose.rank_suspects(diagnose.pair_suspicion(pairs, responses))
    text = responses.set_index("response_id")
    for side in ("chosen", "rejected"):
        ids = suspects[f"{side}_id"]
        suspects[f"{side}_response"] = ids.map(text["response"]).to_numpy()
        suspects[f"{side}_rating"] = ids.map(text["rating"]).to_numpy()
        suspects[f"{side}_chars"] = ids.map(text["response_chars"]).to_numpy()
    suspects["instruction"] = suspects["instruction_id"].map(map_table.set_index("instruction_id")["instruction"])
    suspects["reason"] = [
        f"the scores prefer the rejected response (margin {m:+.3f}, {s:.2f} spreads)"
        if bad
        else f"the scores agree (margin {m:+.3f})"
        for m, s, bad in zip(suspects["margin"], suspects["suspicion_score"], suspects["is_suspect"])
    ]
    diagnosable = instructions["is_diagnosable"]
    low_impact = instructions["is_low_impact"]
    by_cosine = instructions[diagnosable].sort_values(["cosine", "instruction_id"], kind="mergesort")
    tail = max(1, int(0.01 * len(by_cosine))) if len(by_cosine) else 0
    summary = {
        "run_dir": str(run_dir),
        "map_run_id": map_run_id,
        "command": command or shlex.join(sys.argv),
        "pairs": int(len(suspects)),
        "pairs_scored": int(suspects["margin"].notna().sum()),
        "suspect_pairs": int(suspects["is_suspect"].sum()),
        "agreement_rate": float(1 - suspects["is_suspect"].sum() / max(suspects["margin"].notna().sum(), 1)),
        "instructions": int(len(instructions)),
        "instructions_diagnosable": int(diagnosable.sum()),
        "instructions_not_diagnosable": int((~diagnosable).sum()),
        "instructions_low_impact": int(low_impact.sum()),
        "lowest_cosine_1pct": by_cosine.head(tail)["instruction_id"].tolist(),
        "highest_cosine_1pct": by_cosine.tail(tail)["instruction_id"].tolist(),
    }
    # The folder is written whole: an earlier diagnosis there is replaced, never mixed with this one.
    with writing_into(run_dir, out) as staging:
        suspects.to_parquet(staging / "suspects.parquet", index=False)
        instructions.to_parquet(staging / "instructions.parquet", index=False)
        (staging / "diagnosis.json").write_text(json.dumps(summary, indent=2) + "\n")
        (staging / "report.md").write_text(_diagnosis_report(summary, suspects, config.top))
    logger.info("%s: %d of %d pairs contradicted by the scores", out, summary["suspect_pairs"], summary["pairs"])
    return out


def run_view(config: ViewConfig, *, progress: bool = True, command: str | None = None) -> Path:
    """Write the run's interactive map (``view.html``), with suspect flags where ``admap diagnose`` has run
    and other scorers' regions from ``config.compare``; serve it if asked. Returns the page's path."""
    run_dir = require_run(config.run_dir)
    responses, map_table, _ = read_run(run_dir)
    summary = read_summary(run_dir)
    suspects = run_suspects(run_dir, summary)
    others = []
    for other in map(require_run, config.compare):
        other_summary = read_summary(other)
        label = view.scorer_label(other_summary)
        if label in {view.scorer_label(summary), *(o.label for o in others)}:
            label = f"{label} ({other.name})"
        regions = pd.read_parquet(other / "map.parquet", columns=["instruction_id", "region"])
        others.append(view.OtherRun(label, regions.set_index("instruction_id")["region"]))
    payload = view.build_payload(
        map_table,
        responses,
        summary,
        suspects=suspects,
        others=others,
        max_points=config.max_points or None,
        seed=config.seed,
        text_budget=config.text_budget,
        name=run_dir.name,
    )
    out = Path(config.out) if config.out else run_dir / "view.html"
    with run_lock(run_dir) if out.resolve().is_relative_to(run_dir.resolve()) else nullcontext():
        view.write_view(payload, out)
    if config.serve:
        view.serve(out, config.port)
    return out


def run_suspects(run_dir: Path, summary: dict) -> pd.DataFrame | None:
    """The run's ranked suspect pairs from ``admap diagnose``, if a diagnosis of this very run is there."""
    folder = run_dir / "diagnosis"
    if not (folder / "suspects.parquet").exists():
        return None
    diagnosed = json.loads((folder / "diagnosis.json").read_text()).get("map_run_id")
    if diagnosed != summary.get("run_id"):
        logger.warning("%s is a diagnosis of run %s, not of %s: left out", folder, diagnosed, summary.get("run_id"))
        return None
    return pd.read_parquet(folder / "suspects.parquet")


def _quote(text: str, limit: int = 700) -> str:
    text = text if len(text) <= limit else text[:limit] + " […]"
    return "\n".join("> " + line for line in text.splitlines() or [""])


def _diagnosis_report(summary: dict, suspects: pd.DataFrame, top: int) -> str:
    lines = [
        f"# Diagnosis of `{summary['run_dir']}`",
        "",
        f"- pairs: {summary['pairs']} ({summary['pairs_scored']} scored); the scores contradict "
        f"{summary['suspect_pairs']} (agreement {summary['agreement_rate']:.1%})",
        f"- instructions: {summary['instructions']}; diagnosable {summary['instructions_diagnosable']}, "
        f"not diagnosable (fewer than 2 scored, labelled responses) {summary['instructions_not_diagnosable']}, "
        f"low impact (all labels tied or all scores equal) {summary['instructions_low_impact']}",
        f"- command: `{summary['command']}`",
        "",
        f"## The {min(top, int(suspects['is_suspect'].sum()))} most suspect pairs",
        "",
    ]
    for row in suspects[suspects["is_suspect"]].head(top).itertuples():
        lines += [
            f"### {row.rank}. suspicion {row.suspicion_score:.2f} — instruction `{row.instruction_id}`",
            "",
            _quote(str(row.instruction), 400),
            "",
            f"**Chosen** (rating {row.chosen_rating}, score {row.chosen_score:.3f}, {row.chosen_chars} chars)",
            "",
            _quote(str(row.chosen_response)),
            "",
            f"**Rejected** (rating {row.rejected_rating}, score {row.rejected_score:.3f}, {row.rejected_chars} chars)",
            "",
            _quote(str(row.rejected_response)),
            "",
        ]
    return "\n".join(lines)
