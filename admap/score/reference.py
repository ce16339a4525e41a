"""The paper's reference-based alignment score: the cosine similarity between a response's
embedding and the embedding of its instruction's proxy response."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from admap.faiss_build import import_faiss
from admap.score.base import SCORERS
from admap.score.sentence_scorer import SentenceScorer

logger = logging.getLogger(__name__)


def paired_inner_products(
    queries: np.ndarray, database: np.ndarray, database_index: np.ndarray, *, index=None
) -> tuple[np.ndarray, object]:
    """``out[i] = queries[i] · database[database_index[i]]`` through a FAISS flat inner-product index.

    Returns the scores and the index (built from ``database`` unless one is passed), for reuse.
    On unit vectors the inner product is the cosine similarity. The index is FAISS's CPU flat index with
    either FAISS build: the GPU flat index has no ``compute_distance_subset``, and the N·d multiply-adds of
    these products take about a second per million 768-wide pairs on two CPU cores.
    """
    faiss = import_faiss()

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
class ReferenceScorer(SentenceScorer):
    """Similarity to the proxy response (the paper's reference-based alignment score).

    Distinct texts are embedded once into the on-disk `EmbeddingStore` (reused across runs), and
    the scores are read back chunk by chunk, so memory stays bounded by ``options.embed_chunk_size``.
    Its model and embedding settings are the run's shared ones (`ScoringContext`): the learned
    scorer embeds with the same encoder and cache.
    """

    name: ClassVar[str] = "reference"
    needs_proxy: ClassVar[bool] = True

    def score(
        self, instructions: pd.DataFrame, responses: pd.DataFrame, *, preferences: pd.DataFrame | None = None
    ) -> np.ndarray:
        proxies = instructions.set_index("instruction_id")["proxy_response"]
        # Each response's proxy by position, then one Python string per proxy listed once per response:
        # mapping the texts themselves would copy an instruction's proxy for each of its responses.
        proxy_position = responses["instruction_id"].map(pd.Series(np.arange(len(proxies)), index=proxies.index))
        position = proxy_position.fillna(len(proxies)).to_numpy(dtype=np.int64)
        scorable = np.append(proxies.notna().to_numpy(), False)[position]
        scores = np.full(len(responses), np.nan, dtype=np.float32)
        response_texts = responses.loc[scorable, "response"].tolist()
        proxy_list = proxies.tolist()
        proxy_texts = [proxy_list[p] for p in position[scorable]]
        n = len(response_texts)
        # The precision check compares what is scored: each response's cosine to its proxy.
        with self.embedded(
            [*response_texts, *proxy_texts], np.column_stack([np.arange(n), n + np.arange(n)])
        ) as stored:
            scores[scorable] = stored_pair_scores(
                stored.store, stored.positions[:n], stored.positions[n:], chunk_size=self.options.embed_chunk_size
            )
        return scores


def stored_pair_scores(store, left: np.ndarray, right: np.ndarray, *, chunk_size: int) -> np.ndarray:
    """Cosine of store rows ``left[i]`` and ``right[i]``, read a chunk at a time."""
    scores = np.empty(len(left), dtype=np.float32)
    for start in range(0, len(left), chunk_size):
        stop = start + chunk_size
        right_rows, right_index = np.unique(right[start:stop], return_inverse=True)
        scores[start:stop] = reference_scores(store.gather(left[start:stop]), store.gather(right_rows), right_index)
    return scores
