"""Selection strategies registered by name: ``full``, ``random``, the map's regions, the regions of
a DPO run's training dynamics and the baselines they are compared with. Importing the package
registers them all."""

# Importing each strategy module registers its strategies in STRATEGIES.
from admap_baselines import (  # noqa: F401
    ambiguous,
    annotation_margin,
    dynamics_regions,
    full,
    longest,
    random_subset,
    regions,
    reward_margin,
    score_margin,
)
from admap_baselines.base import (
    STRATEGIES,
    SelectionInputs,
    SelectionOptions,
    SelectionStrategy,
    select_instructions,
    subset_size,
)

__all__ = [
    "STRATEGIES",
    "SelectionInputs",
    "SelectionOptions",
    "SelectionStrategy",
    "select_instructions",
    "subset_size",
]
