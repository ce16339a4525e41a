"""``annotation_margin``: instructions whose training pairs the annotators separated most."""

from __future__ import annotations

import numpy as np

from admap_baselines.base import STRATEGIES, SelectionInputs, top_by
from admap_baselines.pair_keys import mean_by_instruction, pair_differences


@STRATEGIES.register("annotation_margin")
class AnnotationMargin:
    """The largest mean rating gap (chosen − rejected) over an instruction's training pairs."""

    name = "annotation_margin"

    def select(self, inputs: SelectionInputs, *, size: int, seed: int) -> np.ndarray:
        if not inputs.responses["rating"].notna().any():
            raise ValueError(
                f"strategy {self.name!r} needs ratings, but responses['rating'] is NaN for every response "
                "(a pair dataset such as HH-RLHF records only which response won)"
            )
        margins = pair_differences(inputs, "rating")
        key = mean_by_instruction(inputs.candidates, inputs.pairs["instruction_id"].to_numpy(), margins)
        return top_by(inputs.candidates, key, size)
