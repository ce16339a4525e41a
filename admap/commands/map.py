"""`admap map`: score every response, map the instructions, split the regions, write the pairs.

A run directory holds ``scores.parquet`` (per response), ``map.parquet`` (per instruction, with
region), ``proxies.jsonl``, ``pairs/<strategy>.jsonl`` (TRL conversational format),
``preferences.parquet`` (the dataset's own pairs, for pair datasets), any table the scorer adds
(the judge's ``judgments.parquet``), ``map.png``, ``view.html`` (the interactive map, `admap view`)
and ``summary.json`` (counts, thresholds, the scorer's report, provenance, seed, timings, and every
skipped row with its reason). It is written as one transaction (`admap.run_folder`).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from admap import view
from admap.commands import Command
from admap.commands.proxy import fill_proxies, write_proxies
from admap.commands.select import write_subsets_pairs
from admap.config import Registered, option, registered, to_dict
from admap.datamap import (
    REGION_METHODS,
    REGIONS,
    RegionThresholds,
    assign_regions,
    instruction_statistics,
    region_counts,
    with_axes,
)
from admap.debias import length_residuals
from admap.embed import EmbeddingOptions
from admap.generate.options import GeneratorOptions
from admap.hub import PushWhenWritten
from admap.inputs import InputOptions
from admap.load import PreferenceData
from admap.memory import release_freed_memory
from admap.models import DEFAULT_EMBEDDING_MODEL
from admap.plot import map_titles, plot_map
from admap.provenance import provenance
from admap.run_folder import RUN_FILE_NAMES, RunTransaction, run_transaction
from admap.score import SCORERS, Scorer, ScoringContext, build_scorer
from admap.score.annotation import pair_counts
from admap.select import PAIR_RULES, preference_pairs
from admap_baselines import SelectionInputs, select_instructions

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
    scorer: str = option("reference", "alignment scorer (the registered ones are listed below)")
    scorer_options: Registered = registered(
        SCORERS, selector="scorer", help="each scorer's own options, under its name (--<scorer>-<option>)"
    )
    embedding_model: str = option(
        DEFAULT_EMBEDDING_MODEL,
        "scorers that embed (reference, learned): sentence-transformers model (the paper: all-mpnet-base-v2)",
    )
    embed_batch_size: int | None = option(
        None,
        "texts per embedding batch (default: by text length on CPU, 16-256; 128 on CUDA; learned lm_hidden: 8 and 32)",
    )
    embedding: EmbeddingOptions = option(
        EmbeddingOptions(), "scorers that embed: precision, chunking, the embedding cache and the engine"
    )
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
    hub: PushWhenWritten = option(PushWhenWritten(), "publishing the run on the Hugging Face hub")

    def __post_init__(self) -> None:
        if self.region_method not in REGION_METHODS:
            raise ValueError(f"region_method must be one of {REGION_METHODS}, got {self.region_method!r}")
        if self.pair_rule not in PAIR_RULES:
            raise ValueError(f"pair_rule must be one of {PAIR_RULES}, got {self.pair_rule!r}")
        if self.min_responses < 1:
            raise ValueError(f"min_responses must be >= 1, got {self.min_responses}")
        if self.region_method == "absolute" and (self.variance_threshold is None or self.mean_threshold is None):
            raise ValueError("region_method 'absolute' needs variance_threshold and mean_threshold")
        scorer_class = SCORERS.get(self.scorer)  # an unknown name gets close matches
        if self.length_debias and scorer_class.defines_axes:
            raise ValueError(
                f"length_debias adjusts per-response scores; scorer {self.scorer!r} defines the map's axes itself"
            )

    @staticmethod
    def epilog() -> str:
        """The end of `admap map --help`: the scorers registered when the parser is built."""
        return f"scorers (--scorer): {', '.join(SCORERS.names())}"

    @property
    def run_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / self.input.stem

    def scoring_context(self, *, progress: bool = True) -> ScoringContext:
        return ScoringContext(
            device=self.device,
            embedding_model=self.embedding_model,
            embed_batch_size=self.embed_batch_size,
            embedding=self.embedding,
            seed=self.seed,
            progress=progress,
        )

    def build_scorer(self, *, progress: bool = True) -> Scorer:
        """The chosen scorer, built from its own options and the shared context."""
        return build_scorer(self.scorer, self.scorer_options, self.scoring_context(progress=progress))


class Timings(dict):
    @contextmanager
    def step(self, name: str):
        start = time.perf_counter()
        yield
        self[name] = round(time.perf_counter() - start, 3)


def map_subset_ids(inputs: SelectionInputs, strategy: str, *, seed: int) -> np.ndarray:
    """The instructions of a map run's ``pairs/<strategy>.jsonl``: a region whole, whatever its size;
    any other strategy at its default size (``random``: as many as ``high_mean``)."""
    region_size = int((inputs.candidates["region"] == strategy).sum()) if strategy in REGIONS else None
    return select_instructions(strategy, inputs, size=region_size, seed=seed)


def region_moves(before: pd.Series, after: pd.Series) -> dict:
    """How many instructions changed region, and between which regions."""
    moved = before.to_numpy() != after.to_numpy()
    transitions = pd.crosstab(before.to_numpy()[moved], after.to_numpy()[moved])
    return {
        "instructions_moved": int(moved.sum()),
        "fraction_moved": float(moved.mean()) if len(moved) else 0.0,
        "moves": {f"{a}->{b}": int(n) for a, row in transitions.iterrows() for b, n in row.items() if n},
    }


def _unmapped_reason(row) -> str:
    if row.n_responses == 0:
        return "no responses left after validation"
    if row.n_scored < row.n_responses:
        return f"{row.n_scored} of {row.n_responses} responses scored (no proxy response)"
    return f"only {row.n_scored} scored response(s)"


def build_map_table(
    instructions: pd.DataFrame, responses: pd.DataFrame, config: MapConfig, *, axes: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, RegionThresholds]:
    """One row per instruction: its text and proxy, score statistics, region, mean rating, and
    why it is unmapped when it is. ``axes``: the scorer's own mean and variance per instruction."""
    stats = instruction_statistics(
        responses["instruction_id"],
        responses["alignment_score"].to_numpy(),
        all_instruction_ids=instructions["instruction_id"].to_numpy(),
        min_responses=config.min_responses,
    )
    if axes is not None:
        stats = with_axes(stats, axes)
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


def describe_scores(scores: pd.Series) -> dict[str, float | int]:
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


def write_scorer_tables(scorer: Scorer, run_dir: Path) -> None:
    """The tables a scorer keeps beside the scores, each a Parquet file of the run."""
    for name, table in scorer.tables().items():
        if Path(name).name != name or not name.endswith(".parquet") or name in RUN_FILE_NAMES:
            raise ValueError(f"scorer {scorer.name!r}: table name {name!r} must be a new plain '<name>.parquet'")
        table.to_parquet(run_dir / name, index=False)


def run_map(
    config: MapConfig, *, progress: bool = True, command: str | None = None, data: PreferenceData | None = None
) -> Path:
    """Run `admap map` and return the run directory; ``command`` is recorded in the summary. ``data``: a
    dataset loaded already (the Python API's DataFrame or `datasets.Dataset`), mapped instead of reading
    ``config.input``'s file."""
    with run_transaction(config.run_dir) as transaction:
        run_dir = _run_map(config, transaction, data, progress=progress, command=command)
    config.hub.push(run_dir)
    return run_dir


def _run_map(
    config: MapConfig,
    transaction: RunTransaction,
    data: PreferenceData | None,
    *,
    progress: bool,
    command: str | None,
) -> Path:
    """The stages, writing into the transaction's staging folder; its publication is the last step."""
    timings = Timings()
    run_dir, final = transaction.staging, transaction.final

    with timings.step("load"):
        data = config.input.read(progress=progress) if data is None else data
        release_freed_memory()  # what parsing freed, before the stages that hold the tables
    scorer = config.build_scorer(progress=progress)
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
        write_scorer_tables(scorer, run_dir)
        release_freed_memory()  # the scorer's texts and vectors

    with timings.step("map"):
        length_debias = None
        if config.length_debias:
            raw_map, _ = build_map_table(instructions, responses, config)
            responses["alignment_score_raw"] = responses["alignment_score"]
            responses["alignment_score"], fit = length_residuals(
                responses["alignment_score_raw"].to_numpy(), responses["response_chars"].to_numpy()
            )
        axes = scorer.instruction_axes() if scorer.defines_axes else None
        map_table, thresholds = build_map_table(instructions, responses, config, axes=axes)
        if config.length_debias:
            length_debias = {**fit.to_dict(), **region_moves(raw_map["region"], map_table["region"])}
            map_table["region_before_debias"] = raw_map["region"].to_numpy()
        # A column looked up, not a merge: a merge copies every column, the texts included.
        responses["region"] = responses["instruction_id"].map(map_table.set_index("instruction_id")["region"])

    with timings.step("select"):
        pairs = preference_pairs(responses, rule=config.pair_rule, annotated=data.preferences, seed=config.seed)
        inputs = SelectionInputs(map_table, responses, pairs, config.scorer)
        subset_counts = write_subsets_pairs(
            pairs,
            map_table,
            responses,
            {name: map_subset_ids(inputs, name, seed=config.seed) for name in MAP_STRATEGIES},
            folder=run_dir / "pairs",
        )

    release_freed_memory()  # the pairs' buffers, before the writes and the figures
    responses.to_parquet(run_dir / "scores.parquet", index=False)
    map_table.to_parquet(run_dir / "map.parquet", index=False)
    if data.has_preferences:
        data.preferences.to_parquet(run_dir / "preferences.parquet", index=False)
    proxy_sources = instructions.get("proxy_source", pd.Series(dtype=object))
    summary = {
        **provenance(command),
        "config": to_dict(config),
        "dataset": data.report(),
        "scorer": {"name": scorer.name, "label": scorer.label(), **scorer.report()},
        "proxy_generator": config.generation.label,
        "proxies": proxy_sources.fillna("missing").value_counts().to_dict(),
        "generation": generation_stats.to_dict() if generation_stats else None,
        "scores": describe_scores(responses["alignment_score"]),
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
    }
    if config.plot:
        with timings.step("plot"):
            title, subtitle = map_titles(summary)
            plot_map(map_table, thresholds, run_dir / "map.png", title=title, subtitle=subtitle)
    if config.view:
        with timings.step("view"):
            payload = view.build_payload(
                map_table, responses, summary, seed=config.seed, name=final.name, run_dir=str(final)
            )
            view.write_view(payload, run_dir / "view.html")
    summary["timings_s"] = dict(timings)
    transaction.publish(summary)
    logger.info("wrote %s (regions %s)", final, summary["regions"])
    return final


COMMAND = Command(
    "map", MapConfig, run_map, "score, map and split a preference dataset; write pairs, figure and summary"
)
