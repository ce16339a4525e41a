"""Stage 2, embed: texts to float32, L2-normalised vectors, each distinct text encoded once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd

from admap.models import pick_device, resolve_embedding_model

logger = logging.getLogger(__name__)


class Encoder(Protocol):
    """The sentence-transformers ``encode`` contract."""

    def encode(self, sentences: list[str], **kwargs) -> np.ndarray: ...


def load_encoder(model: str, *, device: str = "auto"):
    """A `SentenceTransformer`; the packaged all-MiniLM-L6-v2 is used for its name when installed."""
    from sentence_transformers import SentenceTransformer

    device = pick_device(device)
    path = resolve_embedding_model(model)
    logger.info("loading embedding model %s on %s", path, device)
    return SentenceTransformer(path, device=device)


def encode_texts(encoder: Encoder, texts: Sequence[str], *, batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """``(len(texts), d)`` float32 rows of unit length."""
    embeddings = encoder.encode(
        list(texts),
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=progress,
    )
    return np.ascontiguousarray(embeddings, dtype=np.float32)


def encode_unique(
    encoder: Encoder, texts: Sequence[str], *, batch_size: int = 64, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Encode each distinct text once: ``(unique_embeddings (U, d), index (N,))`` with
    ``unique_embeddings[index[i]]`` the embedding of ``texts[i]``."""
    index, uniques = pd.factorize(pd.Series(list(texts), dtype=object), sort=False)
    logger.info("encoding %d distinct texts of %d", len(uniques), len(texts))
    return encode_texts(encoder, list(uniques), batch_size=batch_size, progress=progress), index.astype(np.int64)
