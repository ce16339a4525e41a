"""What checking the embedding cache costs: seconds per GiB of shards opened and hashed.

Writes ``--gib`` of random float32 shards (``--rows`` texts a shard of ``--dimension``, the default
chunk of 8,192 at 768 wide is 25 MB) through `EmbeddingStore.add`, then, ``--repeats`` times, opens
the folder in a new store (each shard's keys hashed, its headers and sizes checked) and locates every
key (each shard's vectors hashed once), and locates them again (nothing hashed) for the cost of the
lookup itself. The shards are in the page cache when hashed, as they are when a run has just written
them; from a cold disk add the disk's read time.

    python benchmarks/bench_cache_digest.py --gib 1 --out results/cache_digest.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from admap.embed import text_keys
from admap.embedding_store import VECTORS_SUFFIX, EmbeddingStore
from admap.encoders import EmbeddingSpec
from admap.provenance import cpuinfo_field


def measure(folder: Path, *, gib: float, rows: int, dimension: int, repeats: int) -> dict:
    spec = EmbeddingSpec("digest-benchmark", "fp32")
    writer = EmbeddingStore(folder, spec)
    shards = max(1, round(gib * 2**30 / (rows * dimension * 4)))
    rng = np.random.default_rng(0)
    keys = []
    for shard in range(shards):
        keys.append(text_keys([f"text {shard}.{row}" for row in range(rows)]))
        writer.add(keys[-1], rng.standard_normal((rows, dimension), dtype=np.float32))
    keys = np.concatenate(keys)
    size = sum(p.stat().st_size for p in folder.glob(f"*{VECTORS_SUFFIX}")) / 2**30
    opened, hashed, located = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        store = EmbeddingStore(folder, spec)
        len(store)  # lists and opens every shard
        opened.append(time.perf_counter() - start)
        start = time.perf_counter()
        store.locate(keys)
        hashed.append(time.perf_counter() - start)
        start = time.perf_counter()
        store.locate(keys)
        located.append(time.perf_counter() - start)
    lookup = statistics.median(located)
    return {
        "cpu": cpuinfo_field("model name"),
        "cpu_count": os.cpu_count(),
        # OpenSSL's SHA-256 is several times faster on CPUs with SHA extensions.
        "sha_ni": "sha_ni" in (cpuinfo_field("flags") or "").split(),
        "shards": shards,
        "texts": len(keys),
        "dimension": dimension,
        "gib": round(size, 3),
        "open_s_per_gib": round(statistics.median(opened) / size, 3),
        "hash_s_per_gib": round((statistics.median(hashed) - lookup) / size, 3),
        "lookup_s": round(lookup, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0, help="size of the shards written")
    parser.add_argument("--rows", type=int, default=8192, help="texts a shard (the default --embed-chunk-size)")
    parser.add_argument("--dimension", type=int, default=768, help="embedding width")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write the shards (default: a temporary folder)")
    parser.add_argument("--out", default=None, help="write the result as JSON here too")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="admap-digest-", dir=args.dir))
    try:
        result = measure(folder, gib=args.gib, rows=args.rows, dimension=args.dimension, repeats=args.repeats)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
