"""Selection strategies registered by name: ``full``, ``random``, the map's regions and the
baselines they are compared with. Importing the package registers them all."""

from baselines.base import STRATEGIES, SelectionInputs, SelectionStrategy, select_instructions, subset_size

__all__ = ["STRATEGIES", "SelectionInputs", "SelectionStrategy", "select_instructions", "subset_size"]
