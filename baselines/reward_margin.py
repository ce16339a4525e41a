"""``reward_margin``: `score_margin` on a run scored by a reward model, the reward-margin filter of
preference-data selection work."""

from __future__ import annotations

import numpy as np

from admap_baselines.base import STRATEGIES, SelectionInputs
from admap_baselines.score_margin import ScoreMargin


@STRATEGIES.register("reward_margin")
class RewardMargin(ScoreMargin):
    """The largest mean reward margin over an instruction's training pairs; only for ``scorer == 'reward'``."""

    name = "reward_margin"

    def select(self, inputs: SelectionInputs, *, size: int, seed: int) -> np.ndarray:
        if inputs.scorer != "reward":
            raise ValueError(
                f"strategy {self.name!r} needs a run scored by a reward model (scorer 'reward'); "
                f"this run's scorer is {inputs.scorer!r} (use 'score_margin' for its scores)"
            )
        return super().select(inputs, size=size, seed=seed)
