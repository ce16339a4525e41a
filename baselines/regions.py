"""``high_mean``, ``low_mean``, ``high_variance``: the map's regions, and the paper's rule at other sizes.

At the size of the map's own region a strategy returns exactly that region, whatever region method
made the map. At another size it applies the paper's rule (admap.datamap.assign_regions, method
``paper``) with the same orderings and tie-breaking: ``high_variance`` takes the largest variances;
``high_mean`` and ``low_mean`` first drop the high-variance third (``n - 2n//3`` instructions) and
take the largest or smallest means of the rest. Under the paper's rule, the region's own size
therefore gives the same ids either way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from admap.datamap import HIGH_MEAN, HIGH_VARIANCE, LOW_MEAN, stable_order
from admap_baselines.base import STRATEGIES, SelectionInputs


def paper_orders(candidates: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The ids of all candidates by variance, and of the low-variance two thirds by mean, both
    ascending with ties broken by instruction id as `assign_regions` breaks them."""
    ids = candidates["instruction_id"].to_numpy()
    tie_break = candidates["instruction_id"].astype(str).to_numpy()
    by_variance = stable_order(candidates["score_variance"].to_numpy(), tie_break)
    # assign_regions' cut: the high-variance third is n - 2n//3 (ceil(n/3), not round(n/3)) instructions.
    low_variance = by_variance[: 2 * len(ids) // 3]
    by_mean = low_variance[stable_order(candidates["mean_score"].to_numpy()[low_variance], tie_break[low_variance])]
    return ids[by_variance], ids[by_mean]


class RegionStrategy:
    """The map's region called ``name`` at its own size, otherwise the first ``size`` ids of `ranked`."""

    name: str
    eligible: str  # which candidates the rule ranks, for the error message

    def ranked(self, candidates: pd.DataFrame) -> np.ndarray:
        """The ids the rule can supply, best first."""
        raise NotImplementedError

    def select(self, inputs: SelectionInputs, *, size: int, seed: int) -> np.ndarray:
        candidates = inputs.candidates
        in_region = candidates.loc[candidates["region"] == self.name, "instruction_id"].to_numpy()
        if size == len(in_region):
            return in_region
        ranked = self.ranked(candidates)
        if size > len(ranked):
            raise ValueError(
                f"strategy {self.name!r} can supply at most {len(ranked)} of the {len(candidates)} mapped "
                f"instructions ({self.eligible}); size {size} is more"
            )
        return ranked[:size]


@STRATEGIES.register(HIGH_VARIANCE)
class HighVariance(RegionStrategy):
    """The partially aligned region: the largest score variances."""

    name = HIGH_VARIANCE
    eligible = "every mapped instruction"

    def ranked(self, candidates: pd.DataFrame) -> np.ndarray:
        return paper_orders(candidates)[0][::-1]


@STRATEGIES.register(HIGH_MEAN)
class HighMean(RegionStrategy):
    """The aligned region: outside the high-variance third, the largest mean scores."""

    name = HIGH_MEAN
    eligible = "the two thirds outside the paper's high-variance third"

    def ranked(self, candidates: pd.DataFrame) -> np.ndarray:
        return paper_orders(candidates)[1][::-1]


@STRATEGIES.register(LOW_MEAN)
class LowMean(RegionStrategy):
    """The misaligned region: outside the high-variance third, the smallest mean scores."""

    name = LOW_MEAN
    eligible = "the two thirds outside the paper's high-variance third"

    def ranked(self, candidates: pd.DataFrame) -> np.ndarray:
        return paper_orders(candidates)[1]
