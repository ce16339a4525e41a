"""Embedding encoders: what an embedding depends on, loading a sentence-transformers model in a
from admap.devices import pick_device
from admap.models import DEFAULT_EMBEDDING_MODEL, resolve_embedding_model
precision, and the ``encode`` contract (float32, unit-length rows).

The embedding stage (`admap.embed`) and the engines it runs on (`admap.engines`) both build on this
module, and it on neither of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

import numpy as np

from admap.devices import pick_device
from admap.models import DEFAULT_EMBEDDING_MODEL, resolve_embedding_model

logger = logging.getLogger(__name__)


class Encoder(Protocol):
    """The sentence-transformers ``encode`` contract."""

    def encode(self, sentences: list[str], **kwargs) -> np.ndarray: ...


@dataclass(frozen=True)
class EmbeddingSpec:
    """What an embedding depends on besides its text: the cache is keyed by it."""

    model: str = DEFAULT_EMBEDDING_MODEL
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"

    @property
    def namespace(self) -> str:
        """A folder name per (model, precision): readable prefix, hash for uniqueness."""
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]
        readable = "".join(c if c.isalnum() or c in "-." else "_" for c in self.model.split("/")[-1])
        return f"{readable}-{self.precision}-{digest}"

    def with_precision(self, precision: str) -> EmbeddingSpec:
        return EmbeddingSpec(self.model, precision)


def load_encoder(model: str = DEFAULT_EMBEDDING_MODEL, *, device: str = "auto", precision: str = "fp32"):
    """A `SentenceTransformer` in ``precision``; the packaged all-MiniLM-L6-v2 is used for its name when installed."""
    from sentence_transformers import SentenceTransformer

    device = pick_device(device)
    path = resolve_embedding_model(model)
    logger.info("loading embedding model %s on %s (%s)", path, device, precision)
    encoder = SentenceTransformer(path, device=device)
    return set_precision(encoder, precision)


def set_precision(encoder, precision: str):
    import torch

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise ValueError(f"precision must be one of {tuple(dtypes)}, got {precision!r}")
    return encoder.to(dtypes[precision])


def encode_texts(encoder: Encoder, texts: Sequence[str], *, batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """``(len(texts), d)`` float32 rows of unit length (sentence-transformers sorts each call by
    length, so that a batch holds texts of similar length and pads little)."""
    embeddings = encoder.encode(
        list(texts),
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=progress,
    )
    return np.ascontiguousarray(embeddings, dtype=np.float32)
