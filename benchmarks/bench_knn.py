"""All-pairs 10 nearest neighbours of 384-d unit vectors (all-MiniLM-L6-v2's width): admap's `self_neighbours`
against exact FAISS, scikit-learn and numpy, with the approximate index's recall.

Data (`clustered_unit_vectors`, seeded): sentence embeddings are not uniform noise (uniform noise in 384
dimensions has no neighbourhoods: every vector is about equally far from every other), so the vectors are a
mixture of ``n / 250`` Gaussian clusters (4,000 at 1M) of log-normal sizes. The clusters' unit centres are
grouped under ``sqrt(clusters)`` random topics (a centre's cosine to its topic about 0.7, to a sibling's about
0.5) and all lean on one shared direction, as real embeddings do; each cluster spreads along a random
24-dimensional subspace of its own (log-normal spread, median 0.8), plus isotropic noise (0.3); every vector is
then scaled to unit length, and rows come in random order. On these, a vector's nearest neighbour has a cosine of
about 0.8 and its 10th about 0.72; random pairs about 0.05 (0.28 at the 90th percentile), as in embeddings of a
large set of prompts.

Methods, each giving every vector its 10 nearest other vectors (k = 10, itself excluded), timed from the
array in memory to the ``(n, 10)`` results, index building included:

- admap: ``self_neighbours(vectors, 10)`` with the default `IndexOptions` (``auto``: exact ``flat`` up to
  `admap.knn.EXACT_UP_TO` vectors, IVF past it) on the CPU, and again with ``device="cuda"`` where faiss has
  GPU support and CUDA is present (else the table says that the GPU path is not measured);
- FAISS flat (exact): ``IndexFlatIP``, searched for 11 and the vector itself dropped;
- scikit-learn: ``NearestNeighbors(n_neighbors=11, algorithm="brute", metric="cosine")``;
- numpy: blocks of queries times the whole matrix (``Q @ X.T``, 1 GiB of scores a block), the vector's own
  score set to -inf, ``argpartition`` for the 10 best, then sorted.

Past ``--sample-above`` vectors (default 100,000) the three exact peers would take from many minutes to hours,
so they are timed on ``--sample`` seeded queries (default 10,000) against the whole set and their search time
scaled linearly to all queries (the table says "timed on 10,000 queries, scaled"); admap is always timed on
all queries. Recall@10 is against FAISS flat's exact neighbours, on those sample queries past
``--sample-above`` and on all queries below it.

Goals: every 64k vectors' exact neighbours in at most 10 s; 1M vectors' in at most 120 s at recall@10 >= 0.95.

``--variants`` also times other indexes, searched as ``self_neighbours`` searches (11, the vector itself
dropped); each spec is a kind of `IndexOptions` or a FAISS factory string, then ``:name=value`` parameters:
``ivf:nlist=1024:nprobe=8``, ``hnsw:hnsw_m=32:ef_search=64``, ``IVF4096,SQ8:nprobe=16``,
``IVF1024,PQ96x4fs,RFlat:nprobe=8:k_factor=4``. Specs that differ only in their search parameters (nprobe,
ef_search, k_factor, order) share one built index. Past ``--sample-above`` a variant's search is timed on the
sample and scaled, as the peers' are, except with ``order=cell``: every query is searched, those of one IVF cell
together (consecutive queries then scan the same lists), which a sample cannot show. ``blocked:nlist=1024:nprobe=4``
is not an index but `admap.knn.cell_blocked_neighbours` (IVF's cells searched a cell at a time with matrix
products: what ``self_neighbours`` does past `EXACT_UP_TO`) with other cells and probes, always timed on all queries.

    python benchmarks/bench_knn.py --out results/knn
    python benchmarks/bench_knn.py --sizes 3000 --out /tmp/knn          # seconds
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gc
import json
import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from admap.faiss_build import import_faiss
from admap.knn import (
    ALL_PAIRS_CELL_SIZE,
    EXACT_UP_TO,
    IndexOptions,
    build_index,
    cell_blocked_neighbours,
    on_gpu,
    search,
    self_neighbours,
)
from admap.provenance import machine, machine_line, provenance

K = 10
DIMENSION = 384
SIZES = (64_000, 1_000_000)
SAMPLE_ABOVE = 100_000
SAMPLE = 10_000
METHODS = ("admap", "admap-gpu", "faiss-flat", "sklearn", "numpy")
EXACT_GOAL = (64_000, 10.0)
APPROXIMATE_GOAL = (1_000_000, 120.0, 0.95)
# The generator's shape (see the module docstring).
VECTORS_PER_CLUSTER = 250
CLUSTER_RANK = 24
MEDIAN_SPREAD = 0.8
NOISE = 0.3
SHARED = 0.3
TOPIC_SPREAD = 1.0
GENERATOR = (
    f"seeded mixture of n/{VECTORS_PER_CLUSTER} Gaussian clusters (log-normal sizes) around unit centres grouped "
    f"under sqrt(clusters) random topics (spread {TOPIC_SPREAD}) and leaning {SHARED} on one shared direction, "
    f"each spread along its own random {CLUSTER_RANK}-d subspace "
    f"(log-normal spread, median {MEDIAN_SPREAD}) plus isotropic noise {NOISE}, scaled to unit length"
)
# Variant parameters set on a built index (the others build one): `set_search_params`.
SEARCH_PARAMS = ("nprobe", "ef_search", "efSearch", "k_factor", "order")
# numpy's peer: scores of one block of queries against every vector, at most this many bytes.
NUMPY_BLOCK_BYTES = 2**30


def clustered_unit_vectors(n: int, dimension: int = DIMENSION, seed: int = 0) -> np.ndarray:
    """``(n, dimension)`` float32 unit rows shaped like sentence embeddings (module docstring); rows in random
    order (a row's cluster is drawn independently of its position)."""
    rng = np.random.default_rng(seed)
    clusters = max(n // VECTORS_PER_CLUSTER, 8)
    weights = rng.lognormal(0.0, 1.0, clusters)
    labels = rng.choice(clusters, size=n, p=weights / weights.sum())
    shared = rng.standard_normal(dimension)
    topics = rng.standard_normal((max(round(np.sqrt(clusters)), 1), dimension)) / np.sqrt(dimension)
    centres = topics[rng.integers(len(topics), size=clusters)]
    centres += TOPIC_SPREAD * rng.standard_normal((clusters, dimension)) / np.sqrt(dimension)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    centres += SHARED * shared / np.linalg.norm(shared)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    spreads = rng.lognormal(np.log(MEDIAN_SPREAD), 0.35, clusters)
    vectors = np.empty((n, dimension), dtype=np.float32)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(clusters + 1))
    for cluster in range(clusters):
        rows = order[bounds[cluster] : bounds[cluster + 1]]
        if len(rows) == 0:
            continue
        basis = rng.standard_normal((CLUSTER_RANK, dimension)) / np.sqrt(dimension)
        along = rng.standard_normal((len(rows), CLUSTER_RANK)) * (spreads[cluster] / np.sqrt(CLUSTER_RANK))
        noise = rng.standard_normal((len(rows), dimension)) * (NOISE / np.sqrt(dimension))
        vectors[rows] = centres[cluster] + along @ basis + noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def drop_own(similarities: np.ndarray, ids: np.ndarray, rows: np.ndarray, k: int = K):
    """Of ``k + 1`` results per query row, the ``k`` that are not the row itself (the last one where the row
    is missing)."""
    own = ids == rows[:, None]
    own[~own.any(axis=1), -1] = True
    return similarities[~own].reshape(len(rows), k), ids[~own].reshape(len(rows), k)


def recall_at_k(ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """The share of the exact neighbours found, over all query rows."""
    found = sum(len(np.intersect1d(row, exact, assume_unique=True)) for row, exact in zip(ids, exact_ids))
    return found / exact_ids.size


def faiss_flat(vectors: np.ndarray, rows: np.ndarray) -> dict:
    faiss = import_faiss()
    start = time.perf_counter()
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    built = time.perf_counter()
    similarities, ids = index.search(vectors[rows], K + 1)
    searched = time.perf_counter()
    similarities, ids = drop_own(similarities, ids, rows)
    return {"build_s": built - start, "search_s": searched - built, "similarities": similarities, "ids": ids}


def sklearn_brute(vectors: np.ndarray, rows: np.ndarray) -> dict:
    from sklearn.neighbors import NearestNeighbors

    start = time.perf_counter()
    model = NearestNeighbors(n_neighbors=K + 1, algorithm="brute", metric="cosine").fit(vectors)
    built = time.perf_counter()
    distances, ids = model.kneighbors(vectors[rows])
    searched = time.perf_counter()
    similarities, ids = drop_own((1 - distances).astype(np.float32), ids, rows)
    return {"build_s": built - start, "search_s": searched - built, "similarities": similarities, "ids": ids}


def numpy_brute(vectors: np.ndarray, rows: np.ndarray) -> dict:
    start = time.perf_counter()
    block = max(NUMPY_BLOCK_BYTES // (4 * len(vectors)), 1)
    similarities = np.empty((len(rows), K), dtype=np.float32)
    ids = np.empty((len(rows), K), dtype=np.int64)
    for first in range(0, len(rows), block):
        queries = rows[first : first + block]
        scores = vectors[queries] @ vectors.T
        scores[np.arange(len(queries)), queries] = -np.inf
        best = np.argpartition(scores, -K, axis=1)[:, -K:]
        best_scores = np.take_along_axis(scores, best, axis=1)
        order = np.argsort(-best_scores, axis=1, kind="stable")
        ids[first : first + block] = np.take_along_axis(best, order, axis=1)
        similarities[first : first + block] = np.take_along_axis(best_scores, order, axis=1)
    return {"build_s": 0.0, "search_s": time.perf_counter() - start, "similarities": similarities, "ids": ids}


PEERS = {"faiss-flat": faiss_flat, "sklearn": sklearn_brute, "numpy": numpy_brute}
LABELS = {
    "admap": "admap self_neighbours (auto)",
    "admap-gpu": "admap self_neighbours (auto, cuda)",
    "faiss-flat": "FAISS IndexFlatIP (exact)",
    "sklearn": "scikit-learn NearestNeighbors (brute, cosine)",
    "numpy": "numpy blocked matmul + argpartition",
}


def time_admap(vectors: np.ndarray, options: IndexOptions) -> dict:
    start = time.perf_counter()
    similarities, ids = self_neighbours(vectors, K, options)
    return {"seconds": time.perf_counter() - start, "similarities": similarities, "ids": ids}


def parse_variant(spec: str) -> tuple[str, dict]:
    """``kind_or_factory:name=value:...`` as (kind or factory string, {name: value}), numbers as ints."""
    head, *pairs = spec.split(":")
    params = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if not value:
            raise ValueError(f"variant parameters are name=value, got {pair!r} in {spec!r}")
        params[name] = int(value) if value.isdigit() else value
    return head, params


def build_variant(vectors: np.ndarray, head: str, params: dict):
    """The index for a variant (an `IndexOptions` kind, or a FAISS factory string trained on 64 points a
    cell as admap trains its IVF), and the function that sets its search parameter."""
    faiss = import_faiss()
    search_params = {name: params[name] for name in SEARCH_PARAMS if name in params}
    if head in ("flat", "ivf", "hnsw"):
        build_params = {name: value for name, value in params.items() if name not in search_params}
        options = IndexOptions(kind=head, **build_params, device="cpu")
        index = build_index(vectors, options)
    else:
        index = faiss.index_factory(vectors.shape[1], head, faiss.METRIC_INNER_PRODUCT)
        try:
            ivf = faiss.extract_index_ivf(index)
        except RuntimeError:
            ivf = None
        if ivf is not None:
            ivf.cp.seed = 0
            sample = np.random.default_rng(0).permutation(len(vectors))[: 64 * ivf.nlist]
            index.train(vectors[np.sort(sample)])
        elif not index.is_trained:
            index.train(vectors)
        index.add(vectors)
    return index


def set_search_params(index, params: dict) -> None:
    faiss = import_faiss()
    space = faiss.ParameterSpace()
    for name, value in params.items():
        if name == "nprobe":
            space.set_index_parameter(index, "nprobe", value)
        elif name in ("ef_search", "efSearch"):
            space.set_index_parameter(index, "efSearch", value)
        elif name == "k_factor":
            space.set_index_parameter(index, "k_factor_rf", value)


def time_variants(vectors: np.ndarray, specs: list[str], rows: np.ndarray, exact_ids: np.ndarray):
    """Yields each variant's all-pairs seconds (build + search, the search scaled from ``rows`` when they are fewer
    than all) and recall on ``rows``."""
    n = len(vectors)
    built = {}
    for spec in specs:
        head, params = parse_variant(spec)
        if head == "blocked":
            start = time.perf_counter()
            similarities, ids = cell_blocked_neighbours(vectors, K, cells=params["nlist"], probes=params["nprobe"])
            seconds = time.perf_counter() - start
            yield {
                "spec": spec,
                "seconds": seconds,
                "timed_queries": n,
                "recall_at_10": recall_at_k(ids[rows], exact_ids),
            }
            continue
        search_params = {name: value for name, value in params.items() if name in SEARCH_PARAMS}
        key = (head, tuple(sorted((name, value) for name, value in params.items() if name not in search_params)))
        if key not in built:
            built.clear()
            gc.collect()
            start = time.perf_counter()
            built[key] = (build_variant(vectors, head, params), time.perf_counter() - start)
        index, build_s = built[key]
        set_search_params(index, search_params)
        in_cell_order = search_params.get("order") == "cell"
        queries = np.arange(n) if in_cell_order else rows
        start = time.perf_counter()
        if in_cell_order:
            # Every query, those of one IVF cell together: consecutive queries scan the same lists.
            _, cells = import_faiss().extract_index_ivf(index).quantizer.search(vectors, 1)
            order = np.argsort(cells[:, 0], kind="stable")
            similarities, ids = search(index, vectors[order], K + 1)
            similarities[order], ids[order] = similarities.copy(), ids.copy()
        else:
            similarities, ids = search(index, vectors[rows], K + 1)
        search_s = time.perf_counter() - start
        similarities, ids = drop_own(
            similarities[rows] if in_cell_order else similarities, ids[rows] if in_cell_order else ids, rows
        )
        yield (
            {
                "spec": spec,
                "build_s": build_s,
                "search_s": search_s,
                "seconds": build_s + search_s * n / len(queries),
                "timed_queries": len(queries),
                "recall_at_10": recall_at_k(ids, exact_ids),
            }
        )


def progress(n: int, result: dict) -> None:
    """One line on stderr as each method finishes (a full run takes many minutes)."""
    print(
        f"{n:,} vectors: {result['label']}: {result['seconds']:,.1f} s ({result['timed_on']}), "
        f"recall@10 {result['recall_at_10']:.4f}",
        file=sys.stderr,
        flush=True,
    )


def measure(
    n: int, methods: tuple[str, ...], *, sample_above: int, sample: int, seed: int, variants: list[str]
) -> dict:
    """Every method at ``n`` vectors: rows of the table, and the data's neighbourhood statistics."""
    start = time.perf_counter()
    vectors = clustered_unit_vectors(n, seed=seed)
    generated_s = time.perf_counter() - start
    sampled = n > sample_above
    rows = (
        np.sort(np.random.default_rng(seed + 1).choice(n, size=min(sample, n), replace=False))
        if sampled
        else np.arange(n)
    )
    timed_on = f"timed on {len(rows):,} queries, scaled" if sampled else "all queries"
    exact = faiss_flat(vectors, rows)
    exact_ids = exact["ids"]
    results = []
    if "admap" in methods or "admap-gpu" in methods:
        devices = [("admap", "cpu")] if "admap" in methods else []
        if "admap-gpu" in methods and on_gpu("cuda"):
            devices.append(("admap-gpu", "cuda"))
        for method, device in devices:
            options = IndexOptions(device=device)
            run = time_admap(vectors, options)
            kind = options.kind_for(n)
            if kind == "ivf" and device == "cpu":
                detail = f"cell-blocked, {max(n // ALL_PAIRS_CELL_SIZE, 1)} cells, {options.cell_probes} probed each"
            elif kind == "ivf":
                detail = f"ivf, {min(options.cells_for(n), max(n // 40, 1))} cells, nprobe {options.nprobe}"
            else:
                detail = kind
            results.append(
                {
                    "method": method,
                    "label": f"{LABELS[method]}: {detail}",
                    "seconds": run["seconds"],
                    "timed_on": "all queries",
                    "recall_at_10": recall_at_k(run["ids"][rows], exact_ids),
                }
            )
            progress(n, results[-1])
            del run
            gc.collect()
    for method in ("faiss-flat", "sklearn", "numpy"):
        if method not in methods:
            continue
        run = exact if method == "faiss-flat" else PEERS[method](vectors, rows)
        results.append(
            {
                "method": method,
                "label": LABELS[method],
                "seconds": run["build_s"] + run["search_s"] * n / len(rows),
                "build_s": run["build_s"],
                "search_s": run["search_s"],
                "timed_on": timed_on,
                "recall_at_10": recall_at_k(run["ids"], exact_ids),
            }
        )
        progress(n, results[-1])
        gc.collect()
    for variant in time_variants(vectors, variants, rows, exact_ids):
        scaled = variant["timed_queries"] < n
        results.append(
            {
                "method": "variant",
                "label": f"variant {variant['spec']}",
                **variant,
                "timed_on": f"timed on {len(rows):,} queries, scaled" if scaled else "all queries",
            }
        )
        progress(n, results[-1])
    admap_s = next((r["seconds"] for r in results if r["method"] == "admap"), None)
    for result in results:
        result["vs_admap"] = result["seconds"] / admap_s if admap_s else None
    random_pairs = np.einsum(
        "ij,ij->i",
        vectors[rows[: min(len(rows), 5000)]],
        vectors[np.random.default_rng(seed + 2).permutation(n)[:5000]],
    )
    data = {
        "generated_s": generated_s,
        "nearest_cosine_median": float(np.median(exact["similarities"][:, 0])),
        "tenth_cosine_median": float(np.median(exact["similarities"][:, K - 1])),
        "random_pair_cosine_median": float(np.median(random_pairs)),
    }
    return {"size": n, "sampled_queries": len(rows) if sampled else None, "data": data, "results": results}


def goal_rows(measured: list[dict]) -> list[dict]:
    by_size = {m["size"]: {r["method"]: r for r in m["results"]} for m in measured}
    exact_n, exact_s = EXACT_GOAL
    approx_n, approx_s, approx_recall = APPROXIMATE_GOAL
    goals = []
    admap = by_size.get(exact_n, {}).get("admap")
    exact = admap is not None and admap["label"].endswith(": flat")
    goals.append(
        {
            "goal": f"{exact_n // 1000}k exact <= {exact_s:g} s",
            "measured": f"{admap['seconds']:.1f} s ({'exact' if exact else 'approximate'})"
            if admap
            else "not measured",
            "met": "yes" if admap and exact and admap["seconds"] <= exact_s else ("no" if admap else "not measured"),
        }
    )
    admap = by_size.get(approx_n, {}).get("admap")
    goals.append(
        {
            "goal": f"{approx_n // 1_000_000}M <= {approx_s:g} s at recall >= {approx_recall:g}",
            "measured": f"{admap['seconds']:.1f} s, recall {admap['recall_at_10']:.4f}" if admap else "not measured",
            "met": (
                ("yes" if admap["seconds"] <= approx_s and admap["recall_at_10"] >= approx_recall else "no")
                if admap
                else "not measured"
            ),
        }
    )
    return goals


def gpu_line(methods: tuple[str, ...]) -> str:
    faiss = import_faiss()
    if "admap-gpu" not in methods:
        return "GPU path not measured (not asked for)."
    if on_gpu("cuda"):
        return "GPU path measured (admap-gpu rows)."
    reason = "faiss has no GPU support" if not hasattr(faiss, "StandardGpuResources") else "no CUDA device"
    return f"GPU path not measured: {reason} here."


def seconds(value: float) -> str:
    return f"{value:,.2f}" if value < 10 else f"{value:,.1f}"


def table(measured: list[dict]) -> list[str]:
    lines = [
        "| size | method | seconds | timed on | x admap's time | recall@10 |",
        "|---:|---|---:|---|---:|---:|",
    ]
    for m in measured:
        for r in m["results"]:
            ratio = f"{r['vs_admap']:.2f}" if r["vs_admap"] is not None else "-"
            lines.append(
                f"| {m['size']:,} | {r['label']} | {seconds(r['seconds'])} | {r['timed_on']} | {ratio} | "
                f"{r['recall_at_10']:.4f} |"
            )
    return lines


def goal_table(goals: list[dict]) -> list[str]:
    lines = ["| goal | measured | met |", "|---|---|---|"]
    lines += [f"| {g['goal']} | {g['measured']} | {g['met']} |" for g in goals]
    return lines


def markdown(measured: list[dict], goals: list[dict], record: dict) -> str:
    lines = [
        f"# All-pairs {K} nearest neighbours of {DIMENSION}-d unit vectors (self excluded)",
        "",
        f"Command: `{record['command']}`  ",
        f"Machine: {record['machine_line']}; load average (1, 5, 15 min) at the start "
        f"{' '.join(record['load_average'])}, at the end {' '.join(record['load_average_after'])}  ",
        f"Data: {GENERATOR}; seed {record['seed']}.  ",
        f"`EXACT_UP_TO` = {EXACT_UP_TO:,}; default `IndexOptions`: {record['default_options']}.  ",
        record["gpu"],
        "",
        *table(measured),
        "",
        *goal_table(goals),
        "",
        "Seconds: from the vectors in memory to every vector's 10 neighbours, index building included; "
        "'scaled': searched for the sampled queries against all vectors, the search time multiplied by "
        "size / sample (building once). Recall@10: the share of FAISS flat's exact neighbours found, on the same "
        "queries. 'x admap's time': seconds / admap's seconds at that size.",
        "",
        "| size | nearest neighbour cosine (median) | 10th (median) | random pair (median) | generating (s) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for m in measured:
        d = m["data"]
        lines.append(
            f"| {m['size']:,} | {d['nearest_cosine_median']:.3f} | {d['tenth_cosine_median']:.3f} | "
            f"{d['random_pair_cosine_median']:.3f} | {d['generated_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def write_results(out: Path, measured: list[dict], goals: list[dict], record: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "knn.md").write_text(markdown(measured, goals, record))
    (out / "knn.json").write_text(json.dumps({**record, "sizes": measured, "goals": goals}, indent=2) + "\n")
    fields = ["size", "method", "label", "seconds", "timed_on", "vs_admap", "recall_at_10", "build_s", "search_s"]
    with (out / "knn.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for m in measured:
            for r in m["results"]:
                writer.writerow({"size": m["size"], **r})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="vectors")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--sample-above", type=int, default=SAMPLE_ABOVE, help="past this many vectors, time the peers on a sample"
    )
    parser.add_argument("--sample", type=int, default=SAMPLE, help="queries the peers are timed on past --sample-above")
    parser.add_argument("--variants", nargs="*", default=[], help="other indexes to time (module docstring)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="folder for knn.md, knn.csv and knn.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    command = shlex.join(["python", "benchmarks/bench_knn.py", *(sys.argv[1:] if argv is None else argv)])
    methods = tuple(args.methods)
    load_average = Path("/proc/loadavg").read_text().split()[:3]
    measured = []
    for n in args.sizes:
        measured.append(
            measure(
                n, methods, sample_above=args.sample_above, sample=args.sample, seed=args.seed, variants=args.variants
            )
        )
        gc.collect()
    goals = goal_rows(measured)
    facts = machine()
    record = {
        **provenance(command),
        "machine_line": machine_line(facts),
        "load_average": load_average,
        "load_average_after": Path("/proc/loadavg").read_text().split()[:3],
        "seed": args.seed,
        "generator": GENERATOR,
        "exact_up_to": EXACT_UP_TO,
        "default_options": ", ".join(
            f"{f.name}={getattr(IndexOptions(), f.name)!r}" for f in dataclasses.fields(IndexOptions)
        ),
        "gpu": gpu_line(methods),
    }
    print("\n".join(table(measured)))
    print()
    print("\n".join(goal_table(goals)))
    print(record["gpu"])
    if args.out:
        write_results(Path(args.out), measured, goals, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
