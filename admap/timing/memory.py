"""Peak memory of the embedding stage at two dataset sizes: it should not grow with the data.

Each size runs `ReferenceScorer.score` in a fresh process on synthetic instructions (two
responses and a proxy each, short distinct texts), with a temporary embedding store; the peak
resident size is reset just before the call, so ``stage_peak_bytes`` is what the stage adds to
the process (the model, torch's buffers, one chunk of texts and vectors), the data and the
libraries (imported first) excluded.
"""

from __future__ import annotations

import gc

import numpy as np
import pandas as pd

from admap.timing.hardware import in_fresh_process, reset_peak_rss, status_bytes

WORDS = (
    "the model answer question data result value method example reason step first user code list "
    "number text form part time way point case order group level change test plan idea fact"
).split()


def synthetic_texts(n_instructions: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(instructions, responses)``: two 20-word responses and a 20-word proxy per instruction,
    every text distinct (it starts with its own serial number)."""
    rng = np.random.default_rng(seed)
    words = np.asarray(WORDS)[rng.integers(len(WORDS), size=(3 * n_instructions, 20))]
    texts = [f"{i} " + " ".join(row) for i, row in enumerate(words)]
    ids = [f"q{i}" for i in range(n_instructions)]
    instructions = pd.DataFrame({"instruction_id": ids, "proxy_response": texts[:n_instructions]})
    responses = pd.DataFrame(
        {
            "instruction_id": np.repeat(ids, 2),
            "response_id": [f"q{i}-{k}" for i in range(n_instructions) for k in range(2)],
            "response": texts[n_instructions:],
        }
    )
    return instructions, responses


def embedding_stage_memory(
    n_instructions: int, chunk_size: int, model: str, precision: str, device: str, batch_size: int | None
) -> dict:
    """The measurement in this process (call it in a fresh one: `measure_embedding_memory`)."""
    import sentence_transformers  # noqa: F401

    from admap.embed import EmbeddingOptions
    from admap.faiss_build import import_faiss
    from admap.score.reference import ReferenceScorer

    import_faiss()  # libraries are loaded before the measurement: they are not the stage's

    instructions, responses = synthetic_texts(n_instructions)
    scorer = ReferenceScorer(
        embedding_model=model,
        batch_size=batch_size,
        device=device,
        options=EmbeddingOptions(embed_precision=precision, embed_chunk_size=chunk_size, embedding_cache=False),
        progress=False,
    )
    gc.collect()
    before = status_bytes("VmRSS")
    reset_peak_rss()
    scores = scorer.score(instructions, responses)
    return {
        "instructions": n_instructions,
        "texts": int(scorer.embedding_report.distinct_texts),
        "chunk_size": chunk_size,
        "rss_before_bytes": before,
        "stage_peak_bytes": status_bytes("VmHWM") - before,
        "scored": int(np.isfinite(scores).sum()),
    }


def measure_embedding_memory(
    sizes: list[int], *, chunk_size: int, model: str, precision: str, device: str, batch_size: int | None
) -> list[dict]:
    return [
        in_fresh_process(
            "admap.timing.memory",
            "embedding_stage_memory",
            size,
            chunk_size,
            model,
            precision,
            device,
            batch_size,
        )
        for size in sizes
    ]
