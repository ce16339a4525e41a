"""admap.knn on real FAISS, small: exact neighbours match numpy's, the vector itself is never its own
neighbour (duplicates included), the approximate indexes find most exact neighbours on clustered data, short
rows are padded, indexes survive a file, options are checked; and benchmarks/bench_knn.py runs tiny."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from admap.knn import (
    EXACT_UP_TO,
    IndexOptions,
    build_index,
    cell_blocked_neighbours,
    read_index,
    search,
    self_neighbours,
    write_index,
)
from benchmarks.bench_knn import clustered_unit_vectors, recall_at_k

ROOT = Path(__file__).resolve().parents[1]
K = 10


def brute_force(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every row's k most similar other rows by numpy, in float64: (similarities, ids), best first."""
    scores = vectors.astype(np.float64) @ vectors.T.astype(np.float64)
    np.fill_diagonal(scores, -np.inf)
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, ids, axis=1), ids


@pytest.fixture(scope="module")
def clustered_20k():
    """20,000 clustered unit vectors (80 clusters) and their exact 10 neighbours."""
    vectors = clustered_unit_vectors(20_000, seed=3)
    return vectors, self_neighbours(vectors, K, IndexOptions(kind="flat", device="cpu"))[1]


def test_exact_neighbours_match_numpy():
    vectors = clustered_unit_vectors(2_000, seed=1)
    similarities, ids = self_neighbours(vectors, K, IndexOptions(kind="flat", device="cpu"))
    expected_similarities, expected_ids = brute_force(vectors, K)
    assert similarities.shape == ids.shape == (2_000, K)
    np.testing.assert_allclose(similarities, expected_similarities, atol=1e-5)
    # Ties may swap places: what must hold is that each returned id scores what the rank says it scores.
    scores = vectors.astype(np.float64) @ vectors.T.astype(np.float64)
    np.testing.assert_allclose(np.take_along_axis(scores, ids, axis=1), expected_similarities, atol=1e-5)
    assert (ids == expected_ids).mean() > 0.999
    assert all(len(set(row)) == K for row in ids)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_a_vector_is_never_its_own_neighbour_even_beside_its_duplicate(kind):
    vectors = clustered_unit_vectors(1_500, seed=2)
    twins = np.arange(0, 1_500, 7)  # every 7th vector twice: its copy sits at the end
    vectors = np.concatenate([vectors, vectors[twins]])
    n = len(vectors)
    similarities, ids = self_neighbours(vectors, K, IndexOptions(kind=kind, device="cpu"))
    assert not (ids == np.arange(n)[:, None]).any()
    copies = np.arange(1_500, n)
    # A duplicate's nearest neighbour is its twin, at similarity 1 (the twin's, the other way round).
    assert set(ids[twins, 0]) <= set(copies) and (ids[twins, 0] == copies).all()
    assert (ids[copies, 0] == twins).all()
    np.testing.assert_allclose(similarities[twins, 0], 1.0, atol=1e-5)
    np.testing.assert_allclose(similarities[copies, 0], 1.0, atol=1e-5)


def test_three_copies_find_each_other():
    vectors = clustered_unit_vectors(300, seed=4)
    vectors[[10, 20]] = vectors[0]
    similarities, ids = self_neighbours(vectors, K, IndexOptions(kind="flat", device="cpu"))
    for row, others in ((0, {10, 20}), (10, {0, 20}), (20, {0, 10})):
        assert set(ids[row, :2]) == others
        np.testing.assert_allclose(similarities[row, :2], 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "options",
    [IndexOptions(kind="ivf", device="cpu"), IndexOptions(kind="hnsw", device="cpu")],
    ids=["ivf", "hnsw"],
)
def test_approximate_indexes_find_most_exact_neighbours(clustered_20k, options):
    vectors, exact_ids = clustered_20k
    similarities, ids = self_neighbours(vectors, K, options)
    assert recall_at_k(ids, exact_ids) >= 0.9
    assert not (ids == np.arange(len(vectors))[:, None]).any()
    assert (np.diff(similarities, axis=1) <= 1e-6).all()  # best first


def test_an_ivf_index_searched_for_every_vector_finds_what_the_cell_blocked_search_finds(clustered_20k):
    vectors, exact_ids = clustered_20k
    options = IndexOptions(kind="ivf", device="cpu")
    blocked = self_neighbours(vectors, K, options)[1]  # no index: a cell at a time
    searched = self_neighbours(vectors, K, options, index=build_index(vectors, options))[1]
    assert recall_at_k(blocked, exact_ids) >= 0.95 and recall_at_k(searched, exact_ids) >= 0.95
    # More probed cells find more; every cell probed is exact.
    few = recall_at_k(self_neighbours(vectors, K, IndexOptions(kind="ivf", cell_probes=1))[1], exact_ids)
    assert few < recall_at_k(blocked, exact_ids)
    every_cell = cell_blocked_neighbours(vectors[:3000], K, cells=3, probes=3)[0]
    np.testing.assert_allclose(every_cell, self_neighbours(vectors[:3000], K, IndexOptions(kind="flat"))[0], atol=1e-5)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_fewer_vectors_than_k_leave_minus_one_and_minus_infinity(kind):
    vectors = clustered_unit_vectors(5, seed=5)
    similarities, ids = self_neighbours(vectors, K, IndexOptions(kind=kind, device="cpu"))
    assert ids.shape == similarities.shape == (5, K)
    for row in range(5):
        assert set(ids[row, :4]) == set(range(5)) - {row}
    assert (ids[:, 4:] == -1).all() and np.isneginf(similarities[:, 4:]).all()
    assert np.isfinite(similarities[:, :4]).all()
    found, missing = search(build_index(vectors, IndexOptions(kind=kind, device="cpu")), vectors, 8)
    assert (missing[:, 5:] == -1).all() and np.isneginf(found[:, 5:]).all()


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_an_index_written_and_read_back_searches_alike(tmp_path, kind):
    vectors = clustered_unit_vectors(3_000, seed=6)
    options = IndexOptions(kind=kind, nprobe=3, ef_search=20, device="cpu")
    index = build_index(vectors, options)
    write_index(index, tmp_path / "index.faiss")
    again = read_index(tmp_path / "index.faiss")
    assert again.ntotal == 3_000
    before, after = search(index, vectors[:500], K), search(again, vectors[:500], K)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(
        self_neighbours(vectors, K, options, index=again)[1], self_neighbours(vectors, K, options, index=index)[1]
    )


@pytest.mark.parametrize(
    "options",
    [
        {"kind": "annoy"},
        {"nlist": -1},
        {"nprobe": 0},
        {"hnsw_m": 1},
        {"ef_search": 0},
    ],
)
def test_invalid_options_raise(options):
    with pytest.raises(ValueError):
        IndexOptions(**options)


def test_vectors_must_be_rows():
    with pytest.raises(ValueError, match="2-D"):
        build_index(np.ones(384, dtype=np.float32))


def test_auto_is_exact_up_to_the_threshold_and_ivf_past_it():
    assert IndexOptions().kind_for(EXACT_UP_TO) == "flat"
    assert IndexOptions().kind_for(EXACT_UP_TO + 1) == "ivf"
    assert IndexOptions(kind="hnsw").kind_for(10) == "hnsw"
    assert IndexOptions(kind="flat").kind_for(10 * EXACT_UP_TO) == "flat"


def test_cells_default_to_four_root_n_within_bounds():
    assert IndexOptions().cells_for(1_000_000) == 4_000
    assert IndexOptions().cells_for(4) == 16
    assert IndexOptions().cells_for(10**12) == 65_536
    assert IndexOptions(nlist=300).cells_for(1_000_000) == 300


def test_clustered_vectors_have_neighbourhoods():
    """The benchmark's data: unit rows, near neighbours far closer than random pairs, seeded."""
    vectors = clustered_unit_vectors(3_000, seed=7)
    assert vectors.dtype == np.float32 and vectors.shape == (3_000, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarities, _ = brute_force(vectors, K)
    random_pairs = np.einsum("ij,ij->i", vectors[:1_000], vectors[1_000:2_000])
    assert np.median(similarities[:, 0]) > 0.6 and abs(np.median(random_pairs)) < 0.2
    np.testing.assert_array_equal(vectors, clustered_unit_vectors(3_000, seed=7))


def test_bench_knn_runs_tiny(tmp_path):
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_knn.py", "--sizes", "3000", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "| 3,000 | admap self_neighbours (auto): flat |" in result.stdout
    assert "64k exact <= 10 s | not measured" in result.stdout
    table = (tmp_path / "knn.md").read_text()
    assert "Command: `python benchmarks/bench_knn.py --sizes 3000 --out" in table
    assert "Machine: " in table and "Gaussian clusters" in table and "GPU path" in table
    rows = list(csv.DictReader((tmp_path / "knn.csv").open()))
    assert {row["method"] for row in rows} >= {"admap", "faiss-flat", "sklearn", "numpy"}
    assert all(float(row["recall_at_10"]) > 0.999 for row in rows)  # all exact at this size
    record = json.loads((tmp_path / "knn.json").read_text())
    assert record["sizes"][0]["size"] == 3_000 and len(record["goals"]) == 2


def test_bench_knn_variants(tmp_path):
    from benchmarks.bench_knn import main, parse_variant

    assert parse_variant("IVF64,SQ8:nprobe=8:order=cell") == ("IVF64,SQ8", {"nprobe": 8, "order": "cell"})
    variants = ["ivf:nprobe=8", "ivf:nprobe=8:order=cell", "IVF32,SQ8:nprobe=8", "hnsw:ef_search=32"]
    argv = ["--sizes", "4000", "--methods", "admap", "--variants", *variants, "blocked:nlist=16:nprobe=4"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    rows = {row["label"]: row for row in csv.DictReader((tmp_path / "knn.csv").open())}
    for spec in [*variants, "blocked:nlist=16:nprobe=4"]:
        assert float(rows[f"variant {spec}"]["recall_at_10"]) > 0.9, spec
    # The same index searched in cell order finds the same neighbours.
    assert rows["variant ivf:nprobe=8"]["recall_at_10"] == rows["variant ivf:nprobe=8:order=cell"]["recall_at_10"]
    vectors = clustered_unit_vectors(2_000, seed=8)
    similarities, ids = cell_blocked_neighbours(vectors, K, cells=8, probes=8)
    expected_similarities, _ = brute_force(vectors, K)
    np.testing.assert_allclose(similarities, expected_similarities, atol=1e-5)  # every cell probed: exact
    assert not (ids == np.arange(2_000)[:, None]).any()
