"""``training_dynamics``: the instructions of one region of the training-dynamics map (admap/dynamics.py).

Dataset Cartography's regions of a full-data DPO run, read from ``inputs.dynamics``
(``selection.dynamics``: its ``pair_margins.parquet``): ``easy`` to learn, ``ambiguous`` or ``hard`` to
learn. An instruction is in the region most of its pairs are in. The region's own instructions come
first, best first by the region's key (the mean over the instruction's pairs: variability, largest first,
for ambiguous; confidence, largest first for easy, smallest first for hard), then the other instructions
by the same key, so that a subset of any size can be drawn; instructions without dynamics come last.
The ``ambiguous`` strategy ranks by variability alone, whatever region the pairs fall in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from admap.config import option
from admap.dynamics import AMBIGUOUS, DYNAMICS_REGIONS, EASY, HARD, instruction_dynamics, pair_dynamics
from admap_baselines.base import STRATEGIES, SelectionInputs

# Per region: the per-instruction column that ranks it, and whether its largest values come first.
REGION_KEYS = {EASY: ("confidence", True), AMBIGUOUS: ("variability", True), HARD: ("confidence", False)}


@dataclass
class TrainingDynamicsOptions:
    region: Literal["easy", "ambiguous", "hard"] = option(
        AMBIGUOUS,
        "Dataset Cartography region of the DPO training dynamics: easy (high confidence, low variability), "
        "ambiguous (high variability) or hard (low confidence, low variability)",
    )

    def __post_init__(self) -> None:
        if self.region not in DYNAMICS_REGIONS:
            raise ValueError(f"training_dynamics.region must be one of {DYNAMICS_REGIONS}, got {self.region!r}")


@STRATEGIES.register("training_dynamics")
class TrainingDynamics:
    """The instructions of one training-dynamics region in ``inputs.dynamics``, best first by its key."""

    name = "training_dynamics"
    Options = TrainingDynamicsOptions

    def __init__(self, options: TrainingDynamicsOptions):
        self.options = options

    def select(self, inputs: SelectionInputs, *, size: int, seed: int) -> np.ndarray:
        if inputs.dynamics is None:
            raise ValueError(
                f"strategy {self.name!r} needs training dynamics: give selection.dynamics (--dynamics), the "
                "pair_margins.parquet of a full-data DPO run with at least 2 recording points (several epochs, "
                "or train.pair_margins_every)"
            )
        column, descending = REGION_KEYS[self.options.region]
        ids = inputs.candidates["instruction_id"].to_numpy()
        instructions = instruction_dynamics(pair_dynamics(inputs.dynamics)).set_index("instruction_id").reindex(ids)
        outside_region = (instructions["region"] != self.options.region).to_numpy()
        values = instructions[column].to_numpy(dtype=float)
        key = np.nan_to_num(-values if descending else values, nan=np.inf)
        # Ties, in the key as in the region, are broken by instruction id: the choice never depends on row order.
        return ids[np.lexsort((ids, key, outside_region))[:size]]
