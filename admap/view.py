"""Stage 8, view: the data map as one self-contained, interactive HTML page.

The page draws mean against variance with WebGL (a 2D-canvas fallback where WebGL is missing),
the region thresholds, a hover preview and a detail panel with every response, box and lasso
selection exported as JSONL of instruction ids (with the `admap select` command lines that read the
export back), and a text search; where `admap neighbours` has run, a second panel beside it lays the
instructions out by meaning (its ``layout.parquet``), with the same colourings and one selection for
both. Its HTML, CSS and JavaScript
are package data (``admap/view_assets/``), inlined at write time: no CDN, no network, offline.

The page's data is one JSON block, columnar, with numbers packed (`packed`: float32 and unsigned arrays as
base64 bytes) and ids as one string (`Lines`), so that a million instructions parse in well under a second;
the texts and responses are a second block, gzip-compressed, that the page inflates after its first paint
(`compressed_details`), within a text budget (`text_plan`). Served (`admap view --serve`), the page carries no
texts and asks the server for them (`PageInstructions`). Dataset text is hostile: the JSON escapes ``<``,
``>`` and ``&`` (so ``</script>`` in a response cannot close the block), the compressed block is base64, the
page only ever inserts data with ``textContent``, and a Content-Security-Policy allows no script but the page's
own (by hash) and no network at all (a served page: its own server only).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
import http.server
import io
import json
import logging
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, unquote

import numpy as np
import pandas as pd

from admap import __version__
from admap.datamap import HIGH_MEAN, HIGH_VARIANCE, LOW_MEAN, REGION_LABELS, UNMAPPED
from admap.dynamics import DYNAMICS_REGION_LABELS, DYNAMICS_REGIONS, instruction_dynamics
from admap.plot import DYNAMICS_REGION_COLOURS, REGION_COLOURS, dataset_label
from admap.run_folder import Neighbourhoods, run_label

logger = logging.getLogger(__name__)

PAYLOAD_VERSION = 2
# All of UltraFeedback-scale datasets and more: past this the page samples (seeded).
MAX_POINTS = 1_000_000
# Characters of dataset text in a single-file page; measured, a 64k-instruction UltraFeedback-shaped page stays
# under 20 MB with it (benchmarks/bench_view.py).
TEXT_BUDGET = 20_000_000
# The share of the budget that keeps whole texts (`text_priority`); the rest shortens the others.
WHOLE_SHARE = 0.4
INLINE, SERVED = "inline", "served"
PACKED_TYPES = frozenset({"float32", "uint8", "uint16", "uint32"})
SEARCH_RESULTS_LISTED = 100
SNIPPET_CHARS = 120
REGION_ORDER = (HIGH_MEAN, LOW_MEAN, HIGH_VARIANCE, UNMAPPED)
REGION_PALETTE = {**REGION_COLOURS, UNMAPPED: "#b0b0b0"}
# Tableau 10, without its grey: the grey is kept for "other" and missing values.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
OTHER, OTHER_COLOUR = "other", "#bab0ac"
SUSPECT_PALETTE = {"suspect pair": "#d62728", "pairs agree": "#8fb3d9", "no scored pairs": "#d0d0d0"}
NEAR_DUPLICATE_PALETTE = {
    "near duplicate (left out by --drop-near-duplicates)": "#d62728",
    "kept one of a near-duplicate group": "#ff9f40",
    "no near duplicate": "#d0d0d0",
}
CLEAN = "not contaminated"
NO_DYNAMICS = "no trained pairs"
DYNAMICS_PALETTE = {
    **{DYNAMICS_REGION_LABELS[region]: DYNAMICS_REGION_COLOURS[region] for region in DYNAMICS_REGIONS},
    NO_DYNAMICS: "#d0d0d0",
}
# Map columns that name where an instruction came from (UltraFeedback's `source`), when a loader keeps one.
SOURCE_COLUMNS = ("source", "dataset_source")
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


@dataclass(frozen=True)
class OtherRun:
    """Another scorer's regions for the same instructions, to colour the map by."""

    label: str
    regions: pd.Series  # region by instruction_id


def text_limit(lengths: Sequence[int] | np.ndarray, budget: int) -> int | None:
    """The largest per-text cap whose capped total fits ``budget`` characters, so that only the
    longest texts are shortened; None when everything fits whole or ``budget`` is 0 (no limit)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if budget <= 0 or int(lengths.sum()) <= budget:
        return None
    low, high = 0, int(lengths.max())  # total(low) <= budget < total(high)
    while high - low > 1:
        middle = (low + high) // 2
        if int(np.minimum(lengths, middle).sum()) <= budget:
            low = middle
        else:
            high = middle
    return low


def shorten(text: str | None, limit: int | None) -> str | None:
    """``text`` cut to ``limit`` characters and an ellipsis (the page has each response's full length beside it)."""
    if text is None or limit is None or len(text) <= limit:
        return text
    return f"{text[:limit]}…"


def text_lengths(values: pd.Series) -> np.ndarray:
    """The length of each text in ``values``, 0 where one is missing; an Arrow text column is measured in
    Arrow, without a Python string per text."""
    if isinstance(values.dtype, pd.StringDtype):
        return values.str.len().fillna(0).to_numpy(dtype=np.int64)
    return np.fromiter((len(t) if isinstance(t, str) else 0 for t in values), dtype=np.int64, count=len(values))


def shortened(values: pd.Series, limit: int | None, whole: np.ndarray | None = None) -> list[str | None]:
    """`shorten` of each of `strings` (``values``) but where ``whole`` is set; an Arrow text column is cut in
    Arrow first, so that only the shortened texts become Python strings."""
    if limit is None or not isinstance(values.dtype, pd.StringDtype):
        texts = [shorten(t, limit) for t in strings(values)]
    else:
        heads = values.str.slice(0, limit)
        texts = [
            None if is_missing(head) else head if length <= limit else f"{head}…"
            for head, length in zip(heads, values.str.len())
        ]
    if limit is not None and whole is not None:
        for k in np.flatnonzero(whole).tolist():
            value = values.iat[k]
            texts[k] = None if is_missing(value) else str(value)
    return texts


def numbers(values) -> np.ndarray:
    """Floats as float32 (NaN where missing): the page carries them as packed bytes, `Packed`."""
    return pd.Series(values, dtype="float64").to_numpy(dtype=np.float32)


def codes_array(codes: Sequence[int], names: int) -> np.ndarray:
    """Category codes in the smallest unsigned type that holds ``names`` of them."""
    return np.asarray(codes, dtype=np.uint8 if names <= 256 else np.uint16)


def smallest_unsigned(counts: np.ndarray) -> np.ndarray:
    """Counts in the smallest unsigned type that holds them."""
    largest = int(counts.max()) if len(counts) else 0
    return counts.astype(np.uint8 if largest < 2**8 else np.uint16 if largest < 2**16 else np.uint32)


def is_missing(value) -> bool:
    """None, pandas' NA or a float NaN (a text column read back from parquet holds any of them)."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def strings(values) -> list[str | None]:
    """Strings, with missing values as null."""
    return [None if is_missing(value) else str(value) for value in values]


def categorical(
    key: str, label: str, values: Sequence, *, colours: dict[str, str] | None = None, limit: int = len(PALETTE)
) -> dict:
    """A colouring by category: ``names``, ``colours`` and one code per instruction. With fixed
    ``colours`` their order is kept; otherwise the ``limit`` most frequent values get a colour each
    and the rest share ``other``."""
    values = ["missing" if is_missing(v) else str(v) for v in values]
    if colours is not None:
        names = list(colours) + sorted(set(values) - set(colours))
        palette = [colours.get(name, OTHER_COLOUR) for name in names]
    else:
        counts = pd.Series(values, dtype=object).value_counts(sort=False)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        names = [name for name, _ in ranked[:limit]]
        palette = list(PALETTE[: len(names)])
        if len(ranked) > limit:
            names.append(OTHER)
            palette.append(OTHER_COLOUR)
    index = {name: i for i, name in enumerate(names)}
    fallback = index.get(OTHER, 0)
    return {
        "key": key,
        "label": label,
        "kind": "category",
        "names": names,
        "colours": palette,
        "codes": codes_array([index.get(v, fallback) for v in values], len(names)),
    }


def continuous(key: str, label: str, values) -> dict:
    """A colouring by a number (null where missing), with its range."""
    series = pd.Series(values, dtype="float64")
    finite = series[np.isfinite(series)]
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    return {"key": key, "label": label, "kind": "continuous", "values": numbers(series), "min": low, "max": high}


def region_name(region) -> str:
    """A region as the legend names it: ``high_mean — aligned``."""
    return f"{region} — {REGION_LABELS[region]}" if region in REGION_LABELS else str(region)


def region_colouring(key: str, label: str, regions: Sequence) -> dict:
    """A colouring by region with the map's own colours; ``unmapped`` is listed only when present."""
    present = set(regions)
    colours = {region_name(r): REGION_PALETTE[r] for r in REGION_ORDER if r != UNMAPPED or r in present}
    return categorical(key, label, [region_name(r) for r in regions], colours=colours)


def suspect_flags(ids: Sequence[str], suspects: pd.DataFrame) -> list[str]:
    """Per instruction: ``suspect pair`` when the scores contradict one of its annotated pairs,
    ``pairs agree`` when they order every scored pair as annotated, else ``no scored pairs``."""
    scored = suspects[suspects["margin"].notna()]
    with_suspect = set(scored.loc[scored["is_suspect"].astype(bool), "instruction_id"])
    with_pairs = set(scored["instruction_id"])
    return [
        "suspect pair" if i in with_suspect else "pairs agree" if i in with_pairs else "no scored pairs" for i in ids
    ]


def top_models(ids: Sequence[str], responses: pd.DataFrame) -> list[str | None]:
    """Per instruction, the model of its best-scored response (the first one on ties), None if it has none."""
    # Only the three columns are sorted: sorting the table would copy every response's text.
    columns = responses[["instruction_id", "alignment_score"]]
    ranked = columns.assign(_model=responses["model"].fillna("unknown model")).sort_values(
        ["instruction_id", "alignment_score"], ascending=[True, False], na_position="last", kind="mergesort"
    )
    best = ranked.drop_duplicates("instruction_id").set_index("instruction_id")["_model"]
    return [best.get(i) for i in ids]


def sample_instructions(map_table: pd.DataFrame, max_points: int | None, seed: int) -> pd.DataFrame:
    """All instructions, or a seeded random ``max_points`` of them in their original order."""
    if not max_points or len(map_table) <= max_points:
        return map_table.reset_index(drop=True)
    keep = np.sort(np.random.default_rng(seed).choice(len(map_table), size=max_points, replace=False))
    return map_table.iloc[keep].reset_index(drop=True)


def group_responses(ids: Sequence[str], responses: pd.DataFrame) -> tuple[pd.DataFrame, list[int]]:
    """The responses of ``ids`` ordered by instruction (input order within one), and each
    instruction's first row: instruction ``i`` owns rows ``start[i]`` to ``start[i + 1]``."""
    position = pd.Series(np.arange(len(ids)), index=pd.Index(ids))
    codes = responses["instruction_id"].map(position)
    kept = responses.assign(_position=codes)
    if not (codes.notna().all() and codes.is_monotonic_increasing):  # else sorting would copy every text as it is
        kept = kept.dropna(subset=["_position"]).sort_values("_position", kind="mergesort")
    kept = kept.reset_index(drop=True)
    counts = np.bincount(kept["_position"].astype(np.int64), minlength=len(ids))
    return kept, [0, *np.cumsum(counts).tolist()]


def colourings(
    table: pd.DataFrame, responses: pd.DataFrame, suspects: pd.DataFrame | None, others: Sequence[OtherRun]
) -> list[dict]:
    """Every way the page can colour the map, the run's regions first."""
    ids = table["instruction_id"].tolist()
    modes = [region_colouring("region", "region", table["region"].tolist())]
    for number, other in enumerate(others):
        regions = [other.regions.get(i, "not in that run") for i in ids]
        modes.append(region_colouring(f"scorer_{number}", f"region by scorer {other.label}", regions))
    if suspects is not None:
        modes.append(
            categorical(
                "suspect", "suspect flag (admap diagnose)", suspect_flags(ids, suspects), colours=SUSPECT_PALETTE
            )
        )
    modes.append(categorical("model", "model of the best-scored response", top_models(ids, responses)))
    for column in SOURCE_COLUMNS:
        # Every loader writes the column; only some datasets (UltraFeedback) fill it.
        if column in table.columns and table[column].notna().any():
            modes.append(categorical("source", f"dataset source ({column})", table[column].tolist()))
            break
    if table["mean_rating"].notna().any():
        modes.append(continuous("mean_rating", "mean rating (the dataset's labels)", table["mean_rating"]))
    return modes


def neighbourhood_colourings(ids: Sequence[str], neighbourhoods: Neighbourhoods) -> list[dict]:
    """Colourings from `admap neighbours`: near-duplicate groups, and contamination by evaluation set."""
    kept = dict(zip(neighbourhoods.near_duplicates["instruction_id"], neighbourhoods.near_duplicates["is_kept"]))
    names = list(NEAR_DUPLICATE_PALETTE)
    duplicate = [names[2] if i not in kept else names[1] if kept[i] else names[0] for i in ids]
    flagged = neighbourhoods.contamination[neighbourhoods.contamination["is_contaminated"]]
    matched = flagged.set_index("instruction_id")["eval_set"]
    contaminated = [f"contaminated: {matched[i]}" if i in matched.index else CLEAN for i in ids]
    return [
        categorical("near_duplicate", "near duplicates (admap neighbours)", duplicate, colours=NEAR_DUPLICATE_PALETTE),
        categorical(
            "contamination",
            "contamination with evaluation prompts (admap neighbours)",
            contaminated,
            colours={CLEAN: "#d0d0d0", **{f"contaminated: {n}": "#d62728" for n in sorted(set(matched))}},
        ),
    ]


def semantic_coordinates(ids: Sequence[str], neighbourhoods: Neighbourhoods | None) -> dict | None:
    """The semantic view's ``x``/``y`` per instruction (None where the layout lacks one) and what made it."""
    if neighbourhoods is None or neighbourhoods.layout is None:
        return None
    layout = neighbourhoods.layout.set_index("instruction_id")
    record = neighbourhoods.summary.get("layout", {})
    return {
        "x": numbers(layout["semantic_x"].reindex(list(ids))),
        "y": numbers(layout["semantic_y"].reindex(list(ids))),
        "method": record.get("method"),
        "neighbourhood_kept": finite_or_none(record.get("neighbourhood_kept")),
        "model": neighbourhoods.summary.get("model"),
    }


def dynamics_by_instruction(ids: Sequence[str], pairs: pd.DataFrame) -> pd.DataFrame:
    """`instruction_dynamics` of ``pairs`` (`admap.dynamics.pair_dynamics`) in the order of ``ids``, NaN where an
    instruction has no trained pair; refused when none of ``ids`` has one (margins of another dataset)."""
    table = instruction_dynamics(pairs)
    aligned = table.set_index(table["instruction_id"].astype(str)).reindex(list(ids))
    if aligned["confidence"].isna().all():
        raise ValueError(
            f"none of the {len(ids)} instructions shown has training dynamics: the pair margins name "
            f"{len(table)} other instructions (a DPO run on pairs of another map?)"
        )
    return aligned


def dynamics_coordinates(instructions: pd.DataFrame, pairs: pd.DataFrame) -> dict:
    """The training-dynamics view: per instruction (`dynamics_by_instruction`) the mean ``variability`` (x),
    ``confidence`` (y) and ``correctness`` of its pairs and their count, and what the view summarises."""
    return {
        "x": numbers(instructions["variability"]),
        "y": numbers(instructions["confidence"]),
        "correctness": numbers(instructions["correctness"]),
        "n_pairs": instructions["n_pairs"].fillna(0).to_numpy(dtype=np.uint32),
        "pairs": int(len(pairs)),
        "points": int(pairs["n_points"].max()),
        "instructions": int(instructions["confidence"].notna().sum()),
    }


def dynamics_colourings(instructions: pd.DataFrame) -> list[dict]:
    """Colourings from the training dynamics (`dynamics_by_instruction`): each instruction's region (the one
    most of its pairs are in) and its pairs' mean confidence."""
    regions = [NO_DYNAMICS if is_missing(r) else DYNAMICS_REGION_LABELS[r] for r in instructions["region"]]
    return [
        categorical(
            "dynamics_region", "training-dynamics region (most of its pairs)", regions, colours=DYNAMICS_PALETTE
        ),
        continuous("dynamics_confidence", "DPO confidence: mean σ(margin) of its pairs", instructions["confidence"]),
    ]


def suspect_pairs(ids: Sequence[str], suspects: pd.DataFrame) -> dict[str, list]:
    """The pairs the scores contradict, with the index of their instruction in the page."""
    position = {instruction_id: i for i, instruction_id in enumerate(ids)}
    flagged = suspects[suspects["is_suspect"].astype(bool) & suspects["instruction_id"].isin(position)]
    return {
        "instruction": [position[i] for i in flagged["instruction_id"]],
        "chosen": flagged["chosen_id"].astype(str).tolist(),
        "rejected": flagged["rejected_id"].astype(str).tolist(),
        "margin": [finite_or_none(v) for v in flagged["margin"].tolist()],
        "suspicion": [finite_or_none(v) for v in flagged["suspicion_score"].tolist()],
    }


def finite_or_none(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def threshold_distance(table: pd.DataFrame, thresholds: dict) -> np.ndarray:
    """Each instruction's distance to the nearest region boundary the map draws (the variance line, and the mean
    line on its low-variance side), in units of each axis's range; infinite where it has no position."""
    x = table["score_variance"].where(table["is_mapped"].astype(bool)).to_numpy(dtype=np.float64)
    y = table["mean_score"].where(table["is_mapped"].astype(bool)).to_numpy(dtype=np.float64)
    variance, mean = finite_or_none(thresholds.get("variance")), finite_or_none(thresholds.get("mean"))
    distance = np.full(len(table), np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        if variance is not None:
            distance = np.fmin(distance, np.abs(x - variance) / (np.nanmax(x) - np.nanmin(x) or 1.0))
        if mean is not None:
            below = x < variance if variance is not None else np.isfinite(x)
            to_mean = np.abs(y - mean) / (np.nanmax(y) - np.nanmin(y) or 1.0)
            distance = np.fmin(distance, np.where(below, to_mean, np.inf))
    return np.where(np.isfinite(distance), distance, np.inf)


def text_priority(table: pd.DataFrame, suspects: pd.DataFrame | None, thresholds: dict, seed: int) -> np.ndarray:
    """The page's instructions (positions) in the order their texts are kept whole when not all of them can be:
    those with a pair the scores contradict, most suspicious first (what `admap diagnose` sends a user to read);
    then, alternately, the next nearest a region boundary (where a user checks what the split did) and the next
    of a seeded random sample (so that every part of the map has some)."""
    n = len(table)
    by_boundary = np.empty(n, dtype=np.int64)
    by_boundary[np.argsort(threshold_distance(table, thresholds), kind="stable")] = np.arange(n)
    by_sample = np.random.default_rng(seed).permutation(n)
    rank = np.minimum(2 * by_boundary, 2 * by_sample + 1)
    suspicion = np.full(n, np.inf)
    if suspects is not None:
        flagged = suspects[suspects["is_suspect"].astype(bool)]
        most = flagged.groupby(flagged["instruction_id"].astype(str))["suspicion_score"].max()
        position = pd.Series(np.arange(n), index=table["instruction_id"].astype(str))
        found = most[most.index.isin(position.index)]
        suspicion[position[found.index].to_numpy()] = -found.fillna(0).to_numpy()
    return np.lexsort((rank, suspicion))


def whole_instructions(chars: np.ndarray, priority: np.ndarray, budget: int) -> np.ndarray:
    """Which instructions keep all their texts whole: those first in ``priority`` whose texts (``chars`` each, all
    together) fit in `WHOLE_SHARE` of ``budget`` characters; every one when all texts fit (or no budget)."""
    if budget <= 0 or int(chars.sum()) <= budget:
        return np.ones(len(chars), dtype=bool)
    whole = np.zeros(len(chars), dtype=bool)
    left = int(budget * WHOLE_SHARE)
    smallest = int(chars.min()) if len(chars) else 0
    for k in priority.tolist():
        if chars[k] <= left:
            whole[k] = True
            left -= int(chars[k])
        if left < smallest:
            break
    return whole


@dataclass(frozen=True)
class PageInstructions:
    """The instructions a page shows (``table``, in page order) and their responses (``responses``: instruction
    ``i`` owns rows ``start[i]`` to ``start[i + 1]``)."""

    table: pd.DataFrame
    responses: pd.DataFrame
    start: np.ndarray

    @classmethod
    def of(cls, map_table: pd.DataFrame, responses: pd.DataFrame, max_points: int | None, seed: int):
        table = sample_instructions(map_table, max_points, seed)
        grouped, start = group_responses(table["instruction_id"].astype(str).tolist(), responses)
        return cls(table, grouped, np.asarray(start, dtype=np.int64))

    @property
    def proxies(self) -> pd.Series:
        if "proxy_response" in self.table.columns:
            return self.table["proxy_response"]
        return pd.Series([None] * len(self.table), dtype=object)

    def detail(self, i: int) -> dict:
        """Instruction ``i``'s texts whole, and its responses: what `admap view --serve` answers the page with."""
        row = self.table.iloc[i]
        rows = self.responses.iloc[int(self.start[i]) : int(self.start[i + 1])]
        return {
            "index": i,
            "id": str(row["instruction_id"]),
            "text": strings([row["instruction"]])[0],
            "proxy": strings([self.proxies.iat[i]])[0],
            "unmapped_reason": strings([row["unmapped_reason"]])[0],
            "responses": [
                {
                    "id": str(response["response_id"]),
                    "text": strings([response["response"]])[0],
                    "model": strings([response["model"]])[0],
                    "score": finite_or_none(response["alignment_score"]),
                    "rating": finite_or_none(response["rating"]),
                    "chars": int(response["response_chars"]),
                    "words": int(response["response_words"]),
                }
                for response in rows.to_dict(orient="records")
            ],
        }

    def search(self, query: str, listed: int = SEARCH_RESULTS_LISTED) -> dict:
        """The instructions whose text holds ``query`` (any case) or whose id is it, as the page's own search
        finds them; the first ``listed`` with the start of their text."""
        query = query.strip().lower()
        texts = self.table["instruction"]
        if not query:
            hits = np.zeros(len(texts), dtype=bool)
        else:
            hits = texts.astype("string").str.lower().str.contains(query, regex=False).fillna(False).to_numpy(bool)
            hits |= (self.table["instruction_id"].astype(str).str.lower() == query).to_numpy()
        indices = np.flatnonzero(hits).astype(np.uint32)
        return {
            "count": int(len(indices)),
            "indices": indices,
            "texts": [shorten(t, SNIPPET_CHARS) for t in strings(texts.iloc[indices[:listed]])],
        }


def derived_response_ids(ids: Sequence[str], grouped: pd.DataFrame, start: np.ndarray) -> bool:
    """Whether every response id is ``<instruction_id>-<k>`` in order (as admap's loaders name them): the page
    then rebuilds them instead of carrying them."""
    counts = np.diff(start)
    expected = [f"{i}-{k}" for i, count in zip(ids, counts.tolist()) for k in range(count)]
    return grouped["response_id"].astype(str).tolist() == expected


def text_plan(page: PageInstructions, priority: np.ndarray, budget: int) -> tuple[np.ndarray, int | None, int]:
    """How a single-file page spends ``budget`` characters of text: which instructions keep theirs whole
    (`whole_instructions` in ``priority`` order), the cap on every other text (`text_limit` of what is left), and
    how many texts that cap shortens."""
    own = np.stack([text_lengths(page.table["instruction"]), text_lengths(page.proxies)], axis=1)
    counts = np.diff(page.start)
    response_lengths = text_lengths(page.responses["response"])
    owner = np.repeat(np.arange(len(page.table)), counts)
    chars = own.sum(axis=1) + np.bincount(owner, response_lengths, len(page.table)).astype(np.int64)
    whole = whole_instructions(chars, priority, budget)
    if whole.all():
        return whole, None, 0
    rest = np.concatenate([own[~whole].ravel(), response_lengths[~whole[owner]]])
    limit = text_limit(rest, budget - int(chars[whole].sum()))
    return whole, limit, int((rest > limit).sum()) if limit is not None else 0


def page_details(page: PageInstructions, whole: np.ndarray, limit: int | None) -> dict:
    """The texts and responses of the page's instructions: whole where ``whole`` is set, else cut at ``limit``."""
    table, grouped, start = page.table, page.responses, page.start
    ids = table["instruction_id"].astype(str).tolist()
    whole_rows = np.repeat(whole, np.diff(start))
    models = categorical("model", "model", grouped["model"].tolist(), limit=65_536)
    return {
        "whole": whole.astype(np.uint8),
        "text": shortened(table["instruction"], limit, whole),
        "proxy": shortened(page.proxies, limit, whole),
        "unmapped_reason": strings(table["unmapped_reason"]),
        "responses": {
            "start": start.astype(np.uint32),
            "id": None if derived_response_ids(ids, grouped, start) else grouped["response_id"].astype(str).tolist(),
            "text": shortened(grouped["response"], limit, whole_rows),
            "model": {"names": models["names"], "codes": models["codes"]},
            "score": numbers(grouped["alignment_score"]),
            "rating": numbers(grouped["rating"]),
            "chars": smallest_unsigned(grouped["response_chars"].to_numpy()),
            "words": smallest_unsigned(grouped["response_words"].to_numpy()),
        },
    }


def build_payload(
    map_table: pd.DataFrame,
    responses: pd.DataFrame,
    summary: dict,
    *,
    suspects: pd.DataFrame | None = None,
    others: Sequence[OtherRun] = (),
    neighbourhoods: Neighbourhoods | None = None,
    dynamics: pd.DataFrame | None = None,
    max_points: int | None = MAX_POINTS,
    seed: int = 42,
    text_budget: int = TEXT_BUDGET,
    texts: str = INLINE,
    name: str = "admap",
    run_dir: str | None = None,
    page: PageInstructions | None = None,
) -> dict:
    """The page's data: ``meta`` (titles, counts, thresholds), ``instructions`` (ids, positions, statistics), the
    ``colourings``, the suspect pairs and, where `admap neighbours` ran (``neighbourhoods``), the ``semantic``
    view's coordinates with its near-duplicate and contamination colourings and, given a DPO run's training
    dynamics (``dynamics``: `admap.dynamics.pair_dynamics` of its pair margins), the ``dynamics`` view's
    coordinates with its region and confidence colourings. Numbers are float32 or unsigned arrays (packed into
    the page as bytes), ids a `Lines`.

    ``details`` holds the texts and responses (`page_details`) with ``texts`` ``"inline"``: beyond
    ``text_budget`` characters, the instructions first in `text_priority` keep theirs whole and the rest are
    shortened, longest first. With ``texts`` ``"served"`` there are none: the page asks `admap view --serve`.
    ``name`` names the export's file; ``run_dir``, the run folder as the command that wrote the page was given it
    (``name`` when None), goes into the `admap select` command lines the page shows. ``page``: the instructions
    shown, where the caller has them already (`admap view --serve` answers from the same); else they are
    ``max_points`` of ``map_table`` (`PageInstructions.of`)."""
    if texts not in (INLINE, SERVED):
        raise ValueError(f"texts must be {INLINE!r} or {SERVED!r}, got {texts!r}")
    page = page if page is not None else PageInstructions.of(map_table, responses, max_points, seed)
    table, grouped = page.table, page.responses
    ids = table["instruction_id"].astype(str).tolist()
    thresholds = summary.get("thresholds", {})
    mapped = table["is_mapped"].astype(bool)
    by_instruction = dynamics_by_instruction(ids, dynamics) if dynamics is not None else None
    details, limit, whole, shortened_count = None, None, np.ones(len(table), dtype=bool), 0
    if texts == INLINE:
        whole, limit, shortened_count = text_plan(page, text_priority(table, suspects, thresholds, seed), text_budget)
        details = page_details(page, whole, limit)
    return {
        "version": PAYLOAD_VERSION,
        "meta": {
            "title": f"Alignment Data Map — {dataset_label(summary)}",
            "name": name,
            "run_dir": run_dir if run_dir is not None else name,
            "scorer": run_label(summary),
            "region_method": thresholds.get("method"),
            "thresholds": {key: finite_or_none(thresholds.get(key)) for key in ("variance", "mean")},
            "instructions_total": int(len(map_table)),
            "instructions_shown": int(len(table)),
            "on_map": int(mapped.sum()),
            "responses": int(len(grouped)),
            "seed": seed if len(table) < len(map_table) else None,
            "texts": texts,
            "text_limit": limit,
            "texts_shortened": shortened_count,
            "instructions_whole": int(whole.sum()) if texts == INLINE else None,
            "created": summary.get("created"),
            "admap_version": __version__,
            "diagnosed": suspects is not None,
        },
        "instructions": {
            "id": Lines(ids),
            "x": numbers(table["score_variance"].where(mapped)),
            "y": numbers(table["mean_score"].where(mapped)),
            "n_responses": smallest_unsigned(table["n_responses"].to_numpy()),
        },
        "colourings": colourings(table, grouped, suspects, others)
        + (neighbourhood_colourings(ids, neighbourhoods) if neighbourhoods is not None else [])
        + (dynamics_colourings(by_instruction) if by_instruction is not None else []),
        "suspects": suspect_pairs(ids, suspects) if suspects is not None else None,
        "semantic": semantic_coordinates(ids, neighbourhoods),
        "dynamics": dynamics_coordinates(by_instruction, dynamics) if by_instruction is not None else None,
        "details": details,
    }


class Lines(list):
    """Strings the page carries as one newline-joined string: a million ids as a JSON array are a larger page
    and a slower parse. Only for strings that hold no newline (`lines_or_list`)."""


def packed(array: np.ndarray) -> dict:
    """A numeric array as the page carries it: its little-endian bytes in base64, with their type."""
    if array.dtype.name not in PACKED_TYPES:
        raise TypeError(f"the page packs {sorted(PACKED_TYPES)} arrays, not {array.dtype}")
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return {"dtype": array.dtype.name, "base64": base64.b64encode(data).decode("ascii")}


def unpacked(value):
    """The inverse of the page's encoding (`packed`, `Lines`), for a page's JSON read back (`read_page`)."""
    if isinstance(value, dict) and set(value) == {"dtype", "base64"}:
        return np.frombuffer(base64.b64decode(value["base64"]), dtype=np.dtype(value["dtype"]).newbyteorder("<"))
    if isinstance(value, dict) and set(value) == {"lines"}:
        return value["lines"].split("\n") if value["lines"] else []
    return value


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return packed(value)
    if isinstance(value, Lines):
        if any("\n" in item for item in value):  # cannot be joined: carried as an array
            return list(value)
        return {"lines": "\n".join(value)}
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def embedded_json_parts(payload: dict) -> Iterator[str]:
    """``payload`` but its ``details`` as JSON that is safe inside a ``<script>`` element, in parts (each of the
    payload's columns one): no ``<``, ``>`` or ``&`` at all, so no text can end the element or open a comment;
    NaN is refused (JSON.parse rejects it)."""
    head = {key: value for key, value in payload.items() if key != "details"}
    for part in _json_parts(head, depth=2):
        yield re.sub(r"[<>&]", lambda match: _JSON_ESCAPES[match.group(0)], part)


def _json_parts(value, *, depth: int) -> Iterator[str]:
    if depth and isinstance(value, dict):
        for position, (key, item) in enumerate(value.items()):
            yield ("{" if position == 0 else ",") + json.dumps(str(key), ensure_ascii=False) + ":"
            yield from _json_parts(item, depth=depth - 1)
        yield "}" if value else "{}"
    else:
        yield json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_jsonable)


def embed_json(payload: dict) -> str:
    """`embedded_json_parts` joined."""
    return "".join(embedded_json_parts(payload))


def compressed_details(details: dict | None) -> str:
    """The texts and responses as the page carries them: JSON, gzip, base64 (no character a ``<script>`` element
    could end on). The page inflates them after its first paint (DecompressionStream); "" when there are none."""
    if details is None:
        return ""
    buffer = io.BytesIO()
    # mtime 0: the same run writes the same page.
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as stream:
        for part in _json_parts(details, depth=2):
            stream.write(part.encode("utf-8"))
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def read_page(page: str | Path) -> dict:
    """The payload a written page holds (its ``details`` inflated, arrays unpacked): for scripts and tests."""
    text = Path(page).read_text(encoding="utf-8")
    data = re.search(r'<script type="application/json" id="admap-data">(.*?)</script>', text, re.S).group(1)
    payload = json.loads(data, object_hook=unpacked)
    details = re.search(r'<script type="application/octet-stream" id="admap-details">(.*?)</script>', text, re.S)
    blob = details.group(1).strip() if details else ""
    payload["details"] = json.loads(gzip.decompress(base64.b64decode(blob)), object_hook=unpacked) if blob else None
    return payload


def read_asset(name: str) -> str:
    return (resources.files("admap") / "view_assets" / name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(script: str, style: str, *, served: bool = False) -> str:
    """No script or style but the page's own (by hash), so that even an injected element could not run; no
    network, but for a served page its own server (``connect-src 'self'``), which it asks for texts."""
    connect = "connect-src 'self'; " if served else ""
    return (
        f"default-src 'none'; {connect}script-src {_sha256(script)}; style-src {_sha256(style)}; "
        "img-src data: blob:; base-uri 'none'; form-action 'none'"
    )


def html_parts(payload: dict) -> Iterator[str]:
    """The page in parts: the template with its style, script and data inlined. Written part by part, a
    large page is never held whole, nor its data as one string."""
    template, style, script = read_asset("view.html"), read_asset("view.css"), read_asset("view.js")
    for asset, closing in ((style, "</style"), (script, "</script")):
        if closing in asset.lower():
            raise ValueError(f"admap/view_assets: an asset contains {closing!r}, which would end its element early")
    served = payload["meta"]["texts"] == SERVED
    parts = {
        "TITLE": html.escape(payload["meta"]["title"]),
        # The policy holds only keywords and base64 hashes: single quotes, never a double quote.
        "CSP": html.escape(content_security_policy(script, style, served=served), quote=False),
        "STYLE": style,
        "SCRIPT": script,
    }
    # The template's text and its markers alternate; only the template's markers are substituted, never one
    # inside the data.
    for position, text in enumerate(re.split(r"@@ADMAP_([A-Z]+)@@", template)):
        if position % 2 == 0:
            yield text
        elif text == "DATA":
            yield from embedded_json_parts(payload)
        elif text == "DETAILS":
            yield compressed_details(payload["details"])
        else:
            yield parts[text]


def render_html(payload: dict) -> str:
    """The page as one string (`html_parts` joined)."""
    return "".join(html_parts(payload))


def write_view(payload: dict, path: str | Path) -> Path:
    """Write the page to ``path`` atomically, part by part; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial")
    with staging.open("w", encoding="utf-8") as handle:
        handle.writelines(html_parts(payload))
    os.replace(staging, path)
    logger.info("%s: %d instructions, %.1f MB", path, payload["meta"]["instructions_shown"], path.stat().st_size / 1e6)
    return path


class _PageHandler(http.server.BaseHTTPRequestHandler):
    """Answers ``GET`` and ``HEAD`` with the page and, where the server has the run's texts, the page's two
    questions: ``/api/instruction/<i>`` (`PageInstructions.detail`) and ``/api/search?q=`` (its ``search``).
    Other methods get http.server's 501."""

    server: PageServer
    # Refusals carry a status line and a short plain-text reason, nothing a browser would render or sniff.
    error_message_format = "%(code)d %(message)s\n"
    error_content_type = "text/plain; charset=utf-8"

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, *, with_body: bool) -> None:
        # A DNS-rebinding page reaches this port under its own domain name; only loopback names are answered.
        hosts = self.headers.get_all("Host") or []
        if len(hosts) != 1 or hosts[0].lower() not in self.server.allowed_hosts:
            allowed = " or ".join(sorted(self.server.allowed_hosts))
            logger.warning("refused a request with Host %s: only %s are answered", hosts, allowed)
            self.send_error(HTTPStatus.FORBIDDEN, "Host not allowed")
            return
        # The path is compared, never resolved: nothing but the page and the run's own texts can be named.
        path, _, query = self.path.partition("?")
        path = unquote(path)
        if path in self.server.page_paths:
            self._send(self.server.page, "text/html; charset=utf-8", with_body)
            return
        texts = self.server.texts
        instruction = re.fullmatch(r"/api/instruction/(\d{1,9})", path)
        if texts is not None and instruction and int(instruction.group(1)) < len(texts.table):
            self._send_json(texts.detail(int(instruction.group(1))), with_body)
        elif texts is not None and path == "/api/search":
            self._send_json(texts.search(parse_qs(query).get("q", [""])[0]), with_body)
        else:
            self.send_error(HTTPStatus.NOT_FOUND)

    def _send_json(self, answer: dict, with_body: bool) -> None:
        body = json.dumps(answer, ensure_ascii=False, allow_nan=False, default=_jsonable).encode("utf-8")
        self._send(body, "application/json; charset=utf-8", with_body)

    def _send(self, body: bytes, content_type: str, with_body: bool) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        # Every `admap view` writes a new page at the same address.
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        logger.debug("%s - " + format, self.address_string(), *args)


class PageServer(http.server.ThreadingHTTPServer):
    """Serves one page on 127.0.0.1: ``page`` at ``/`` and ``/<name>`` and, given the run's ``texts``, the page's
    questions about them, to requests whose Host is ``127.0.0.1:PORT`` or ``localhost:PORT``; every other path is
    404, a foreign Host 403."""

    def __init__(self, page: bytes, name: str, port: int, texts: PageInstructions | None = None):
        self.page = page
        self.texts = texts
        self.page_paths = frozenset({"/", f"/{name}"})
        super().__init__(("127.0.0.1", port), _PageHandler)
        bound_port = self.server_address[1]
        # Browsers leave the default port out of Host.
        suffixes = (f":{bound_port}", "") if bound_port == 80 else (f":{bound_port}",)
        self.allowed_hosts = frozenset(host + suffix for host in ("127.0.0.1", "localhost") for suffix in suffixes)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


def make_server(path: str | Path, port: int) -> PageServer:
    """A server for the page at ``path`` on 127.0.0.1 (``port`` 0: any free port), not yet serving. The page is
    read now, once: the folder around it is never looked at."""
    path = Path(path)
    return PageServer(path.read_bytes(), path.name, port)


def serve(server: PageServer) -> None:
    """Serve until interrupted (Ctrl-C)."""
    with server:
        logger.info("serving %s (Ctrl-C to stop)", server.url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            logger.info("stopped serving %s", server.url)
