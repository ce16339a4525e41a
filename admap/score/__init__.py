"""Stage 3, score: an alignment score per response, by any registered scorer."""

# Importing each scorer module registers its scorer.
from admap.score import (  # noqa: F401
    annotation,
    judge,
    learned,
    reference,
    reward,
    rouge,
    self_similarity,
    sft_probability,
)
from admap.score.base import SCORERS, Scorer, ScorerDefaults, ScoringContext, build_scorer
from admap.score.learned import LearnedScorer, cross_fitted_utilities
from admap.score.reference import ReferenceScorer, paired_inner_products, reference_scores

__all__ = [
    "SCORERS",
    "LearnedScorer",
    "ReferenceScorer",
    "Scorer",
    "ScorerDefaults",
    "ScoringContext",
    "build_scorer",
    "cross_fitted_utilities",
    "paired_inner_products",
    "reference_scores",
]
