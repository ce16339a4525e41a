"""The paper's reference-based alignment score: the cosine similarity between a response's
embedding and the embedding of its instruction's proxy response."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from admap.embed import encode_unique, load_encoder
from admap.models import DEFAULT_EMBEDDING_MODEL
from admap.score.base import SCORERS

logger = logging.getLogger(__name__)


def paired_inner_products(
    queries: np.ndarray, database: np.ndarray, database_index: np.ndarray, *, index=None
) -> tuple[np.ndarray, object]:
    """``out[i] = queries[i] · database[database_index[i]]`` through a FAISS flat inner-product index.

    Returns the scores and the index (built from ``database`` unless one is passed), for reuse.
    On unit vectors the inner product is the cosine similarity.
    """
    import faiss

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or database.ndim != 2 or queries.shape[1] != database.shape[1]:
        raise ValueError(f"shapes do not match: queries {queries.shape}, database {database.shape}")
    if database_index.shape != (len(queries),):
        raise ValueError(f"database_index must have shape ({len(queries)},), got {database_index.shape}")
    if len(queries) and (database_index.min() < 0 or database_index.max() >= len(database)):
        raise ValueError("database_index points outside the database")
    if index is None:
        index = faiss.IndexFlatIP(database.shape[1])
        index.add(np.ascontiguousarray(database, dtype=np.float32))
    labels = np.ascontiguousarray(database_index.reshape(-1, 1), dtype=np.int64)
    distances = np.empty((len(queries), 1), dtype=np.float32)
    # compute_distance_subset scores each query against its own listed ids only: no all-pairs work.
    index.compute_distance_subset(
        len(queries), faiss.swig_ptr(queries), 1, faiss.swig_ptr(distances), faiss.swig_ptr(labels)
    )
    return distances[:, 0], index


def reference_scores(
    response_embeddings: np.ndarray, proxy_embeddings: np.ndarray, proxy_of_response: np.ndarray
) -> np.ndarray:
    """Cosine similarity of each response to its proxy; inputs are unit-length float32 rows."""
    scores, _ = paired_inner_products(response_embeddings, proxy_embeddings, proxy_of_response)
    # float32 rounding puts identical texts at 1.0000001; a cosine stays within [-1, 1].
    return np.clip(scores, -1.0, 1.0)


@SCORERS.register("reference")
@dataclass
class ReferenceScorer:
    """Similarity to the proxy response (the paper's reference-based alignment score)."""

    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    # None: 16 on the CPU, where small batches waste less on padding and stay in cache (measured by
    # benchmarks/bench_scoring.py), 128 on CUDA.
    batch_size: int | None = None
    device: str = "auto"
    progress: bool = True
    name: str = "reference"
    higher_is_better: bool = True
    needs_proxy: bool = True

    @classmethod
    def from_config(cls, config, *, progress: bool = True) -> ReferenceScorer:
        return cls(
            embedding_model=config.embedding_model,
            batch_size=config.embed_batch_size,
            device=config.device,
            progress=progress,
        )

    def score(
        self, instructions: pd.DataFrame, responses: pd.DataFrame, *, preferences: pd.DataFrame | None = None
    ) -> np.ndarray:
        proxies = instructions.set_index("instruction_id")["proxy_response"]
        response_proxy = responses["instruction_id"].map(proxies)
        scorable = response_proxy.notna().to_numpy()
        scores = np.full(len(responses), np.nan, dtype=np.float32)
        if not scorable.any():
            return scores
        proxy_texts = proxies.dropna()
        texts = list(responses.loc[scorable, "response"]) + list(proxy_texts)
        encoder = load_encoder(self.embedding_model, device=self.device)
        batch_size = self.batch_size or (128 if str(encoder.device).startswith("cuda") else 16)
        unique_embeddings, text_index = encode_unique(encoder, texts, batch_size=batch_size, progress=self.progress)
        n_responses = int(scorable.sum())
        response_rows = text_index[:n_responses]
        proxy_rows = text_index[n_responses:]
        proxy_position = pd.Series(np.arange(len(proxy_texts)), index=proxy_texts.index)
        proxy_of_response = proxy_position.loc[responses.loc[scorable, "instruction_id"]].to_numpy()
        scores[scorable] = reference_scores(
            unique_embeddings[response_rows], unique_embeddings[proxy_rows], proxy_of_response
        )
        return scores
