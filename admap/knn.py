"""Nearest neighbours of unit-length vectors by inner product (their cosine), with FAISS.

An index is exact (``flat``) up to `EXACT_UP_TO` vectors and inverted-file (``ivf``: k-means cells,
``nprobe`` of them searched per query) past it, where exact all-pairs search grows with the square of
the data; ``hnsw`` is there for indexes that are searched often and built once. Every vector's own
neighbours past that size come from `cell_blocked_neighbours`, the same cells searched a cell at a
time. The index is moved to the GPU when CUDA and a faiss-gpu build are both present.
`benchmarks/bench_knn.py` measures the choice against scikit-learn and numpy, with the recall.

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
# Past this many vectors, `auto` builds an IVF index. Exact all-pairs search grows with n² (benchmarks/bench_knn.py,
# 2 CPU cores: 12 s at 64k vectors, about 30 s at 100k, 45 s at 128k, 205 s at 256k, 50 min at 1M); the IVF index
# takes 17 s at 128k and 50 s at 256k at recall@10 >= 0.996.
EXACT_UP_TO = 100_000
# Every vector's neighbours past EXACT_UP_TO: k-means cells of about this many vectors, each cell's vectors
# searched together, one matrix product, against the `cell_probes` cells nearest its centroid. The IVF index's
# scans done a cell at a time instead of a query at a time over lists scattered in memory (bench_knn.py, 2 CPU
# cores, 1M vectors: 57 s at recall@10 0.994 with 1,024 cells and 4 probed, against 435 s for the IVF index).
ALL_PAIRS_CELL_SIZE = 1000
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
    cell_probes: int = option(
        4, "every vector's neighbours past the exact size: cells (of about 1,000 vectors) each cell is compared with"
    )
    device: str = option("auto", "where the index searches: auto (a GPU with faiss-gpu and CUDA), cpu, cuda")
    seed: int = option(0, "seeds the ivf index's k-means sample")

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"index kind must be one of {KINDS}, got {self.kind!r}")
        if self.nlist < 0 or self.nprobe < 1 or self.hnsw_m < 2 or self.ef_search < 1 or self.cell_probes < 1:
            raise ValueError("nlist must be >= 0, nprobe, ef_search and cell_probes >= 1, hnsw_m >= 2")

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

    With ``index`` (holding ``vectors`` in order), an index kind other than ``ivf`` or a GPU, a search of the
    index for every vector; past `EXACT_UP_TO` (``ivf``) on the CPU without one, `cell_blocked_neighbours`.
    The vector itself is dropped wherever it sits: an exact duplicate ties with it and may rank first."""
    vectors = _as_float32_rows(vectors)
    # On a GPU the IVF index's own search is fast: the cell-blocked search is the CPU's way round memory.
    if index is None and options.kind_for(len(vectors)) == "ivf" and not on_gpu(options.device):
        cells = max(len(vectors) // ALL_PAIRS_CELL_SIZE, 1)
        return cell_blocked_neighbours(vectors, k, cells=cells, probes=options.cell_probes, seed=options.seed)
    index = build_index(vectors, options) if index is None else index
    similarities, ids = search(index, vectors, k + 1)
    return _without_own(similarities, ids, np.arange(len(vectors)), k)


def _without_own(similarities: np.ndarray, ids: np.ndarray, rows: np.ndarray, k: int):
    """Of ``k + 1`` results per query row, the ``k`` that are not the row itself; a search that missed the
    row itself (approximate ones can) drops its last, worst, result instead."""
    own = ids == rows[:, None]
    own[~own.any(axis=1), -1] = True
    return similarities[~own].reshape(len(rows), k), ids[~own].reshape(len(rows), k)


def cell_blocked_neighbours(
    vectors: np.ndarray, k: int, *, cells: int, probes: int, iterations: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Every vector's ``k`` nearest others, a cell at a time: spherical k-means ``cells`` (``iterations``
    rounds on 64 points a cell), every vector in its nearest cell, and each cell's vectors searched together
    (one BLAS product, ``faiss.knn``) against the vectors of the ``probes`` cells nearest the cell's centroid.
    Approximate as an IVF search with as many probes is; found vectors fewer than ``k``: id -1, -inf."""
    faiss = import_faiss()
    vectors = _as_float32_rows(vectors)
    n, dimension = vectors.shape
    cells = min(cells, n)
    sample = np.sort(np.random.default_rng(seed).permutation(n)[: 64 * cells])
    kmeans = faiss.Kmeans(dimension, cells, niter=iterations, seed=seed, spherical=True, max_points_per_centroid=64)
    kmeans.train(vectors[sample])
    quantizer = faiss.IndexFlatIP(dimension)
    quantizer.add(kmeans.centroids)
    cell_of = quantizer.search(vectors, 1)[1][:, 0]
    order = np.argsort(cell_of, kind="stable")
    bounds = np.searchsorted(cell_of[order], np.arange(cells + 1))
    in_order = vectors[order]
    probed = quantizer.search(kmeans.centroids, min(probes, cells))[1]
    similarities = np.full((n, k), -np.inf, dtype=np.float32)
    ids = np.full((n, k), -1, dtype=np.int64)
    for cell in range(cells):
        first, last = bounds[cell], bounds[cell + 1]
        if first == last:
            continue
        candidates = np.concatenate([np.arange(bounds[p], bounds[p + 1]) for p in probed[cell] if p >= 0])
        found, at = faiss.knn(in_order[first:last], in_order[candidates], k + 1, metric=faiss.METRIC_INNER_PRODUCT)
        at = np.where(at >= 0, candidates[np.maximum(at, 0)], -1)
        found[at < 0] = -np.inf
        similarities[first:last], ids[first:last] = _without_own(found, at, np.arange(first, last), k)
    # Back from cell order to the vectors' own: rows and the ids in them.
    similarities[order], ids[order] = similarities.copy(), np.where(ids >= 0, order[np.maximum(ids, 0)], -1)
    return similarities, ids


def write_index(index, path: str) -> None:
    faiss = import_faiss()
    if hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__:
        index = faiss.index_gpu_to_cpu(index)
    faiss.write_index(index, str(path))


def read_index(path: str):
    return import_faiss().read_index(str(path))
