"""``longest``: the length baseline ("long is more for alignment", Zhao et al. 2024)."""

from __future__ import annotations

import numpy as np

from admap_baselines.base import STRATEGIES, SelectionInputs, top_by
from admap_baselines.pair_keys import mean_by_instruction


@STRATEGIES.register("longest")
class Longest:
    """The largest mean ``response_chars`` of an instruction's chosen responses in its training pairs."""

    name = "longest"

    def select(self, inputs: SelectionInputs, *, size: int, seed: int) -> np.ndarray:
        # Each chosen response counts once, however many pairs it wins.
        chosen = inputs.pairs[["instruction_id", "chosen_id"]].drop_duplicates()
        chars = inputs.responses.set_index("response_id")["response_chars"].reindex(chosen["chosen_id"])
        key = mean_by_instruction(inputs.candidates, chosen["instruction_id"].to_numpy(), chars.to_numpy())
        return top_by(inputs.candidates, key, size)
