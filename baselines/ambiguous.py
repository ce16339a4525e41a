"""``ambiguous``: Dataset Cartography's ambiguous region (Swayamdipta et al. 2020) from DPO training dynamics.

A pair's confidence in an epoch is the DPO model's probability of preferring the chosen response,
sigmoid(implicit reward margin); its variability is the population std of that confidence over
epochs. The instructions whose pairs vary most are the ambiguous ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from admap_baselines.base import STRATEGIES, SelectionInputs, top_by
from admap_baselines.pair_keys import mean_by_instruction

PAIR = ["instruction_id", "chosen_id", "rejected_id"]
DYNAMICS_COLUMNS = [*PAIR, "epoch", "margin"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    # The tanh form neither overflows nor warns for large margins of either sign.
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))


def pair_variability(dynamics: pd.DataFrame) -> pd.Series:
    """Per pair (indexed by ``PAIR``), the population std over epochs of sigmoid(margin); several
    rows of one pair in one epoch are averaged first."""
    missing = [column for column in DYNAMICS_COLUMNS if column not in dynamics.columns]
    if missing:
        raise ValueError(f"dynamics lacks columns {missing} (needs {DYNAMICS_COLUMNS})")
    epochs = dynamics["epoch"].nunique()
    if epochs < 2:
        raise ValueError(f"dynamics needs at least 2 distinct epochs to measure variability, got {epochs}")
    confidence = dynamics[[*PAIR, "epoch"]].assign(confidence=sigmoid(dynamics["margin"]))
    per_epoch = confidence.groupby([*PAIR, "epoch"], sort=False)["confidence"].mean()
    return per_epoch.groupby(level=PAIR, sort=False).std(ddof=0)


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
