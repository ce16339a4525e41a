"""Nearest neighbours of unit-length vectors by inner product (their cosine), with FAISS.

An index is exact (``flat``) up to `EXACT_UP_TO` vectors and inverted-file (``ivf``: k-means cells,
``nprobe`` of them searched per query) past it, where exact all-pairs search grows with the square of
the data; ``hnsw`` is there for indexes that are searched often and built once. The index is moved to
the GPU when CUDA and a faiss-gpu build are both present. `benchmarks/bench_knn.py` measures the
choice against scikit-learn and numpy, with the approximate index's recall.

Pure functions over float32 arrays: the callers own caching and files (`write_index`, `read_index`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from admap.config import option
from admap.faiss_build import import_faiss

logger = logging.getLogger(__name__)

KINDS = ("auto", "flat", "ivf", "hnsw")
# Past this many vectors, `auto` builds an IVF index (benchmarks/bench_knn.py: exact all-pairs search of
# 64k vectors takes seconds on 2 CPU cores, of 1M hours).
EXACT_UP_TO = 100_000
# Queries per FAISS call: bounds the (batch, k) result arrays and lets a progress bar move.
SEARCH_BATCH = 16_384


@dataclass(frozen=True)
class IndexOptions:
    """Which index and how hard the approximate ones search."""

    kind: str = option(
        "auto", f"nearest-neighbour index: auto (flat up to {EXACT_UP_TO:,} vectors, else ivf), flat, ivf, hnsw"
    )
    nlist: int = option(0, "ivf: k-means cells (0: 4·sqrt(n), within [16, 65,536])")
    nprobe: int = option(16, "ivf: cells searched per query")
    hnsw_m: int = option(32, "hnsw: links per node")
    ef_search: int = option(64, "hnsw: candidates kept while searching")
    device: str = option("auto", "where the index searches: auto (a GPU with faiss-gpu and CUDA), cpu, cuda")
    seed: int = option(0, "seeds the ivf index's k-means sample")

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"index kind must be one of {KINDS}, got {self.kind!r}")
        if self.nlist < 0 or self.nprobe < 1 or self.hnsw_m < 2 or self.ef_search < 1:
            raise ValueError("nlist must be >= 0, nprobe and ef_search >= 1, hnsw_m >= 2")

    def kind_for(self, n: int) -> str:
        if self.kind != "auto":
            return self.kind
        return "flat" if n <= EXACT_UP_TO else "ivf"

    def cells_for(self, n: int) -> int:
        return self.nlist or int(np.clip(4 * math.isqrt(max(n, 1)), 16, 65_536))


def _as_float32_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be a 2-D array (n, d), got shape {vectors.shape}")
    return vectors


def on_gpu(device: str) -> bool:
    """Whether an index built for ``device`` goes to a GPU: CUDA there and a FAISS build with GPU support."""
    from admap.devices import pick_device

    faiss = import_faiss()
    return pick_device(device).startswith("cuda") and hasattr(faiss, "StandardGpuResources")


def build_index(vectors: np.ndarray, options: IndexOptions = IndexOptions()):
    """A FAISS inner-product index holding ``vectors`` (``(n, d)``, unit rows), of ``options.kind_for(n)``."""
    faiss = import_faiss()
    vectors = _as_float32_rows(vectors)
    n, dimension = vectors.shape
    kind = options.kind_for(n)
    if kind == "flat":
        index = faiss.IndexFlatIP(dimension)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, options.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = options.ef_search
    else:
        # k-means wants about 40 training points a cell: small sets get fewer cells.
        cells = min(options.cells_for(n), max(n // 40, 1))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, cells, faiss.METRIC_INNER_PRODUCT)
        # More than 64 points a cell only slows training.
        sample = np.random.default_rng(options.seed).permutation(n)[: 64 * cells]
        index.cp.seed = options.seed
        index.train(vectors[np.sort(sample)])
        index.nprobe = min(options.nprobe, cells)
    if on_gpu(options.device) and kind != "hnsw":
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(vectors)
    logger.info("%s index of %d vectors (%d dimensions)", kind, n, dimension)
    return index


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(similarities, ids)``, each ``(len(queries), k)``, best first; id -1 (similarity -inf) where the
    index holds fewer than ``k`` vectors, or an approximate search found fewer."""
    queries = _as_float32_rows(queries)
    k = max(int(k), 1)
    similarities = np.empty((len(queries), k), dtype=np.float32)
    ids = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), SEARCH_BATCH):
        stop = start + SEARCH_BATCH
        similarities[start:stop], ids[start:stop] = index.search(queries[start:stop], k)
    similarities[ids < 0] = -np.inf
    return similarities, ids


def self_neighbours(
    vectors: np.ndarray, k: int, options: IndexOptions = IndexOptions(), *, index=None
) -> tuple[np.ndarray, np.ndarray]:
    """Each vector's ``k`` nearest other vectors: ``(similarities, ids)``, each ``(n, k)``, best first.

    Searches ``k + 1`` and drops the vector itself wherever it sits: an exact duplicate ties with it and
    may rank first."""
    vectors = _as_float32_rows(vectors)
    index = build_index(vectors, options) if index is None else index
    similarities, ids = search(index, vectors, k + 1)
    own = ids == np.arange(len(vectors))[:, None]
    # An approximate search can miss the vector itself: that row drops its last (worst) neighbour instead.
    own[~own.any(axis=1), -1] = True
    return similarities[~own].reshape(len(vectors), k), ids[~own].reshape(len(vectors), k)


def write_index(index, path: str) -> None:
    faiss = import_faiss()
    if hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__:
        index = faiss.index_gpu_to_cpu(index)
    faiss.write_index(index, str(path))


def read_index(path: str):
    return import_faiss().read_index(str(path))
