"""The semantic view's 2-D layout: UMAP keeps neighbourhoods that PCA loses, both centred and scaled."""

import numpy as np
import pytest

from admap import layout


def clustered(n_clusters: int = 100, per_cluster: int = 10, width: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, width))
    points = np.repeat(centres, per_cluster, axis=0) + rng.normal(scale=0.35, size=(n_clusters * per_cluster, width))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def test_pca_layout_is_centred_scaled_and_reproducible():
    vectors = clustered()
    xy = layout.semantic_layout(vectors, "pca")
    assert xy.shape == (len(vectors), 2) and xy.dtype == np.float32
    np.testing.assert_allclose(xy.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(xy.std(axis=0), 1, atol=1e-4)
    np.testing.assert_array_equal(xy, layout.semantic_layout(vectors, "pca"))
    assert layout.semantic_layout(vectors[:2], "pca").tolist() == [[0, 0], [0, 0]]


def test_layout_names_are_checked_and_auto_follows_the_installed_packages(monkeypatch):
    with pytest.raises(ValueError, match="layout must be one of"):
        layout.resolve_layout("tsne")
    monkeypatch.setattr(layout, "umap_installed", lambda: False)
    assert layout.resolve_layout("auto") == "pca"
    with pytest.raises(ImportError, match=r"admap\[layout\]"):
        layout.resolve_layout("umap")
    monkeypatch.setattr(layout, "umap_installed", lambda: True)
    assert layout.resolve_layout("auto") == "umap" and layout.resolve_layout("none") == "none"


@pytest.mark.slow
def test_umap_keeps_more_neighbourhoods_than_pca():
    pytest.importorskip("umap")
    vectors = clustered()
    kept = {
        method: layout.neighbourhood_kept(vectors, layout.semantic_layout(vectors, method))
        for method in ("pca", "umap")
    }
    # 100 clusters of 10 in 64 dimensions: two principal directions cannot keep them apart; UMAP does.
    assert kept["umap"] > 2 * kept["pca"] and kept["umap"] > 0.6
    # The measure itself: a layout that is the data keeps every neighbourhood, noise keeps about none.
    assert layout.neighbourhood_kept(vectors, vectors) == 1.0
    noise = np.random.default_rng(1).normal(size=(len(vectors), 2))
    assert layout.neighbourhood_kept(vectors, noise) < 0.05
