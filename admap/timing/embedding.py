"""The embedding stage against its peers on the same texts, model and machine.

Peers: plain sentence-transformers ``encode`` (fp32, its default batch size) of every response
and each instruction's proxy, then the pair cosines; the paper's per-pair loop (its code,
01choco/Dataset-Cartography data-map/src/scores/embedding.py, calls ``model.encode([proxy,
response])`` per completion, so the proxy is re-encoded for every response). admap's path is
`ReferenceScorer.score` end to end: dedup, length-ordered chunks, the precision check, the
on-disk store and the chunked pair scores, model loading included (the peers' model is loaded
before their clocks start).

The paper's loop may be timed on a seeded sample of the instructions: its calls share nothing, so its
time over all responses is the sample's scaled by their encoded tokens (two texts per response), which
keeps a 1,000 × 4 UltraFeedback-shaped run from spending an hour on the slowest peer.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import replace

import numpy as np
import pandas as pd

from admap.embed import EmbeddingOptions, distinct_texts, spearman
from admap.encoders import load_encoder
from admap.score.reference import ReferenceScorer

STAND_IN = "stand-in: last user turn"


def last_user_turn(prompt_messages: str, instruction: str) -> str:
    messages = json.loads(prompt_messages) if isinstance(prompt_messages, str) else []
    users = [m["content"] for m in messages if m.get("role") == "user" and m.get("content")]
    return users[-1] if users else instruction


def with_stand_in_proxies(instructions: pd.DataFrame) -> pd.DataFrame:
    """Instructions without a proxy get their last user turn: the stage's cost depends on text
    counts and lengths, not on where the proxy came from."""
    instructions = instructions.copy()
    missing = instructions["proxy_response"].isna()
    instructions.loc[missing, "proxy_response"] = [
        last_user_turn(m, i)
        for m, i in zip(instructions.loc[missing, "prompt_messages"], instructions.loc[missing, "instruction"])
    ]
    instructions.loc[missing, "proxy_source"] = STAND_IN
    return instructions


def paired_texts(instructions: pd.DataFrame, responses: pd.DataFrame) -> tuple[list[str], list[str]]:
    proxies = responses["instruction_id"].map(instructions.set_index("instruction_id")["proxy_response"])
    return responses["response"].tolist(), proxies.tolist()


def plain_encode_scores(model, instructions: pd.DataFrame, responses: pd.DataFrame) -> np.ndarray:
    """The plain peer: one ``encode`` call over the responses and each instruction's proxy once."""
    proxy_of = dict(zip(instructions["instruction_id"], instructions["proxy_response"]))
    texts = responses["response"].tolist() + list(proxy_of.values())
    embeddings = model.encode(texts, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    row_of_proxy = {instruction_id: len(responses) + i for i, instruction_id in enumerate(proxy_of)}
    proxy_rows = responses["instruction_id"].map(row_of_proxy).to_numpy()
    return np.einsum("ij,ij->i", embeddings[: len(responses)], embeddings[proxy_rows])


def per_pair_loop(model, instructions: pd.DataFrame, responses: pd.DataFrame) -> np.ndarray:
    """The paper's scoring: per response, encode [proxy, response] together, cosine of the two rows
    in float64 from the unnormalised outputs (as sklearn's ``cosine_similarity``)."""
    proxies = dict(zip(instructions["instruction_id"], instructions["proxy_response"]))
    scores = np.empty(len(responses), dtype=np.float64)
    for i, (instruction_id, response) in enumerate(zip(responses["instruction_id"], responses["response"])):
        embeddings = model.encode([proxies[instruction_id], response], show_progress_bar=False)
        a, b = (np.asarray(row, dtype=np.float64) for row in embeddings)
        scores[i] = float((a / np.linalg.norm(a)) @ (b / np.linalg.norm(b)))
    return scores


def admap_scores(
    scorer: ReferenceScorer, instructions: pd.DataFrame, responses: pd.DataFrame, cache_dir: str
) -> tuple[np.ndarray, dict]:
    scorer = replace(scorer, options=replace(scorer.options, embedding_cache=True, embedding_cache_dir=cache_dir))
    scores = scorer.score(instructions, responses)
    return scores, scorer.embedding_report.to_dict()


def clock(function, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def token_counts(model, texts: list[str]) -> np.ndarray:
    """Tokens per text as the encoder sees them (truncated to its ``max_seq_length``)."""
    tokenizer = model.tokenizer
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]]
    return np.minimum(np.asarray(lengths, dtype=np.int64), model.max_seq_length)


def encoder_flops(model, tokens: np.ndarray) -> float:
    """Forward FLOPs of a BERT-style encoder over sequences of ``tokens`` lengths (no padding):
    2 per weight per token in the layers' matmuls, plus attention's two L×L×d products per layer."""
    transformer = model[0].auto_model
    config = transformer.config
    embedding_params = sum(p.numel() for p in transformer.embeddings.parameters())
    layer_params = sum(p.numel() for p in transformer.parameters()) - embedding_params
    hidden, layers = config.hidden_size, config.num_hidden_layers
    tokens = tokens.astype(np.float64)
    return float(2 * layer_params * tokens.sum() + 4 * layers * hidden * (tokens**2).sum())


def bench_embedding(
    instructions: pd.DataFrame,
    responses: pd.DataFrame,
    *,
    model_name: str,
    device: str,
    options: EmbeddingOptions,
    batch_size: int | None,
    repeats: int,
    paper_loop_instructions: int = 0,
    seed: int = 0,
) -> dict:
    """Times, throughputs and agreement of the three paths, plus a cached rerun of admap's.

    Each repeat runs every path once, back to back, and the ratios are the medians of the
    per-repeat ratios: a slow spell of a shared machine then hits both sides of a ratio alike.
    With ``paper_loop_instructions`` (0: all), the loop runs on that many instructions drawn by ``seed``
    and ``paper_loop_seconds`` is its time scaled to every response (`paper_loop_scale`).
    """
    model = load_encoder(model_name, device=device, precision="fp32")
    loop_instructions = instructions
    if 0 < paper_loop_instructions < len(instructions):
        loop_instructions = instructions.sample(n=paper_loop_instructions, random_state=seed)
    loop_rows = np.flatnonzero(responses["instruction_id"].isin(loop_instructions["instruction_id"]))
    loop_responses = responses.iloc[loop_rows]
    response_texts, proxy_texts = paired_texts(instructions, responses)
    peer_texts = response_texts + instructions["proxy_response"].tolist()
    pair_index, distinct = distinct_texts(response_texts + proxy_texts)
    tokens = token_counts(model, peer_texts)
    distinct_tokens = token_counts(model, distinct)
    # The loop encodes a response and its proxy per call: its work is their tokens.
    loop_tokens = distinct_tokens[pair_index].reshape(2, -1).sum(axis=0)
    paper_loop_scale = float(loop_tokens.sum() / loop_tokens[loop_rows].sum())
    scorer = ReferenceScorer(
        embedding_model=model_name, batch_size=batch_size, device=device, options=options, progress=False
    )
    warm = responses.head(4)
    per_pair_loop(model, instructions, warm)
    plain_encode_scores(model, instructions, warm)

    loop_seconds, plain_seconds, admap_seconds, rerun_seconds = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="admap-bench-") as scratch:
        for repeat in range(repeats):
            cache_dir = f"{scratch}/{repeat}"
            seconds, loop = clock(per_pair_loop, model, loop_instructions, loop_responses)
            loop_seconds.append(seconds * paper_loop_scale)
            seconds, plain = clock(plain_encode_scores, model, instructions, responses)
            plain_seconds.append(seconds)
            seconds, (ours, report) = clock(admap_scores, scorer, instructions, responses, cache_dir)
            admap_seconds.append(seconds)
            seconds, (rerun, rerun_report) = clock(admap_scores, scorer, instructions, responses, cache_dir)
            rerun_seconds.append(seconds)
    plain_s, admap_s = float(np.median(plain_seconds)), float(np.median(admap_seconds))

    def median_ratio(numerators: list[float], denominators: list[float]) -> float:
        return float(np.median(np.asarray(numerators) / np.asarray(denominators)))

    return {
        "instructions": len(instructions),
        "responses": len(responses),
        "texts": len(peer_texts),
        "distinct_texts": len(distinct),
        "tokens": int(tokens.sum()),
        "distinct_tokens": int(distinct_tokens.sum()),
        "plain_encode_seconds": plain_seconds,
        "paper_loop_seconds": loop_seconds,
        "admap_seconds": admap_seconds,
        "cached_rerun_seconds": rerun_seconds,
        "plain_texts_per_s": len(peer_texts) / plain_s,
        "plain_tokens_per_s": tokens.sum() / plain_s,
        "admap_texts_per_s": len(peer_texts) / admap_s,
        "admap_tokens_per_s": tokens.sum() / admap_s,
        "speedup_vs_plain_encode": median_ratio(plain_seconds, admap_seconds),
        "speedup_vs_paper_loop": median_ratio(loop_seconds, admap_seconds),
        "cached_rerun_fraction": median_ratio(rerun_seconds, admap_seconds),
        "spearman_vs_fp32": spearman(plain, ours),
        "max_abs_difference_vs_fp32": float(np.max(np.abs(plain - ours))),
        "paper_loop_responses": len(loop_responses),
        "paper_loop_scale": paper_loop_scale,
        "paper_loop_max_abs_difference_vs_fp32": float(np.max(np.abs(plain[loop_rows] - loop))),
        "rerun_identical": bool(np.array_equal(ours, rerun)),
        "plain_flops": encoder_flops(model, tokens),
        "admap_flops": encoder_flops(model, distinct_tokens),
        "admap_report": report,
        "rerun_report": rerun_report,
    }
