"""The scorer protocol and its registry: a new alignment score is one new module that registers itself.

A scorer module owns everything `admap map` needs to know about it: its options (a dataclass
``Options``, which becomes the flags ``--<name>-<option>`` and the YAML section ``<name>:``), how
it is built from them, its label in figures and in the viewer, what it adds to ``summary.json``
and any table it writes beside the scores. Nothing outside the module names it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd

from admap.embed import EmbeddingOptions
from admap.models import DEFAULT_EMBEDDING_MODEL
from admap.registry import Registry


@dataclass(frozen=True)
class ScoringContext:
    """What every scorer may share: where models run, the sentence encoder (for the scorers that
    embed), the run's seed and whether to draw progress bars."""

    device: str = "auto"
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    # None: by text length on the CPU (16 to 256), 128 on CUDA, the device the engine encodes on.
    embed_batch_size: int | None = None
    embedding: EmbeddingOptions = field(default_factory=EmbeddingOptions)
    seed: int = 42
    progress: bool = True


class Scorer(Protocol):
    """Scores every row of ``responses``: a float array aligned with it, NaN where it cannot.

    ``preferences`` is the dataset's own pairs (``instruction_id``, ``chosen_id``, ``rejected_id``) for
    pair datasets, else None; only scorers fitted to the labels (``learned``) read it. ``needs_proxy``
    says whether `admap map` must find or generate a proxy response per instruction first.
    """

    name: ClassVar[str]
    needs_proxy: ClassVar[bool]
    # Whether `instruction_axes` gives the map's axes (then its scores cannot be length-debiased, which
    # works on per-response scores).
    defines_axes: ClassVar[bool]

    @classmethod
    def from_options(cls, options: Any, context: ScoringContext) -> Scorer:
        """The scorer of its ``Options`` (None for a scorer without options)."""
        ...

    def label(self) -> str:
        """How figures, the viewer and comparisons name the score, e.g. ``reference (all-MiniLM-L6-v2)``."""
        ...

    def report(self) -> dict[str, Any]:
        """What ``summary.json`` records under ``scorer`` beside its name and label (read after `score`)."""
        ...

    def tables(self) -> dict[str, pd.DataFrame]:
        """Tables written into the run directory by file name (read after `score`), e.g. the judge's verdicts."""
        ...

    def instruction_axes(self) -> pd.DataFrame | None:
        """The map's axes per instruction (``instruction_id``, ``mean_score``, ``score_variance``) when the
        scorer defines them itself (read after `score`); None: the mean and variance of its per-response scores."""
        ...

    def score(
        self, instructions: pd.DataFrame, responses: pd.DataFrame, *, preferences: pd.DataFrame | None = None
    ) -> np.ndarray: ...


class ScorerDefaults:
    """The protocol's optional parts for a scorer that has nothing to add: its name as label, no
    report, no tables, the map's axes from its per-response scores."""

    name: ClassVar[str]
    defines_axes: ClassVar[bool] = False

    def label(self) -> str:
        return self.name

    def report(self) -> dict[str, Any]:
        return {}

    def tables(self) -> dict[str, pd.DataFrame]:
        return {}

    def instruction_axes(self) -> pd.DataFrame | None:
        return None


SCORERS: Registry[type] = Registry("scorer")


def build_scorer(name: str, options_by_name: Any, context: ScoringContext) -> Scorer:
    """The registered scorer ``name`` built from its own options in ``options_by_name``."""
    return SCORERS.get(name).from_options(options_by_name[name], context)
