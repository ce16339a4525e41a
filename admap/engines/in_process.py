"""The default engine: encode in this process, one chunk at a time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from admap.devices import pick_device
from admap.encoders import EmbeddingSpec, encode_texts, load_encoder, set_precision
from admap.engines.base import ENGINES


@ENGINES.register("local")
@dataclass
class LocalEngine:
    """Encode in this process on ``device``. Within one ``with`` block the encoder is loaded once: the
    precision check's fp32 pass loads it, and the lower precision that follows casts it down."""

    device: str = "auto"
    name: str = "local"
    _loaded: tuple[EmbeddingSpec, object] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_options(cls, options, *, device: str) -> LocalEngine:
        return cls(device=device)

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc_info) -> None:
        self._loaded = None

    @property
    def encoding_device(self) -> str:
        return pick_device(self.device)

    def embed(
        self, texts: Sequence[str], spec: EmbeddingSpec, *, chunk_size: int, batch_size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        encoder = self._encoder(spec)
        for start in range(0, len(texts), chunk_size):
            stop = min(start + chunk_size, len(texts))
            yield (
                np.arange(start, stop),
                # A bar per call would restart with every chunk: the stage's one bar counts them.
                encode_texts(encoder, texts[start:stop], batch_size=batch_size, progress=False),
            )

    def _encoder(self, spec: EmbeddingSpec):
        loaded_spec, encoder = self._loaded or (None, None)
        if loaded_spec == spec:
            return encoder
        # fp32 weights cast down equal a fresh load in the lower precision; a cast back up would keep the
        # lower precision's rounding, so anything else loads again.
        if loaded_spec == spec.with_precision("fp32"):
            encoder = set_precision(encoder, spec.precision)
        else:
            encoder = load_encoder(spec.model, device=self.device, precision=spec.precision)
        self._loaded = spec, encoder
        return encoder
