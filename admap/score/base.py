"""The scorer protocol and its registry: a new alignment score is one new module that registers itself."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from admap.registry import Registry


class Scorer(Protocol):
    """Scores every row of ``responses``: a float array aligned with it, NaN where it cannot.

    ``from_config`` builds the scorer from the `admap map` config, so that each scorer picks
    the settings it needs and a new scorer is one new registered class. ``preferences`` is the
    dataset's own pairs (``instruction_id``, ``chosen_id``, ``rejected_id``) for pair datasets, else
    None; only scorers fitted to the labels (``learned``) read it.
    """

    name: str
    higher_is_better: bool
    needs_proxy: bool

    @classmethod
    def from_config(cls, config, *, progress: bool = True) -> Scorer: ...

    def score(
        self, instructions: pd.DataFrame, responses: pd.DataFrame, *, preferences: pd.DataFrame | None = None
    ) -> np.ndarray: ...


SCORERS: Registry[type] = Registry("scorer")
