"""``ambiguous``: Dataset Cartography's ambiguous region (Swayamdipta et al. 2020) from DPO training dynamics.

A pair's confidence at a recording point is the DPO model's probability of preferring the chosen
response, sigmoid(implicit reward margin); its variability is the population std of that confidence
over the points (admap/dynamics.py). The instructions whose pairs vary most are the ambiguous ones.
"""

from __future__ import annotations

import numpy as np

from admap.dynamics import pair_variability
from admap_baselines.base import STRATEGIES, SelectionInputs, top_by
from admap_baselines.pair_keys import mean_by_instruction


@STRATEGIES.register("ambiguous")
class Ambiguous:
    """The largest mean confidence variability over an instruction's pairs in ``inputs.dynamics``."""

    name = "ambiguous"

    def select(self, inputs: SelectionInputs, *, size: int, seed: int) -> np.ndarray:
        if inputs.dynamics is None:
            raise ValueError(
                f"strategy {self.name!r} needs training dynamics: run a full-data DPO first; its "
                "pair_margins.parquet (instruction_id, chosen_id, rejected_id, epoch, margin) is the input"
            )
        variability = pair_variability(inputs.dynamics)
        instruction_ids = variability.index.get_level_values("instruction_id").to_numpy()
        key = mean_by_instruction(inputs.candidates, instruction_ids, variability.to_numpy())
        return top_by(inputs.candidates, key, size)
