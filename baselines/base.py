"""The selection-strategy protocol and its registry: a new way to pick training data is one new
module that registers itself.

A strategy sees one finished `admap map` run (`SelectionInputs`) and returns the ids of the
instructions it keeps. Every strategy but ``full`` returns exactly ``size`` ids, so that subsets
compared in an experiment hold the same number of instructions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from admap.datamap import HIGH_MEAN
from admap.registry import Registry


@dataclass(frozen=True)
class SelectionInputs:
    """What a strategy may look at.

    ``map_table``: ``map.parquet`` (one row per instruction; only ``is_mapped`` rows are candidates).
    ``responses``: ``scores.parquet`` (one row per response: ``rating``, ``alignment_score``,
    ``response_chars``, ...). ``pairs``: the training pairs under the run's pair rule
    (``instruction_id``, ``chosen_id``, ``rejected_id``). ``scorer``: the run's scorer name.
    ``dynamics``: per-pair DPO implicit reward margins per epoch from an earlier training run
    (``pair_margins.parquet``: ``instruction_id``, ``chosen_id``, ``rejected_id``, ``epoch``,
    ``margin``), or None.
    """

    map_table: pd.DataFrame
    responses: pd.DataFrame
    pairs: pd.DataFrame
    scorer: str
    dynamics: pd.DataFrame | None = None

    @property
    def candidates(self) -> pd.DataFrame:
        """The mapped instructions, in map order."""
        return self.map_table[self.map_table["is_mapped"]]


class SelectionStrategy(Protocol):
    """Picks instruction ids from ``inputs.candidates``: exactly ``size`` of them (``full``: all)."""

    name: str

    def select(self, inputs: SelectionInputs, *, size: int, seed: int) -> np.ndarray: ...


STRATEGIES: Registry[type] = Registry("selection strategy")


def subset_size(inputs: SelectionInputs, fraction: float | None) -> int:
    """How many instructions a subset holds: ``fraction`` of the mapped ones, or by default as many
    as the map's high-mean region (about a third under the paper's rule)."""
    candidates = inputs.candidates
    if fraction is None:
        return int((candidates["region"] == HIGH_MEAN).sum())
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return max(1, round(fraction * len(candidates)))


def top_by(candidates: pd.DataFrame, key: pd.Series | np.ndarray, size: int, *, descending: bool = True) -> np.ndarray:
    """The ``size`` instruction ids with the largest (or smallest) ``key``, ties broken by
    instruction id so that the choice never depends on row order. NaN keys come last."""
    values = np.asarray(key, dtype=float)
    if len(values) != len(candidates):
        raise ValueError(f"key has {len(values)} values for {len(candidates)} candidates")
    ids = candidates["instruction_id"].to_numpy()
    ordered = -values if descending else values
    ordered = np.where(np.isnan(ordered), np.inf, ordered)
    order = np.lexsort((ids, ordered))
    return ids[order[:size]]


def select_instructions(
    strategy: str, inputs: SelectionInputs, *, fraction: float | None = None, seed: int = 42
) -> np.ndarray:
    """Run the named strategy and check its answer: unique mapped ids, exactly the subset size
    (``full``: every mapped instruction)."""
    size = subset_size(inputs, fraction)
    chosen = np.asarray(STRATEGIES.get(strategy)().select(inputs, size=size, seed=seed))
    candidates = set(inputs.candidates["instruction_id"])
    unknown = [i for i in chosen if i not in candidates]
    if unknown:
        raise ValueError(f"strategy {strategy!r} returned ids that are not mapped instructions: {unknown[:3]}")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"strategy {strategy!r} returned duplicate instruction ids")
    expected = len(candidates) if strategy == "full" else size
    if len(chosen) != expected:
        raise ValueError(f"strategy {strategy!r} returned {len(chosen)} instructions, expected {expected}")
    return chosen
