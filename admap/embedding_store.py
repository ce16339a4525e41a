"""An on-disk, memory-mapped store of embeddings keyed by text hash, one folder per `EmbeddingSpec`.

A folder holds append-only shards: ``<name>.vectors.npy`` (float32 ``(n, d)``, read through
``np.load(mmap_mode="r")``) and ``<name>.keys.npy`` (``V16`` text digests). A shard is written
under temporary names and published by renaming its keys file last, so a killed run or two
processes writing at once never leave a torn shard; a text written twice is read from the
oldest shard. Reads touch only the rows asked for, so memory does not grow with the store.

`stored_embeddings` is the embedding stage through such stores, with its precision check: every scorer
that embeds texts goes through it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from admap.embed import (
    KEY_BYTES,
    EmbeddingOptions,
    EmbeddingReport,
    EmbeddingSpec,
    check_precision,
    default_batch_size,
    distinct_texts,
    encoding_on,
    fill_store,
    put_missing,
    text_keys,
)
from admap.engines import ENGINES
from admap.models import cache_root

KEYS_SUFFIX = ".keys.npy"
VECTORS_SUFFIX = ".vectors.npy"


class EmbeddingStore:
    """Embeddings of one spec in ``directory``; rows are addressed by a store-wide position."""

    def __init__(self, directory: str | Path, spec: EmbeddingSpec):
        self.directory = Path(directory)
        self.spec = spec
        self.directory.mkdir(parents=True, exist_ok=True)
        spec_file = self.directory / "spec.json"
        if spec_file.is_file():
            stored = json.loads(spec_file.read_text())
            if stored != spec.__dict__:
                raise ValueError(f"{self.directory}: holds embeddings of {stored}, not {spec.__dict__}")
        else:
            _write_atomically(spec_file, json.dumps(spec.__dict__).encode())
        self._shards: list[np.ndarray] = []
        self._shard_names: list[str] = []
        self._shard_keys: list[np.ndarray] = []
        self._sorted_keys = np.empty(0, dtype=f"V{KEY_BYTES}")
        self._sorted_rows = np.empty(0, dtype=np.int64)
        self._offsets = np.zeros(1, dtype=np.int64)

    def __len__(self) -> int:
        self._refresh()
        return int(self._offsets[-1])

    @property
    def dimension(self) -> int | None:
        self._refresh()
        return self._shards[0].shape[1] if self._shards else None

    def _refresh(self) -> None:
        """Open shards written since the last look (by this or another process) and re-index."""
        # A shard is published by its keys file; listing them is cheap next to any read.
        names = sorted(p.name[: -len(KEYS_SUFFIX)] for p in self.directory.glob(f"*{KEYS_SUFFIX}"))
        known = set(self._shard_names)
        new = [n for n in names if n not in known]
        if not new:
            return
        for name in new:
            self._shard_keys.append(np.load(self.directory / f"{name}{KEYS_SUFFIX}"))
            self._shards.append(np.load(self.directory / f"{name}{VECTORS_SUFFIX}", mmap_mode="r"))
            self._shard_names.append(name)
        sizes = [len(k) for k in self._shard_keys]
        self._offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        all_keys = np.concatenate(self._shard_keys)
        # Stable: among duplicate keys the oldest shard's row sorts first and is the one found.
        order = np.argsort(all_keys, kind="stable")
        self._sorted_keys, self._sorted_rows = all_keys[order], order.astype(np.int64)

    def locate(self, keys: np.ndarray) -> np.ndarray:
        """Store position of each key, -1 where it is absent."""
        self._refresh()
        keys = np.asarray(keys, dtype=f"V{KEY_BYTES}")
        if not len(self._sorted_keys):
            return np.full(len(keys), -1, dtype=np.int64)
        at = np.searchsorted(self._sorted_keys, keys)
        at_clipped = np.minimum(at, len(self._sorted_keys) - 1)
        found = (at < len(self._sorted_keys)) & (self._sorted_keys[at_clipped] == keys)
        return np.where(found, self._sorted_rows[at_clipped], -1)

    def gather(self, positions: np.ndarray) -> np.ndarray:
        """``(len(positions), d)`` float32 rows, in the order asked for."""
        self._refresh()
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) and (positions.min() < 0 or positions.max() >= self._offsets[-1]):
            raise IndexError("position outside the store (a key that locate did not find?)")
        out = np.empty((len(positions), self.dimension or 0), dtype=np.float32)
        shard_of = np.searchsorted(self._offsets, positions, side="right") - 1
        for shard in np.unique(shard_of):
            rows = np.flatnonzero(shard_of == shard)
            out[rows] = self._shards[shard][positions[rows] - self._offsets[shard]]
        return out

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Write one shard. ``vectors`` are float32 ``(len(keys), d)``."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        keys = np.asarray(keys, dtype=f"V{KEY_BYTES}")
        if vectors.ndim != 2 or len(vectors) != len(keys):
            raise ValueError(f"{len(keys)} keys for vectors of shape {vectors.shape}")
        if self.dimension is not None and vectors.shape[1] != self.dimension:
            raise ValueError(
                f"{self.directory}: vectors of dimension {vectors.shape[1]}, the store has {self.dimension}"
            )
        if not len(keys):
            return
        # Names sort in writing order (nanosecond clock), the uuid keeps concurrent writers apart.
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        _save_atomically(self.directory / f"{name}{VECTORS_SUFFIX}", vectors)
        _save_atomically(self.directory / f"{name}{KEYS_SUFFIX}", keys)


def _write_atomically(path: Path, data: bytes) -> None:
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    staging.write_bytes(data)
    os.replace(staging, path)


def _save_atomically(path: Path, array: np.ndarray) -> None:
    staging = path.with_name(f".{path.name}.partial")
    with staging.open("wb") as handle:
        np.save(handle, array)
    os.replace(staging, path)


def store_directory(spec: EmbeddingSpec, cache_dir: str | None = None) -> Path:
    return Path(cache_dir or cache_root() / "embeddings") / spec.namespace


@contextmanager
def open_store(spec: EmbeddingSpec, *, cache: bool = True, cache_dir: str | None = None) -> Iterator[EmbeddingStore]:
    """The persistent store of ``spec``; with ``cache=False`` a temporary one, deleted on exit
    (embeddings still go to disk, so that memory stays bounded)."""
    if cache:
        yield EmbeddingStore(store_directory(spec, cache_dir), spec)
        return
    scratch = Path(tempfile.mkdtemp(prefix="admap-embeddings-"))
    try:
        yield EmbeddingStore(scratch, spec)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass
class StoredEmbeddings:
    """Every text's embedding in ``store``: ``positions[i]`` is the store row of the i-th text."""

    store: EmbeddingStore
    positions: np.ndarray
    report: EmbeddingReport


@contextmanager
def stored_embeddings(
    texts: Sequence[str],
    check_pairs: np.ndarray,
    *,
    model: str,
    options: EmbeddingOptions,
    device: str,
    batch_size: int | None,
    seed: int,
    progress: bool = True,
) -> Iterator[StoredEmbeddings]:
    """The embedding stage: ``model``'s embeddings of ``texts`` through the store of their spec, to read
    inside the block (a store without the cache is deleted at its exit).

    The engine of ``options`` is created for ``device`` and entered once; the precision (and the default
    batch size) follow the device its encoders run on, which on a Ray cluster is the actors', not this
    process's. Unless the store holds every text already, a precision other than fp32 is first checked
    (`check_precision`) on the same engine, on a sample (by ``seed``) of ``check_pairs`` ``(P, 2)``,
    positions into ``texts`` of the pairs whose cosines are compared; when it fails, fp32 is used. The
    sample's vectors are kept in both precisions' stores, so the check costs one extra fp32 pass over it.
    The distinct texts the store lacks are then encoded longest first, a chunk at a time. The report
    (`EmbeddingReport`) says what was cached, encoded and checked.
    """
    index, uniques = distinct_texts(texts)
    keys = text_keys(uniques)
    start = time.perf_counter()
    with ExitStack() as stores:
        # The engine is released before the block: reading the store back needs no cluster.
        with ENGINES.get(options.engine).from_options(options, device=device) as engine:
            spec = options.spec(model, engine.encoding_device)
            batch_size = batch_size or default_batch_size(engine.encoding_device)
            report = EmbeddingReport(
                model=spec.model,
                precision=spec.precision,
                engine=options.engine,
                texts=len(index),
                distinct_texts=len(uniques),
            )
            store = stores.enter_context(_options_store(spec, options))
            encoded = 0
            if spec.precision != "fp32" and (store.locate(keys) < 0).any():
                check_pairs = np.asarray(check_pairs, dtype=np.int64).reshape(-1, 2)
                rng = np.random.default_rng(seed)
                sample = check_pairs[
                    rng.choice(len(check_pairs), size=options.agreement_sample_size(len(check_pairs)), replace=False)
                ]
                check, sample_embeddings = check_precision(
                    spec,
                    [texts[i] for i in sample[:, 0]],
                    [texts[i] for i in sample[:, 1]],
                    encode=encoding_on(engine, spec.model, chunk_size=options.embed_chunk_size, batch_size=batch_size),
                    min_agreement=options.min_precision_agreement,
                )
                report.precision_check = check.to_dict()
                fp32_store = stores.enter_context(_options_store(spec.with_precision("fp32"), options))
                sample_keys = text_keys(sample_embeddings.texts)
                fp32_added = put_missing(fp32_store, sample_keys, sample_embeddings.fp32)
                if check.used == spec.precision:
                    encoded = put_missing(store, sample_keys, sample_embeddings.fast)
                else:
                    spec, store, encoded = fp32_store.spec, fp32_store, fp32_added
                    report.precision = spec.precision
            encoded += fill_store(
                store,
                uniques,
                keys,
                spec,
                engine,
                chunk_size=options.embed_chunk_size,
                batch_size=batch_size,
                progress=progress,
            )
        report.encode_seconds = round(time.perf_counter() - start, 3)
        report.encoded_texts, report.cached_texts = encoded, len(uniques) - encoded
        report.cache_dir = str(store.directory) if options.embedding_cache else None
        yield StoredEmbeddings(store, store.locate(keys)[index], report)


def _options_store(spec: EmbeddingSpec, options: EmbeddingOptions):
    return open_store(spec, cache=options.embedding_cache, cache_dir=options.embedding_cache_dir)
