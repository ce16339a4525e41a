"""What the scorers that embed texts with the run's sentence encoder share: its settings (the run's
`ScoringContext`), the embedding stage through the shared cache, and the report of what it embedded."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from admap.embed import EmbeddingOptions, EmbeddingReport
from admap.embedding_store import StoredEmbeddings, stored_embeddings
from admap.models import DEFAULT_EMBEDDING_MODEL
from admap.score.base import ScorerDefaults, ScoringContext


@dataclass
class SentenceScorer(ScorerDefaults):
    """A scorer built from the shared context alone, which embeds through `embedded`."""

    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    # None: by text length on the CPU (16 to 256), 128 on CUDA, the device the engine encodes on (`default_batch_size`).
    batch_size: int | None = None
    device: str = "auto"
    options: EmbeddingOptions = field(default_factory=EmbeddingOptions)
    progress: bool = True
    # Seeds the precision check's sample.
    seed: int = 42
    # What the last `score` embedded, cached and checked (written to summary.json).
    embedding_report: EmbeddingReport | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_options(cls, options: None, context: ScoringContext) -> SentenceScorer:
        return cls(
            embedding_model=context.embedding_model,
            batch_size=context.embed_batch_size,
            device=context.device,
            options=context.embedding,
            progress=context.progress,
            seed=context.seed,
        )

    @contextmanager
    def embedded(self, texts: Sequence[str], check_pairs: np.ndarray) -> Iterator[StoredEmbeddings]:
        """`stored_embeddings` of ``texts`` with this scorer's settings; the report is kept for `report`."""
        with stored_embeddings(
            texts,
            check_pairs,
            model=self.embedding_model,
            options=self.options,
            device=self.device,
            batch_size=self.batch_size,
            seed=self.seed,
            progress=self.progress,
        ) as stored:
            self.embedding_report = stored.report
            yield stored

    def label(self) -> str:
        return f"{self.name} ({self.embedding_model})"

    def report(self) -> dict:
        return {
            "model": self.embedding_model,
            "embedding": self.embedding_report.to_dict() if self.embedding_report else None,
        }
