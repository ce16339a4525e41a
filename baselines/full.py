"""``full``: every mapped instruction, the reference every subset is compared with."""

from __future__ import annotations

import numpy as np

from admap_baselines.base import STRATEGIES, SelectionInputs


@STRATEGIES.register("full")
class Full:
    """Every candidate; ``size`` does not apply."""

    name = "full"
    exact_size = False

    def select(self, inputs: SelectionInputs, *, size: int, seed: int) -> np.ndarray:
        return inputs.candidates["instruction_id"].to_numpy()
