"""``score_margin``: instructions whose training pairs the alignment score separates most, in the
annotated direction: clear, score-agreeing pairs first, pairs the score contradicts last."""

from __future__ import annotations

import numpy as np

from admap_baselines.base import STRATEGIES, SelectionInputs, top_by
from admap_baselines.pair_keys import mean_by_instruction, pair_differences


@STRATEGIES.register("score_margin")
class ScoreMargin:
    """The largest mean signed alignment-score margin (chosen − rejected) over an instruction's training pairs."""

    name = "score_margin"

    def select(self, inputs: SelectionInputs, *, size: int, seed: int) -> np.ndarray:
        margins = pair_differences(inputs, "alignment_score")
        key = mean_by_instruction(inputs.candidates, inputs.pairs["instruction_id"].to_numpy(), margins)
        return top_by(inputs.candidates, key, size)
