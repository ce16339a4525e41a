"""Per-instruction keys computed from training pairs, shared by the strategies that rank by them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from admap_baselines.base import SelectionInputs


def pair_differences(inputs: SelectionInputs, column: str) -> np.ndarray:
    """Per training pair, in ``inputs.pairs`` order: ``column`` of the chosen response minus that of the rejected."""
    if column not in inputs.responses.columns:
        raise ValueError(f"responses have no column {column!r}")
    values = inputs.responses.set_index("response_id")[column]
    chosen = values.reindex(inputs.pairs["chosen_id"]).to_numpy(dtype=float)
    rejected = values.reindex(inputs.pairs["rejected_id"]).to_numpy(dtype=float)
    return chosen - rejected


def mean_by_instruction(candidates: pd.DataFrame, instruction_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The mean of ``values`` per instruction, aligned with ``candidates``. A candidate with no value
    gets NaN, which `top_by` ranks last, so that a subset still reaches its size."""
    means = pd.Series(np.asarray(values, dtype=float)).groupby(np.asarray(instruction_ids)).mean()
    return means.reindex(candidates["instruction_id"]).to_numpy()
