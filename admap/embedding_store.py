"""An on-disk, memory-mapped store of embeddings keyed by text hash, one folder per `EmbeddingSpec`.

A folder holds append-only shards: ``<name>.vectors.npy`` (float32 ``(n, d)``, read through a memory
map), ``<name>.keys.npy`` (``V16`` text digests) and ``<name>.digest.json`` (the SHA-256 of both
files' bytes). A shard is written under temporary names, each file flushed to disk before it is
renamed, and published by renaming its keys file last, so a killed run, a crash of the machine or two
processes writing at once never leave a torn shard; a text written twice is read from the oldest
shard. Reads touch only the rows asked for, so memory does not grow with the store.

No row is read from a shard that has not been checked. When a store object first lists a shard it
checks the shapes, dtypes and sizes of its files and the digest of its keys (16 bytes a row); when
`EmbeddingStore.locate` first finds a text in it, the digest of its vectors. So each opening of a
store hashes the shards it reads, once each, and no other. A shard that fails is moved to
``quarantine/`` in the folder, with a warning naming the file and what is wrong with it, and is never
read: its texts are absent from the store, and a run that needs them encodes them again.

`stored_embeddings` is the embedding stage through such stores, with its precision check: every scorer
that embeds texts goes through it. Whenever it encodes anything it also re-encodes a few of the texts it
reads from each shard: a shard whose digest holds but whose vectors are not this spec's (another model's,
another precision's) is quarantined too.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from admap.durable import fsync_path
from admap.embed import (
    KEY_BYTES,
    EmbeddingOptions,
    EmbeddingReport,
    check_precision,
    default_batch_size,
    distinct_texts,
    encoding_on,
    fill_store,
    put_missing,
    text_keys,
)
from admap.encoders import EmbeddingSpec
from admap.engines import ENGINES
from admap.models import cache_root
from admap.progress import stage_bar

logger = logging.getLogger(__name__)

KEYS_SUFFIX = ".keys.npy"
VECTORS_SUFFIX = ".vectors.npy"
DIGEST_SUFFIX = ".digest.json"
SHARD_SUFFIXES = (KEYS_SUFFIX, VECTORS_SUFFIX, DIGEST_SUFFIX)  # keys first: moving them unpublishes a shard
QUARANTINE_FOLDER = "quarantine"
# OpenSSL's SHA-256 runs on the CPU's SHA extensions (x86 SHA-NI, Armv8), where it outpaces BLAKE2b: 0.7 against
# 1.2 s a GiB on a Xeon with them.
DIGEST_ALGORITHM = "sha256"
SAMPLE_TEXTS_PER_SHARD = 2
# Re-encoding a text gives its stored vector back up to rounding (batches pad differently): cosines of
# 1 - 1e-6 in fp32, about 1 - 1e-4 in bf16. Another model's vector, or garbage, is far below.
MIN_SAMPLE_COSINE = 0.99


class BadShard(Exception):
    """A shard file that cannot be read as what it should hold."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


@dataclass
class _Shard:
    """A published shard: keys in memory, vectors memory-mapped (None once quarantined), whether this store
    object wrote it (then it is trusted: its digest was taken from the bytes written), and whether the
    vectors' bytes have been checked against ``vectors_digest``."""

    name: str
    keys: np.ndarray
    vectors: np.ndarray | None
    vectors_digest: str
    written_here: bool = False
    verified: bool = False


class EmbeddingStore:
    """Embeddings of one spec in ``directory``; rows are addressed by a store-wide position.

    Positions stay valid for the object's life: a shard quarantined after it was opened keeps its
    place, and only leaves the index, so that no later `locate` finds its rows.
    """

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
            os.replace(_staged(spec_file, lambda handle: handle.write(json.dumps(spec.__dict__).encode())), spec_file)
        self._shards: list[_Shard] = []
        self._refused: set[str] = set()  # shards quarantined before they were opened
        self.quarantined: list[dict] = []  # every shard this object set aside: for the run's summary
        self._written: set[str] = set()
        self._sorted_keys = np.empty(0, dtype=f"V{KEY_BYTES}")
        self._sorted_rows = np.empty(0, dtype=np.int64)
        self._offsets = np.zeros(1, dtype=np.int64)

    def __len__(self) -> int:
        """Rows in the store's position space, the quarantined shards' included."""
        self._refresh()
        return int(self._offsets[-1])

    @property
    def dimension(self) -> int | None:
        self._refresh()
        return self._dimension()

    def _dimension(self) -> int | None:
        return next((s.vectors.shape[1] for s in self._shards if s.vectors is not None), None)

    def _path(self, name: str, suffix: str) -> Path:
        return self.directory / f"{name}{suffix}"

    def _refresh(self) -> None:
        """Open shards written since the last look (by this or another process) and re-index."""
        # A shard is published by its keys file; listing them is cheap next to any read.
        names = sorted(p.name[: -len(KEYS_SUFFIX)] for p in self.directory.glob(f"*{KEYS_SUFFIX}"))
        known = {s.name for s in self._shards} | self._refused
        new = [n for n in names if n not in known]
        if not new:
            return
        for name in new:
            try:
                shard = self._open(name)
            except BadShard as bad:
                self._refused.add(name)
                self._move_to_quarantine(name, bad)
                continue
            shard.written_here = shard.verified = name in self._written
            self._shards.append(shard)
        self._reindex()

    def _open(self, name: str) -> _Shard:
        """The shard ``name`` with its sizes, dtypes and keys checked; `BadShard` when they are not right."""
        digest_path, keys_path, vectors_path = (
            self._path(name, s) for s in (DIGEST_SUFFIX, KEYS_SUFFIX, VECTORS_SUFFIX)
        )
        try:
            digests = json.loads(digest_path.read_bytes())
        except FileNotFoundError:
            raise BadShard(digest_path, "missing: the shard cannot be checked") from None
        except ValueError as error:
            raise BadShard(digest_path, f"not JSON: {error}") from None
        if not (
            isinstance(digests, dict)
            and digests.get("algorithm") == DIGEST_ALGORITHM
            and all(isinstance(digests.get(f), str) for f in ("keys", "vectors"))
        ):
            raise BadShard(digest_path, f"not a {DIGEST_ALGORITHM} digest of keys and vectors")
        try:
            keys_bytes = keys_path.read_bytes()
        except OSError as error:
            raise BadShard(keys_path, f"unreadable: {error}") from None
        if hashlib.new(DIGEST_ALGORITHM, keys_bytes).hexdigest() != digests["keys"]:
            raise BadShard(keys_path, f"its bytes do not match their digest in {digest_path.name}")
        try:
            keys = np.lib.format.read_array(io.BytesIO(keys_bytes), allow_pickle=False)
        except ValueError as error:
            raise BadShard(keys_path, f"not a .npy file: {error}") from None
        if keys.dtype != np.dtype(f"V{KEY_BYTES}") or keys.ndim != 1:
            raise BadShard(keys_path, f"holds {keys.dtype} of shape {keys.shape}, not {KEY_BYTES}-byte keys")
        try:
            vectors = np.lib.format.open_memmap(vectors_path, mode="r")
        except FileNotFoundError:
            raise BadShard(vectors_path, "missing") from None
        except (OSError, ValueError) as error:  # a damaged header, or fewer bytes than the header says
            raise BadShard(vectors_path, f"not a readable .npy file: {error}") from None
        size = vectors_path.stat().st_size
        if size != vectors.offset + vectors.nbytes:
            raise BadShard(vectors_path, f"{size} bytes, where its header says {vectors.offset + vectors.nbytes}")
        if vectors.dtype != np.float32 or vectors.ndim != 2:
            raise BadShard(vectors_path, f"holds {vectors.dtype} of shape {vectors.shape}, not float32 rows")
        if len(vectors) != len(keys):
            raise BadShard(vectors_path, f"{len(vectors)} vectors for the {len(keys)} keys of {keys_path.name}")
        dimension = self._dimension()
        if dimension is not None and vectors.shape[1] != dimension:
            raise BadShard(vectors_path, f"vectors of dimension {vectors.shape[1]}, the store's are {dimension}")
        return _Shard(name, keys, vectors, digests["vectors"])

    def _reindex(self) -> None:
        sizes = [len(s.keys) for s in self._shards]
        self._offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        live = [i for i, s in enumerate(self._shards) if s.vectors is not None]
        if not live:
            self._sorted_keys = np.empty(0, dtype=f"V{KEY_BYTES}")
            self._sorted_rows = np.empty(0, dtype=np.int64)
            return
        all_keys = np.concatenate([self._shards[i].keys for i in live])
        rows = np.concatenate([np.arange(self._offsets[i], self._offsets[i + 1]) for i in live])
        # Stable: among duplicate keys the oldest shard's row sorts first and is the one found.
        order = np.argsort(all_keys, kind="stable")
        self._sorted_keys, self._sorted_rows = all_keys[order], rows[order]

    def locate(self, keys: np.ndarray) -> np.ndarray:
        """Store position of each key, -1 where it is absent. Every position found is in a shard whose
        vectors match their digest: a shard first found here is hashed, and quarantined if it does not."""
        self._refresh()
        keys = np.asarray(keys, dtype=f"V{KEY_BYTES}")
        while True:
            positions = self._search(keys)
            found = positions[positions >= 0]
            unverified = [i for i in np.unique(self._shards_of(found)) if not self._shards[i].verified]
            if not unverified:
                return positions
            # Hashing releases the GIL: the shards are read and hashed side by side.
            with ThreadPoolExecutor(max_workers=min(len(unverified), os.cpu_count() or 1)) as pool:
                problems = list(pool.map(self._vectors_problem, unverified))
            for shard, problem in zip(unverified, problems, strict=True):
                if problem is None:
                    self._shards[shard].verified = True
                else:
                    self._quarantine(shard, problem)

    def _search(self, keys: np.ndarray) -> np.ndarray:
        if not len(self._sorted_keys):
            return np.full(len(keys), -1, dtype=np.int64)
        at = np.searchsorted(self._sorted_keys, keys)
        at_clipped = np.minimum(at, len(self._sorted_keys) - 1)
        found = (at < len(self._sorted_keys)) & (self._sorted_keys[at_clipped] == keys)
        return np.where(found, self._sorted_rows[at_clipped], -1)

    def _vectors_problem(self, shard: int) -> BadShard | None:
        """What is wrong with the vectors file of ``shard`` (its bytes against their digest), or None."""
        name = self._shards[shard].name
        path = self._path(name, VECTORS_SUFFIX)
        try:
            with path.open("rb") as handle:
                digest = hashlib.file_digest(handle, DIGEST_ALGORITHM).hexdigest()
        except OSError as error:
            return BadShard(path, f"unreadable: {error}")
        if digest != self._shards[shard].vectors_digest:
            return BadShard(path, f"its bytes do not match their digest in {name}{DIGEST_SUFFIX}")
        return None

    def _shards_of(self, positions: np.ndarray) -> np.ndarray:
        """The shard number of each store position."""
        return np.searchsorted(self._offsets, np.asarray(positions, dtype=np.int64), side="right") - 1

    def _quarantine(self, shard: int, bad: BadShard) -> None:
        """Stop reading ``shard`` (a shard number), and move its files to the quarantine folder."""
        self._shards[shard].vectors = None
        self._move_to_quarantine(self._shards[shard].name, bad)
        self._reindex()

    def _move_to_quarantine(self, name: str, bad: BadShard) -> None:
        folder = self.directory / QUARANTINE_FOLDER
        folder.mkdir(exist_ok=True)
        self.quarantined.append({"shard": name, "file": str(bad.path), "problem": bad.problem})
        for suffix in SHARD_SUFFIXES:
            try:
                os.replace(self._path(name, suffix), folder / f"{name}{suffix}")
            except FileNotFoundError:  # a file the writer never made, or that another process moved already
                pass
        logger.warning(
            "embedding cache: %s: %s; shard %s moved to %s, its texts are encoded again when needed",
            bad.path,
            bad.problem,
            name,
            folder,
        )

    def check_samples(
        self,
        texts: Sequence[str],
        keys: np.ndarray,
        *,
        encode: Callable[[Sequence[str], str], np.ndarray],
        precision: str,
        seed: int,
        chunk_size: int,
        per_shard: int = SAMPLE_TEXTS_PER_SHARD,
        min_cosine: float = MIN_SAMPLE_COSINE,
    ) -> None:
        """Re-encode up to ``per_shard`` of ``texts`` (distinct, aligned with ``keys``) from each shard that
        holds any and that another store object wrote, drawn by ``seed``, and quarantine each shard where
        one comes back as another vector (cosine below ``min_cosine``): a shard whose digest holds but whose
        vectors are not this spec's, such as another model's. ``encode(texts, precision)`` gives float32
        unit rows (`encoding_on`); the sample is read ``chunk_size`` rows at a time."""
        positions = self.locate(keys)
        held = np.flatnonzero(positions >= 0)
        written_here = np.array([self._shards[i].written_here for i in self._shards_of(positions[held])], dtype=bool)
        held = held[~written_here]
        if not len(held):
            return
        held = np.random.default_rng(seed).permutation(held)
        shards = self._shards_of(positions[held])
        by_shard = np.argsort(shards, kind="stable")
        grouped = shards[by_shard]
        rank_in_shard = np.arange(len(grouped)) - np.searchsorted(grouped, grouped)
        sample = held[by_shard[rank_in_shard < per_shard]]
        cosines = np.concatenate(
            [
                np.einsum("ij,ij->i", self.gather(positions[part]), encode([texts[i] for i in part], precision))
                for part in np.array_split(sample, -(-len(sample) // chunk_size))
            ]
        )
        sample_shards = self._shards_of(positions[sample])
        for shard in np.unique(sample_shards[~(cosines >= min_cosine)]):  # NaN (garbage stored) counts as apart
            found = cosines[sample_shards == shard]
            problem = (
                f"not {self.spec.model} {self.spec.precision} embeddings: {len(found)} of its texts re-encode to "
                f"cosines {np.round(found, 4).tolist()} with their stored vectors"
            )
            self._quarantine(int(shard), BadShard(self._path(self._shards[shard].name, VECTORS_SUFFIX), problem))

    def gather(self, positions: np.ndarray) -> np.ndarray:
        """``(len(positions), d)`` float32 rows, in the order asked for."""
        self._refresh()
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) and (positions.min() < 0 or positions.max() >= self._offsets[-1]):
            raise IndexError("position outside the store (a key that locate did not find?)")
        out = np.empty((len(positions), self.dimension or 0), dtype=np.float32)
        shard_of = self._shards_of(positions)
        for shard in np.unique(shard_of):
            vectors = self._shards[shard].vectors
            if vectors is None:
                raise IndexError(f"position in shard {self._shards[shard].name}, quarantined since it was located")
            rows = np.flatnonzero(shard_of == shard)
            out[rows] = vectors[positions[rows] - self._offsets[shard]]
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
        paths = {suffix: self._path(name, suffix) for suffix in SHARD_SUFFIXES}
        staged_vectors, vectors_digest = _staged_array(paths[VECTORS_SUFFIX], vectors)
        staged_keys, keys_digest = _staged_array(paths[KEYS_SUFFIX], keys)
        digests = {"algorithm": DIGEST_ALGORITHM, "keys": keys_digest, "vectors": vectors_digest}
        staged_digest = _staged(paths[DIGEST_SUFFIX], lambda handle: handle.write(json.dumps(digests).encode()))
        os.replace(staged_vectors, paths[VECTORS_SUFFIX])
        os.replace(staged_digest, paths[DIGEST_SUFFIX])
        # The vectors and digest are on disk under their names before the keys publish them.
        fsync_path(self.directory)
        self._written.add(name)
        os.replace(staged_keys, paths[KEYS_SUFFIX])
        fsync_path(self.directory)


def _staged(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """A temporary file beside ``path`` holding what ``write`` writes to it, flushed to disk, to be renamed
    into place."""
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    with staging.open("wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    return staging


@dataclass
class _DigestingWriter:
    """A binary file that also feeds what is written to it to ``digest``."""

    handle: BinaryIO
    digest: hashlib._Hash

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.handle.write(data)


def _staged_array(path: Path, array: np.ndarray) -> tuple[Path, str]:
    """`_staged` for ``array`` as a .npy file, with the hex digest of that file's bytes."""
    digest = hashlib.new(DIGEST_ALGORITHM)
    staging = _staged(
        path, lambda handle: np.lib.format.write_array(_DigestingWriter(handle, digest), array, allow_pickle=False)
    )
    return staging, digest.hexdigest()


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
    When the store lacks any text, a few of those it holds are re-encoded first (`EmbeddingStore.check_samples`).
    The distinct texts the store lacks are then encoded longest first, a chunk at a time, under one progress
    bar (with ``progress``) over all the distinct texts, which starts at those the store holds (``cached=N``)
    and advances as each chunk is stored. The report (`EmbeddingReport`) says what was cached, encoded and
    checked.
    """
    index, uniques = distinct_texts(texts)
    keys = text_keys(uniques)
    start = time.perf_counter()
    with ExitStack() as stores:
        # The engine is released before the block: reading the store back needs no cluster.
        with ENGINES.get(options.engine).from_options(options, device=device) as engine:
            spec = options.spec(model, engine.encoding_device)
            batch_size = batch_size or default_batch_size(engine.encoding_device, uniques)
            report = EmbeddingReport(
                model=spec.model,
                precision=spec.precision,
                engine=options.engine,
                texts=len(index),
                distinct_texts=len(uniques),
            )
            store = stores.enter_context(_options_store(spec, options))
            opened = [store]
            encoded = 0
            if spec.precision != "fp32" and (store.locate(keys) < 0).any():
                logger.info("checking %s embeddings against fp32 on a sample before embedding", spec.precision)
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
                opened.append(fp32_store)
                sample_keys = text_keys(sample_embeddings.texts)
                fp32_added = put_missing(fp32_store, sample_keys, sample_embeddings.fp32)
                if check.used == spec.precision:
                    encoded = put_missing(store, sample_keys, sample_embeddings.fast)
                else:
                    spec, store, encoded = fp32_store.spec, fp32_store, fp32_added
                    report.precision = spec.precision
            if (store.locate(keys) < 0).any():
                # The encoder is loaded for the missing texts anyway: a few stored ones cost little more.
                store.check_samples(
                    uniques,
                    keys,
                    encode=encoding_on(engine, spec.model, chunk_size=options.embed_chunk_size, batch_size=batch_size),
                    precision=spec.precision,
                    seed=seed,
                    chunk_size=options.embed_chunk_size,
                )
            # After the check, which may set shards aside: one bar over every distinct text, started by those the
            # store holds (cached, or the precision check's sample) and advanced by each chunk stored.
            held = int((store.locate(keys) >= 0).sum())
            with stage_bar(
                f"embedding ({spec.model}, {spec.precision})",
                len(uniques),
                unit=" texts",
                enabled=progress,
                done=held,
                cached=held - encoded,
            ) as bar:
                encoded += fill_store(
                    store,
                    uniques,
                    keys,
                    spec,
                    engine,
                    chunk_size=options.embed_chunk_size,
                    batch_size=batch_size,
                    advance=bar.update,
                )
        report.encode_seconds = round(time.perf_counter() - start, 3)
        report.encoded_texts, report.cached_texts = encoded, len(uniques) - encoded
        report.cache_dir = str(store.directory) if options.embedding_cache else None
        positions = store.locate(keys)[index]
        report.quarantined_shards = [entry for opened_store in opened for entry in opened_store.quarantined]
        yield StoredEmbeddings(store, positions, report)


def _options_store(spec: EmbeddingSpec, options: EmbeddingOptions):
    return open_store(spec, cache=options.embedding_cache, cache_dir=options.embedding_cache_dir)


def embedded_texts(
    texts: list[str], *, model: str, options: EmbeddingOptions, device: str, batch_size: int | None, progress: bool
) -> tuple[np.ndarray, dict]:
    """``model``'s embeddings of ``texts``, ``(len(texts), d)`` unit rows in memory, through the embedding
    cache, and the stage's report (as a dict). For commands that embed texts of their own (instructions,
    evaluation prompts): a lower precision is checked on the cosines of random pairs of the texts."""
    check_pairs = np.stack([np.arange(len(texts)), np.random.default_rng(0).permutation(len(texts))], axis=1)
    with stored_embeddings(
        texts,
        check_pairs,
        model=model,
        options=options,
        device=device,
        batch_size=batch_size,
        seed=0,
        progress=progress,
    ) as stored:
        return stored.store.gather(stored.positions), stored.report.to_dict()
