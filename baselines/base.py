"""The selection-strategy protocol and its registry: a new way to pick training data is one new
module that registers itself. `admap map` (its ``pairs/`` files), `admap select` and the experiments
all select through it.

A strategy sees one finished `admap map` run (`SelectionInputs`) and returns the ids of the
instructions it keeps. Every strategy but ``full`` returns exactly ``size`` ids, so that subsets
compared in an experiment hold the same number of instructions. A strategy with settings of its
own declares them as a dataclass ``Options`` on its class and is built as ``Strategy(options)``:
its flags are ``--<name>-<option>`` and its YAML section ``selection: {<name>: ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from admap.config import Registered, entry_options, option, registered
from admap.datamap import HIGH_MEAN
from admap.registry import Registry


@dataclass(frozen=True)
class SelectionInputs:
    """What a strategy may look at.

    ``map_table``: ``map.parquet`` (one row per instruction; only ``is_mapped`` rows are candidates).
    ``responses``: ``scores.parquet`` (one row per response: ``rating``, ``alignment_score``,
    ``response_chars``, ...). ``pairs``: the training pairs under the run's pair rule
    (``instruction_id``, ``chosen_id``, ``rejected_id``). ``scorer``: the run's scorer name.
    ``dynamics``: per-pair DPO implicit reward margins per recording point from an earlier training run
    (``pair_margins.parquet``: ``instruction_id``, ``chosen_id``, ``rejected_id``, ``epoch``, and
    ``step`` where recorded, ``margin``), or None.
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
    """Picks instruction ids from ``inputs.candidates``: exactly ``size`` of them, unless the class sets
    ``exact_size = False`` (``full``: all of them). Built with no argument, or with its ``Options``
    when it declares them."""

    name: str

    def select(self, inputs: SelectionInputs, *, size: int, seed: int) -> np.ndarray: ...


STRATEGIES: Registry[type] = Registry("selection strategy")


@dataclass
class SelectionOptions:
    """Which instructions to keep: the options `admap select` and the experiments share (flags and YAML
    section ``selection``)."""

    strategy: str = option(
        HIGH_MEAN,
        "selection strategy registered in admap_baselines.STRATEGIES (listed at the end of `admap select --help`)",
    )
    fraction: float | None = option(
        None,
        "share of mapped instructions to keep, of those admap select's filters leave (default: as many as the "
        "map's high-mean region holds of them, about a third)",
    )
    seed: int = option(42, "seed of the random strategy (the paper: 42)")
    # Training dynamics are an input, like the map: any strategy may read them (ambiguous does).
    dynamics: str | None = option(
        None,
        "training dynamics for the strategies that read them (ambiguous, training_dynamics): pair_margins.parquet "
        "of an earlier full-data DPO run",
    )
    strategy_options: Registered = registered(
        STRATEGIES, selector="strategy", help="each strategy's own options, under its name (--<strategy>-<option>)"
    )

    def __post_init__(self) -> None:
        STRATEGIES.get(self.strategy)  # an unknown name gets close matches
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ValueError(f"selection.fraction must be in (0, 1], got {self.fraction}")

    def select(self, inputs: SelectionInputs) -> np.ndarray:
        """The instruction ids the chosen strategy keeps, with its own options."""
        return select_instructions(
            self.strategy,
            inputs,
            fraction=self.fraction,
            seed=self.seed,
            options=self.strategy_options[self.strategy],
        )


def build_strategy(name: str, options: object | None = None) -> SelectionStrategy:
    """The registered strategy ``name``, built with ``options`` (its defaults when None) if it declares any."""
    strategy_class = STRATEGIES.get(name)
    options_class = entry_options(strategy_class)
    if options_class is None:
        return strategy_class()
    return strategy_class(options if options is not None else options_class())


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
    strategy: str,
    inputs: SelectionInputs,
    *,
    fraction: float | None = None,
    size: int | None = None,
    seed: int = 42,
    options: object | None = None,
) -> np.ndarray:
    """Run the named strategy and check its answer: unique mapped ids, exactly the subset size unless
    the strategy says otherwise (``full``: every mapped instruction). The size is ``size`` when given
    (`admap map` writes each region whole), else `subset_size` of ``fraction``. ``options``: the
    strategy's own (its defaults when None)."""
    if size is None:
        size = subset_size(inputs, fraction)
    elif fraction is not None:
        raise ValueError(f"give fraction or size, not both (got fraction {fraction}, size {size})")
    elif not 0 <= size <= len(inputs.candidates):
        raise ValueError(f"size must be within [0, {len(inputs.candidates)}], got {size}")
    strategy_class = STRATEGIES.get(strategy)
    chosen = np.asarray(build_strategy(strategy, options).select(inputs, size=size, seed=seed))
    candidates = set(inputs.candidates["instruction_id"])
    unknown = [i for i in chosen if i not in candidates]
    if unknown:
        raise ValueError(f"strategy {strategy!r} returned ids that are not mapped instructions: {unknown[:3]}")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"strategy {strategy!r} returned duplicate instruction ids")
    if getattr(strategy_class, "exact_size", True) and len(chosen) != size:
        raise ValueError(f"strategy {strategy!r} returned {len(chosen)} instructions, expected {size}")
    return chosen
