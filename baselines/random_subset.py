"""``random``: the paper's same-size random baseline (seed 42 by default)."""

from __future__ import annotations

import numpy as np

from admap.select import random_instruction_ids
from admap_baselines.base import STRATEGIES, SelectionInputs


@STRATEGIES.register("random")
class RandomSubset:
    """``size`` candidates drawn without replacement from ``seed``; the same draw as `admap map`'s random subset."""

    name = "random"

    def select(self, inputs: SelectionInputs, *, size: int, seed: int) -> np.ndarray:
        return random_instruction_ids(inputs.candidates["instruction_id"].to_numpy(), size, seed=seed)
