"""The engine protocol: where the embedding stage's encoding runs. A new engine is one new module."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np

from admap.encoders import EmbeddingSpec
from admap.registry import Registry


class Engine(Protocol):
    """Encodes texts with one embedding spec, yielding chunks as they finish.

    An engine is used as a context manager: ``with engine:`` acquires what its encoding needs (the
    ``ray`` engine connects to its cluster, or starts a local one, and plans its actors) and its exit
    releases what the engine acquired. ``encoding_device`` and ``embed`` are used inside the block.

    ``encoding_device`` is the device the encoders run on (``"cpu"``, ``"cuda"``, ...), which is not
    this process's on a Ray cluster: the precision is resolved, and fp16 refused, against it.

    ``embed`` yields ``(positions, vectors)``: positions into ``texts`` and their float32,
    L2-normalised embeddings, in any order, every position exactly once. Texts come longest
    first, so that chunks of ``chunk_size`` consecutive texts pad little; the caller writes each
    chunk to disk before the next, which bounds memory. An engine draws no progress bar: the caller
    draws one over the whole stage and advances it per chunk (`admap.progress`).
    """

    name: str

    @classmethod
    def from_options(cls, options, *, device: str) -> Engine: ...

    def __enter__(self) -> Engine: ...

    def __exit__(self, *exc_info) -> None: ...

    @property
    def encoding_device(self) -> str: ...

    def embed(
        self, texts: Sequence[str], spec: EmbeddingSpec, *, chunk_size: int, batch_size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...


ENGINES: Registry[type] = Registry("engine")
