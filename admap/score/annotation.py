"""The dataset's own labels as a score: a response's rating, or for pair datasets without ratings
the share of its pairwise comparisons it won. It lets the map be drawn from the annotation alone
and is what the other scorers are compared against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from admap.score.base import SCORERS, ScorerDefaults, ScoringContext


def pair_counts(responses: pd.DataFrame, preferences: pd.DataFrame) -> pd.DataFrame:
    """``pair_wins`` and ``pair_losses`` of every response in the dataset's own pairs (0 when it has none)."""
    wins = preferences["chosen_id"].value_counts()
    losses = preferences["rejected_id"].value_counts()
    return pd.DataFrame(
        {
            "pair_wins": responses["response_id"].map(wins).fillna(0).astype("int64").to_numpy(),
            "pair_losses": responses["response_id"].map(losses).fillna(0).astype("int64").to_numpy(),
        },
        index=responses.index,
    )


def annotation_labels(responses: pd.DataFrame) -> np.ndarray:
    """The rating where there is one, else ``pair_wins / (pair_wins + pair_losses)``, else NaN."""
    labels = responses["rating"].to_numpy(dtype=np.float64, copy=True)
    if {"pair_wins", "pair_losses"} <= set(responses.columns):
        compared = (responses["pair_wins"] + responses["pair_losses"]).to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            win_rate = responses["pair_wins"].to_numpy(dtype=np.float64) / compared
        fill = np.isnan(labels) & (compared > 0)
        labels[fill] = win_rate[fill]
    return labels


@SCORERS.register("annotation")
@dataclass
class AnnotationScorer(ScorerDefaults):
    """The dataset's own labels as the score: a plain map of the annotations, the baseline the
    other scores are compared with."""

    name: ClassVar[str] = "annotation"
    needs_proxy: ClassVar[bool] = False

    @classmethod
    def from_options(cls, options: None, context: ScoringContext) -> AnnotationScorer:
        return cls()

    def score(
        self, instructions: pd.DataFrame, responses: pd.DataFrame, *, preferences: pd.DataFrame | None = None
    ) -> np.ndarray:
        return annotation_labels(responses).astype(np.float32)
