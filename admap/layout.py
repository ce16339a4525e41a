"""A 2-D layout of the instructions' embeddings: the semantic view beside the mean–variance map.

UMAP (umap-learn, the ``layout`` extra) keeps neighbourhoods: prompts about one thing land together, as
in Nomic Atlas or Embedding Atlas. PCA is what remains without it: instant, but it keeps only the two
widest directions, so clusters overlap. `neighbourhood_kept` measures the trade on the data itself (the
share of each point's 10 nearest neighbours in the embedding that stay among its 10 nearest on the
page), and `benchmarks/bench_neighbours.py` reports it beside each method's time.
"""

from __future__ import annotations

import importlib.util
import logging

import numpy as np

logger = logging.getLogger(__name__)

LAYOUTS = ("auto", "umap", "pca", "none")
# UMAP's neighbourhood size (its default) and the points on which the layout's quality is measured.
UMAP_NEIGHBOURS = 15
QUALITY_SAMPLE = 2000


def umap_installed() -> bool:
    return importlib.util.find_spec("umap") is not None


def resolve_layout(method: str) -> str:
    """``auto`` is UMAP when umap-learn is installed, else PCA; ``umap`` without it says how to install it."""
    if method not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {method!r}")
    if method == "auto":
        return "umap" if umap_installed() else "pca"
    if method == "umap" and not umap_installed():
        raise ImportError("layout 'umap' needs umap-learn: pip install 'admap[layout]' (or use --layout pca)")
    return method


def semantic_layout(vectors: np.ndarray, method: str, *, seed: int = 0) -> np.ndarray:
    """``(n, 2)`` float32 coordinates of ``vectors`` (unit rows) by ``method`` (``umap`` or ``pca``),
    centred and scaled to unit standard deviation, so that the page's axes mean nothing on their own."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    if n < 3:
        return np.zeros((n, 2), dtype=np.float32)
    if method == "umap":
        import umap

        reducer = umap.UMAP(
            n_neighbors=min(UMAP_NEIGHBOURS, n - 1), metric="cosine", random_state=seed, n_jobs=1, init="spectral"
        )
        coordinates = reducer.fit_transform(vectors)
    elif method == "pca":
        from sklearn.decomposition import PCA

        coordinates = PCA(n_components=2, random_state=seed).fit_transform(vectors)
    else:
        raise ValueError(f"no layout method {method!r}: umap or pca")
    coordinates = coordinates - coordinates.mean(axis=0)
    scale = coordinates.std(axis=0)
    return (coordinates / np.where(scale > 0, scale, 1)).astype(np.float32)


def neighbourhood_kept(vectors: np.ndarray, coordinates: np.ndarray, *, k: int = 10, seed: int = 0) -> float:
    """The share of a point's ``k`` nearest neighbours in ``vectors`` that are among its ``k`` nearest in
    ``coordinates``, over a seeded sample of `QUALITY_SAMPLE` points (exact search on both sides)."""
    from sklearn.neighbors import NearestNeighbors

    n = len(vectors)
    if n <= k:
        return float("nan")
    sample = np.random.default_rng(seed).permutation(n)[:QUALITY_SAMPLE]
    spaces = (np.asarray(vectors, dtype=np.float32), np.asarray(coordinates, dtype=np.float32))
    found = [
        NearestNeighbors(n_neighbors=k + 1).fit(space).kneighbors(space[sample], return_distance=False)
        for space in spaces
    ]
    # Each row's own point is dropped wherever exact ties put it.
    shared = [
        len(set([x for x in a if x != p][:k]) & set([x for x in b if x != p][:k])) / k
        for p, a, b in zip(sample, found[0], found[1], strict=True)
    ]
    return float(np.mean(shared))
