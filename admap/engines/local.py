"""The default engine: encode in this process, one chunk at a time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from admap.embed import EmbeddingSpec, encode_texts, load_encoder
from admap.engines.base import ENGINES


@ENGINES.register("local")
@dataclass
class LocalEngine:
    device: str = "auto"
    name: str = "local"

    @classmethod
    def from_options(cls, options, *, device: str) -> LocalEngine:
        return cls(device=device)

    def embed(
        self, texts: Sequence[str], spec: EmbeddingSpec, *, chunk_size: int, batch_size: int, progress: bool
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        encoder = load_encoder(spec.model, device=self.device, precision=spec.precision)
        for start in range(0, len(texts), chunk_size):
            stop = min(start + chunk_size, len(texts))
            yield (
                np.arange(start, stop),
                encode_texts(encoder, texts[start:stop], batch_size=batch_size, progress=progress),
            )
