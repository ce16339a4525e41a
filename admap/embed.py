"""Stage 2, embed: texts to float32, L2-normalised vectors, each distinct text encoded once.

Embeddings go to an `EmbeddingStore` on disk in chunks, keyed by (model, precision, text hash),
so that the stage's memory does not grow with the dataset and a rerun, a new region split or a
new scorer on the same texts encodes nothing again. The encoding itself runs on an engine from
`admap.engines` (this process, or Ray Data across a cluster), with an encoder from `admap.encoders`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from admap.config import option
from admap.devices import pick_device
from admap.encoders import EmbeddingSpec, Encoder, encode_texts
from admap.engines import ENGINES

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
KEY_BYTES = 16
MIN_AGREEMENT_SAMPLE = 100
# The CPU's default batch: about 32k tokens of English text, clamped to [MIN_CPU_BATCH, MAX_CPU_BATCH] texts.
CPU_BATCH_CHARACTERS = 131_072
MIN_CPU_BATCH, MAX_CPU_BATCH = 16, 256


@dataclass
class EmbeddingOptions:
    """How texts are embedded: precision, chunking, the on-disk cache and the engine."""

    embed_precision: Literal["auto", "fp32", "bf16", "fp16"] = option(
        "auto",
        "embedding precision: auto = fp16 on CUDA, fp32 on CPU; bf16 uses AMX on recent Xeons. Anything but fp32 "
        "is first checked against fp32 scores on a sample (--min-precision-agreement)",
    )
    min_precision_agreement: float = option(
        0.999, "Spearman correlation with fp32 scores that a lower precision needs on the sample, else fp32 is used"
    )
    agreement_sample: int = option(
        512, "pairs of texts in the precision check at most: 5% of them, but at least 100 (all of a smaller set)"
    )
    embed_chunk_size: int = option(
        8192, "distinct texts embedded and written to disk at a time: the embedding stage's memory bound"
    )
    embedding_cache: bool = option(
        True, "keep embeddings on disk keyed by model, precision and text, and reuse them across runs"
    )
    embedding_cache_dir: str | None = option(None, "where (default: $ADMAP_CACHE/embeddings, ~/.cache/admap)")
    engine: str = option("local", "where texts are encoded: local (this process) or ray (Ray Data on a cluster)")
    ray_address: str | None = option(None, "engine ray: cluster address (default: $RAY_ADDRESS, else a local cluster)")
    ray_actors: int | None = option(None, "engine ray: encoder actors (default: one per GPU, else one per 2 CPUs)")

    def __post_init__(self) -> None:
        if self.embed_precision not in PRECISIONS:
            raise ValueError(f"embed_precision must be one of {PRECISIONS}, got {self.embed_precision!r}")
        if not 0 <= self.min_precision_agreement <= 1:
            raise ValueError(f"min_precision_agreement must be within [0, 1], got {self.min_precision_agreement}")
        if self.agreement_sample < MIN_AGREEMENT_SAMPLE:
            raise ValueError(f"agreement_sample must be >= {MIN_AGREEMENT_SAMPLE}, got {self.agreement_sample}")
        if self.embed_chunk_size < 1:
            raise ValueError(f"embed_chunk_size must be >= 1, got {self.embed_chunk_size}")
        if self.ray_actors is not None and self.ray_actors < 1:
            raise ValueError(f"ray_actors must be >= 1, got {self.ray_actors}")
        ENGINES.get(self.engine)  # an unknown engine fails here, with suggestions

    def spec(self, model: str, device: str) -> EmbeddingSpec:
        """What ``model``'s embeddings depend on under these options when encoded on ``device`` (an engine's
        `encoding_device`, where the encoders run): the cache's key."""
        return EmbeddingSpec(model, resolve_precision(self.embed_precision, device))

    def agreement_sample_size(self, pairs: int) -> int:
        """Pairs in the precision check, of ``pairs`` candidates: its fp32 pass is the check's only cost, so
        it stays a small share of a large run, while 100 pairs still expose a precision that reorders scores."""
        return min(pairs, max(MIN_AGREEMENT_SAMPLE, min(self.agreement_sample, pairs // 20)))


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` is fp16 on CUDA (the tensor cores' format) and fp32 elsewhere; fp16 needs CUDA. ``device``
    is where the texts are encoded (an engine's `encoding_device`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = pick_device(device)
    on_cuda = device.startswith("cuda")
    if precision == "auto":
        return "fp16" if on_cuda else "fp32"
    if precision == "fp16" and not on_cuda:
        raise ValueError(
            f"fp16 embeddings need a CUDA device, and the texts are encoded on {device!r}: "
            "use bf16 (AMX on recent Xeons) or fp32 there"
        )
    return precision


def default_batch_size(device: str, texts: Sequence[str] = ()) -> int:
    """Texts per batch: 128 on CUDA; on the CPU, as many of ``texts``' median length as make about
    `CPU_BATCH_CHARACTERS`, within [16, 256] (16 without texts).

    The stage sorts texts by length, so a batch pads little however large it is, while each batch costs a
    fixed overhead (every operator's thread synchronisation, which grows when other processes share the
    cores): on 2 shared cores, batches of about 100 UltraFeedback-length texts (~250 tokens) encoded
    1.5-2x faster than batches of 16, and batches of 256 short ones (~64 tokens) faster than 16 as well."""
    if pick_device(device).startswith("cuda"):
        return 128
    if not len(texts):
        return MIN_CPU_BATCH
    median = max(float(np.median([len(t) for t in texts])), 1.0)
    return int(np.clip(CPU_BATCH_CHARACTERS // median, MIN_CPU_BATCH, MAX_CPU_BATCH))


def encode_unique(
    encoder: Encoder, texts: Sequence[str], *, batch_size: int = 64, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Encode each distinct text once: ``(unique_embeddings (U, d), index (N,))`` with
    ``unique_embeddings[index[i]]`` the embedding of ``texts[i]``."""
    index, uniques = distinct_texts(texts)
    logger.info("encoding %d distinct texts of %d", len(uniques), len(texts))
    return encode_texts(encoder, uniques, batch_size=batch_size, progress=progress), index


def distinct_texts(texts: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """``(index (N,), uniques)`` with ``uniques[index[i]] == texts[i]``, uniques in first-seen order."""
    index, uniques = pd.factorize(pd.Series(list(texts), dtype=object), sort=False)
    return index.astype(np.int64), list(uniques)


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """A 16-byte BLAKE2b digest per text (``V16``): the cache key within a spec's namespace."""
    digests = b"".join(
        hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=KEY_BYTES).digest() for text in texts
    )
    return np.frombuffer(digests, dtype=f"V{KEY_BYTES}").copy()


def longest_first(texts: Sequence[str]) -> np.ndarray:
    """Positions of ``texts`` from longest to shortest (characters), so that consecutive chunks hold
    texts of similar length: each batch pads little and chunk sizes predict memory."""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    return np.argsort(-lengths, kind="stable")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


@dataclass
class PrecisionCheck:
    """Scores of a sample of (response, proxy) pairs in fp32 and in the requested precision, and what
    the check cost: its fp32 pass is the one part of a lower-precision run that runs at fp32 speed."""

    requested: str
    used: str
    pairs: int
    spearman: float
    max_abs_difference: float
    min_agreement: float
    texts: int = 0
    # The fp32 pass loads the model too: on the local engine it is then cast down for the run.
    fp32_seconds: float = 0.0
    requested_seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SampleEmbeddings:
    """The check's distinct texts and their embeddings in both precisions, kept for the stores."""

    texts: list[str]
    fp32: np.ndarray
    fast: np.ndarray


def encoding_on(engine, model: str, *, chunk_size: int, batch_size: int) -> Callable[[Sequence[str], str], np.ndarray]:
    """``encode(texts, precision)``: ``(len(texts), d)`` float32 unit rows, ``model``'s embeddings of
    ``texts`` in ``precision`` and in their order, encoded on ``engine`` (inside its ``with`` block).
    For a sample held whole, such as the precision check's."""

    def encode(texts: Sequence[str], precision: str) -> np.ndarray:
        chunks = list(
            engine.embed(texts, EmbeddingSpec(model, precision), chunk_size=chunk_size, batch_size=batch_size)
        )
        positions = np.concatenate([p for p, _ in chunks])
        vectors = np.concatenate([v for _, v in chunks])
        ordered = np.empty_like(vectors)
        ordered[positions] = vectors
        return ordered

    return encode


def check_precision(
    spec: EmbeddingSpec,
    left: Sequence[str],
    right: Sequence[str],
    *,
    encode: Callable[[Sequence[str], str], np.ndarray],
    min_agreement: float,
) -> tuple[PrecisionCheck, SampleEmbeddings]:
    """Score the sample pairs (cosine of ``left[i]`` and ``right[i]``) in fp32 and in ``spec.precision``;
    ``used`` is the requested precision when the two rankings agree to ``min_agreement`` (Spearman),
    else fp32.

    ``encode(texts, precision)`` returns float32 unit rows in the order of ``texts``; it encodes where
    the run does (`encoding_on` its engine), so that the check measures the precision the run would
    use. fp32 goes first: the local engine then casts the model it loaded down instead of loading it
    again.
    """
    if not len(left):
        raise ValueError(
            f"no pairs of texts to check {spec.precision} embeddings against fp32 on: embed in fp32 instead"
        )
    index, texts = distinct_texts([*left, *right])
    start = time.perf_counter()
    fp32 = encode(texts, "fp32")
    fp32_done = time.perf_counter()
    fast = encode(texts, spec.precision)
    fast_done = time.perf_counter()

    def cosines(embeddings: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", embeddings[index[: len(left)]], embeddings[index[len(left) :]])

    reference, approximate = cosines(fp32), cosines(fast)
    agreement = spearman(reference, approximate)
    used = spec.precision if agreement >= min_agreement else "fp32"
    if used != spec.precision:
        logger.warning(
            "%s scores agree with fp32 at Spearman %.5f < %.5f on %d pairs: embedding in fp32 instead",
            spec.precision,
            agreement,
            min_agreement,
            len(left),
        )
    check = PrecisionCheck(
        requested=spec.precision,
        used=used,
        pairs=len(left),
        spearman=agreement,
        max_abs_difference=float(np.max(np.abs(reference - approximate))),
        min_agreement=min_agreement,
        texts=len(texts),
        fp32_seconds=round(fp32_done - start, 3),
        requested_seconds=round(fast_done - fp32_done, 3),
    )
    return check, SampleEmbeddings(texts, fp32, fast)


@dataclass
class EmbeddingReport:
    """What the embedding stage did, for ``summary.json``."""

    model: str
    precision: str
    engine: str
    texts: int = 0
    distinct_texts: int = 0
    cached_texts: int = 0
    encoded_texts: int = 0
    encode_seconds: float = 0.0
    cache_dir: str | None = None
    precision_check: dict | None = None
    # Damaged cache shards set aside (and their texts encoded again): shard, file, what was wrong.
    quarantined_shards: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def put_missing(store, keys: np.ndarray, vectors: np.ndarray) -> int:
    """Add the rows whose keys ``store`` lacks; returns how many."""
    missing = store.locate(keys) < 0
    store.add(keys[missing], vectors[missing])
    return int(missing.sum())


def fill_store(
    store,
    texts: Sequence[str],
    keys: np.ndarray,
    spec: EmbeddingSpec,
    engine,
    *,
    chunk_size: int,
    batch_size: int,
    advance: Callable[[int], object],
) -> int:
    """Encode the texts whose keys ``store`` lacks, longest first, chunk by chunk into the store;
    returns how many were encoded. ``texts`` and ``keys`` are distinct and aligned. ``advance(n)`` is
    called as each chunk of ``n`` texts is stored (the stage's progress bar)."""
    missing = np.flatnonzero(store.locate(keys) < 0)
    if not len(missing):
        return 0
    order = missing[longest_first([texts[i] for i in missing])]
    logger.info(
        "embedding %d new texts of %d (%s, %s) on engine %s",
        len(order),
        len(keys),
        spec.model,
        spec.precision,
        engine.name,
    )
    start = time.perf_counter()
    for positions, vectors in engine.embed(
        [texts[i] for i in order], spec, chunk_size=chunk_size, batch_size=batch_size
    ):
        store.add(keys[order[positions]], vectors)
        advance(len(positions))
    logger.info("embedded %d texts in %.1f s", len(order), time.perf_counter() - start)
    return len(order)
