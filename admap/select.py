"""Stage 5, select: instruction subsets (regions, same-size random, full) and their DPO pairs.

Pair rules:
- ``annotated`` (the paper's): the dataset's own pairs where it has them (pair datasets);
  otherwise every pair of an instruction's distinct response texts with different ratings,
  the higher rating chosen, ties skipped (up to 6 pairs from 4 responses).
- ``best_vs_random``: the highest-rated response against one random lower-rated response
  (the ultrafeedback_binarized convention).
- ``alignment_score``: every pair ordered by alignment score, ties skipped; for data without labels.

Rules over responses pair texts, not completions: where two completions of an instruction share
a text, the text takes the last rating given to it (`distinct_texts`), as the authors' code does.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from admap.datamap import id_run_starts, instruction_codes

PAIR_RULES = ("annotated", "best_vs_random", "alignment_score")
PAIR_COLUMNS = ["instruction_id", "chosen_id", "rejected_id"]


def random_instruction_ids(instruction_ids: np.ndarray, size: int, *, seed: int = 42) -> np.ndarray:
    """``size`` instruction ids drawn without replacement, reproducible from ``seed``."""
    if not 0 <= size <= len(instruction_ids):
        raise ValueError(f"size must be within [0, {len(instruction_ids)}], got {size}")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(instruction_ids), size=size, replace=False)
    return np.asarray(instruction_ids)[np.sort(chosen)]


def rows_of_instructions(frame: pd.DataFrame, instruction_ids) -> pd.DataFrame:
    """The rows of ``frame`` (responses, pairs) whose ``instruction_id`` is one of ``instruction_ids``,
    in order; a row without an instruction id is never selected."""
    # Series.isin makes one pyarrow scalar of each wanted id at a time (seconds for 10^5 ids); pyarrow's
    # is_in takes the whole set at once, and here looks up each run of equal consecutive ids once.
    column = frame["instruction_id"]
    starts = id_run_starts(column.array)
    run_ids = pa.array(column.iloc[starts])
    wanted = pc.is_in(run_ids, value_set=pa.array(instruction_ids, type=run_ids.type), skip_nulls=True)
    return frame[np.repeat(wanted.to_numpy(zero_copy_only=False), np.diff(starts, append=len(column)))]


# The dtype pd.DataFrame gives a column of text.
_TEXT = pd.Series(["text"]).dtype


def _typed_alike_as_rows(dtype) -> bool:
    """Whether pd.DataFrame, given rows (tuples) of this dtype's values, types their column as ``dtype``."""
    return dtype == _TEXT or (isinstance(dtype, np.dtype) and dtype.kind in "biuf")


def _pair_frame(instruction_ids, chosen_ids, rejected_ids) -> pd.DataFrame:
    """The pairs as pd.DataFrame types a list of ``(instruction_id, chosen_id, rejected_id)`` tuples."""
    columns = (instruction_ids, chosen_ids, rejected_ids)
    if len(chosen_ids) and all(_typed_alike_as_rows(column.dtype) for column in columns):
        return pd.DataFrame(dict(zip(PAIR_COLUMNS, columns)))
    # Other dtypes, and no pairs at all, through the tuples themselves: slower, typed the same by construction.
    return pd.DataFrame(list(zip(*columns)), columns=PAIR_COLUMNS)


def _within_group_pairs(group_sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of positions within each group of consecutive positions (``group_sizes`` long, in
    order), groups in order and, within a group, in ``itertools.combinations`` order."""
    group_starts = np.cumsum(group_sizes) - group_sizes
    pair_counts = group_sizes * (group_sizes - 1) // 2
    pair_starts = np.cumsum(pair_counts) - pair_counts
    first = np.empty(int(pair_counts.sum()), dtype=np.intp)
    second = np.empty_like(first)
    for size in np.unique(group_sizes[group_sizes > 1]):
        groups = np.flatnonzero(group_sizes == size)
        a, b = np.triu_indices(size, k=1)  # row by row: combinations(range(size), 2) order
        slots = pair_starts[groups, None] + np.arange(len(a))
        first[slots] = group_starts[groups, None] + a
        second[slots] = group_starts[groups, None] + b
    return first, second


def _ordered_pairs(responses: pd.DataFrame, value_column: str) -> pd.DataFrame:
    """Every pair of an instruction's responses with unequal values, the higher first; instructions
    in first-appearance order, pairs in ``combinations`` order of the responses in load order."""
    rated = np.flatnonzero(responses[value_column].notna().to_numpy())
    codes, unique_ids = instruction_codes(responses["instruction_id"].iloc[rated])
    # Grouped as a groupby groups (positions into ``rated``): rows without an instruction id left out,
    # instructions in first-appearance order, an instruction's rows in load order.
    grouped = np.flatnonzero(codes >= 0)
    grouped = grouped[np.argsort(codes[grouped], kind="stable")]
    first, second = _within_group_pairs(np.bincount(codes[grouped], minlength=len(unique_ids)))
    first, second = grouped[first], grouped[second]
    values = responses[value_column].to_numpy()[rated]
    unequal = values[first] != values[second]
    first, second = first[unequal], second[unequal]
    first_wins = values[first] > values[second]
    winners, losers = np.where(first_wins, first, second), np.where(first_wins, second, first)
    response_ids = responses["response_id"]
    return _pair_frame(
        unique_ids.take(codes[winners]),
        response_ids.iloc[rated[winners]].reset_index(drop=True),
        response_ids.iloc[rated[losers]].reset_index(drop=True),
    )


def distinct_texts(responses: pd.DataFrame) -> pd.DataFrame:
    """One row per text of an instruction: a response that repeats an earlier text (``same_text_as``)
    is dropped, and the last of them with a rating lends the text its rating and its id, so that the
    pair names the completion whose rating decided it. Responses in their order of first appearance."""
    if "same_text_as" not in responses.columns:  # responses not from a loader: no repeats are marked
        return responses
    repeats = responses["same_text_as"].notna().to_numpy()
    if not repeats.any():
        return responses
    distinct = responses[~repeats].copy()
    rated_repeats = responses[repeats & responses["rating"].notna().to_numpy()]
    last = rated_repeats.drop_duplicates("same_text_as", keep="last")
    position = pd.Series(np.arange(len(distinct)), index=distinct["response_id"].to_numpy())
    rows = position[last["same_text_as"].to_numpy()].to_numpy()
    for column in ("rating", "response_id"):
        values = distinct[column].to_numpy(copy=True)
        values[rows] = last[column].to_numpy()
        distinct[column] = values
    return distinct


def _best_vs_random(responses: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for instruction_id, group in responses.dropna(subset=["rating"]).groupby("instruction_id", sort=False):
        ratings = group["rating"].to_numpy()
        ids = group["response_id"].to_numpy()
        best = int(np.argmax(ratings))  # first of the best on ties, in load order
        lower = np.flatnonzero(ratings < ratings[best])
        if len(lower):
            rows.append((instruction_id, ids[best], ids[rng.choice(lower)]))
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def preference_pairs(
    responses: pd.DataFrame,
    *,
    rule: str = "annotated",
    annotated: pd.DataFrame | None = None,
    seed: int = 42,
) -> pd.DataFrame:
    """Chosen/rejected response ids (``instruction_id``, ``chosen_id``, ``rejected_id``).

    ``responses`` needs ``instruction_id``, ``response_id``, ``rating`` and, for the
    ``alignment_score`` rule, ``alignment_score``. ``annotated`` is the dataset's own pairs.
    """
    if rule not in PAIR_RULES:
        raise ValueError(f"rule must be one of {PAIR_RULES}, got {rule!r}")
    if rule == "annotated" and annotated is not None and not annotated.empty:
        return annotated[PAIR_COLUMNS].reset_index(drop=True)
    responses = distinct_texts(responses)
    if rule == "annotated":
        if not responses["rating"].notna().any():
            raise ValueError(
                "rule 'annotated' needs ratings or annotated pairs; this data has neither (use rule 'alignment_score')"
            )
        return _ordered_pairs(responses, "rating")
    if rule == "best_vs_random":
        if not responses["rating"].notna().any():
            raise ValueError("rule 'best_vs_random' needs ratings; this data has none")
        return _best_vs_random(responses, seed)
    return _ordered_pairs(responses, "alignment_score")


def trl_records(pairs: pd.DataFrame, instructions: pd.DataFrame, responses: pd.DataFrame) -> list[dict]:
    """TRL's conversational preference format: ``prompt`` / ``chosen`` / ``rejected`` message
    lists, plus ``instruction_id`` and the two response ids for tracing back."""
    ids = pairs[PAIR_COLUMNS]
    # One lookup per column, not per pair: at UltraFeedback's size that is seconds, not minutes.
    prompts = ids["instruction_id"].map(instructions.set_index("instruction_id")["prompt_messages"])
    text_of = responses.set_index("response_id")["response"]
    chosen, rejected = ids["chosen_id"].map(text_of), ids["rejected_id"].map(text_of)
    return [
        {
            "prompt": json.loads(prompt),
            "chosen": [{"role": "assistant", "content": chosen_text}],
            "rejected": [{"role": "assistant", "content": rejected_text}],
            "instruction_id": instruction_id,
            "chosen_id": chosen_id,
            "rejected_id": rejected_id,
        }
        for (instruction_id, chosen_id, rejected_id), prompt, chosen_text, rejected_text in zip(
            ids.itertuples(index=False), prompts.tolist(), chosen.tolist(), rejected.tolist()
        )
    ]
