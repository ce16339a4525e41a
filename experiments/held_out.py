"""Held-out preference pairs: instructions set aside before the map is built, never selected or trained on.

With ``held_out.fraction`` the experiment reads its dataset, sets a share of the instructions aside and
builds the map from the rest, so that no scorer (the ones that read labels, ``annotation`` and ``learned``,
included) and no selection strategy sees a held-out instruction. Which instructions are held out depends
on the dataset, the fraction and ``held_out.seed`` only: every strategy and every seed of an experiment is
scored on the same pairs. With ``held_out.dataset`` the pairs come from another file or hub dataset instead,
and its instructions are kept out of the selection.

Held-out pairs are the dataset's own preferences (its annotated pairs, or pairs ordered by its ratings),
whatever ``map.pair_rule`` trains on: they are the labels the policy is measured against.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from admap.config import option
from admap.load import PreferenceData
from admap.select import preference_pairs, trl_records

logger = logging.getLogger(__name__)


@dataclass
class HeldOutOptions:
    fraction: float = option(
        0.0,
        "share of the dataset's instructions set aside before the map is built, for held-out preference accuracy "
        "(0: none)",
    )
    seed: int = option(
        0, "which instructions are held out (independent of selection.seed: every run of an experiment shares them)"
    )
    dataset: str | None = option(
        None,
        "held-out pairs from this file or hub dataset instead (read with map.input's format and load options); "
        "its instructions are kept out of the selection",
    )

    def __post_init__(self) -> None:
        if not 0 <= self.fraction < 1:
            raise ValueError(f"held_out.fraction must be in [0, 1), got {self.fraction}")
        if self.fraction and self.dataset:
            raise ValueError("held_out: set fraction (a split of the dataset) or dataset (another one), not both")

    @property
    def enabled(self) -> bool:
        return bool(self.fraction or self.dataset)


def held_out_ids(instruction_ids: pd.Series, *, fraction: float, seed: int) -> set[str]:
    """``round(fraction * n)`` of the distinct ids: those whose hash with ``seed`` sorts first. The choice of
    one id does not depend on the order of the rows."""
    distinct = pd.unique(instruction_ids.astype(str))
    keys = [hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in distinct]
    order = np.argsort(np.array(keys), kind="stable")
    return set(distinct[order[: round(fraction * len(distinct))]].tolist())


def restrict(data: PreferenceData, ids: set[str], *, keep: bool, reason: str) -> PreferenceData:
    """``data`` with only the instructions in ``ids`` (``keep``) or all but them; the ones left out are
    counted in the tally's notes under ``reason``."""

    def rows(table: pd.DataFrame) -> pd.DataFrame:
        inside = table["instruction_id"].astype(str).isin(ids)
        return table[inside if keep else ~inside].reset_index(drop=True)

    instructions = rows(data.instructions)
    notes = Counter(data.tally.notes)
    notes[reason] += len(data.instructions) - len(instructions)
    return replace(
        data,
        instructions=instructions,
        responses=rows(data.responses),
        preferences=rows(data.preferences) if not data.preferences.empty else data.preferences,
        tally=replace(data.tally, notes=notes),
    )


def split(data: PreferenceData, *, fraction: float, seed: int) -> tuple[PreferenceData, PreferenceData]:
    """``(training pool, held out)``: the held-out share of the instructions and the rest."""
    ids = held_out_ids(data.instructions["instruction_id"], fraction=fraction, seed=seed)
    pool = restrict(data, ids, keep=False, reason="held_out_instructions")
    return pool, restrict(data, ids, keep=True, reason="training_pool_instructions")


def held_out_records(data: PreferenceData) -> list[dict]:
    """The dataset's own preference pairs in TRL's conversational format."""
    pairs = preference_pairs(data.responses, rule="annotated", annotated=data.preferences)
    if pairs.empty:
        raise ValueError(f"{data.source}: the held-out instructions have no preference pairs (no ratings or labels)")
    return trl_records(pairs, data.instructions, data.responses)
