"""Stage 3, score: an alignment score per response, by any registered scorer."""

from admap.score import annotation, judge, learned, reference, reward, rouge  # noqa: F401  (register the scorers)
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
