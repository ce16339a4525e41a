"""Reading responses with a causal LM: each response tokenized as the assistant's reply in its own
conversation, cut from the left to fit, and batched with right padding so that every token keeps the
position it has in an unbatched run. Shared by the scorers that read responses with an LM (``learned``'s
hidden-state features, ``sft_probability``) and, for the rendering, the reward model's."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def plain_rendering(messages: list[dict]) -> str:
    """``Role: content`` lines, for a tokenizer without a chat template."""
    return "\n".join(f"{str(m.get('role', 'user')).capitalize()}: {m.get('content', '')}" for m in messages)


def response_window(prompt_ids: list[int], response_ids: list[int], max_length: int) -> tuple[list[int], int]:
    """``(ids, n)``: the response's first ``max_length`` tokens after as much of the prompt's end as fits,
    and ``n``, how many of the ids (the last ones) are the response's."""
    response_ids = response_ids[:max_length]
    room = max_length - len(response_ids)
    return (prompt_ids[-room:] if room > 0 else []) + response_ids, len(response_ids)


def prompt_text(messages: list[dict], tokenizer) -> tuple[str, bool]:
    """The conversation up to the assistant's turn, and whether the tokenizer should add special tokens."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), False
    return plain_rendering(messages) + "\nAssistant: ", True


def encode_in_context(
    conversations: Sequence[list[dict]], texts: Sequence[str], tokenizer, max_length: int
) -> list[tuple[list[int], int]]:
    """Per response, `response_window` of its conversation's prompt and its own tokens."""
    encoded = []
    for messages, text in zip(conversations, texts):
        prompt, add_special = prompt_text(messages, tokenizer)
        prompt_ids = tokenizer(prompt, add_special_tokens=add_special)["input_ids"]
        encoded.append(response_window(prompt_ids, tokenizer(text, add_special_tokens=False)["input_ids"], max_length))
    return encoded


def padded_batches(
    encoded: list[tuple[list[int], int]], batch_size: int, pad_id: int
) -> Iterator[tuple[list[int], ...]]:
    """``(rows, ids, mask)`` per batch: which encoded sequences, and their right-padded ids and attention
    mask as tensors. Longest first: batches of similar length waste little padding, and a batch too big
    fails at once."""
    import torch

    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(encoded[i][0]) for i in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, i in enumerate(rows):
            tokens = encoded[i][0]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, : len(tokens)] = 1
        yield rows, ids, mask


def response_token_log_probs(lm, batches, encoded: list[tuple[list[int], int]]) -> list[np.ndarray]:
    """Per encoded sequence, the log-probabilities the LM gives its last ``n`` (response) tokens; an empty
    array where there are none. ``batches`` are `padded_batches` of ``encoded``."""
    import torch

    out: list[np.ndarray] = [np.empty(0, dtype=np.float64)] * len(encoded)
    for rows, ids, mask in batches:
        with torch.inference_mode():
            logits = lm(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device)).logits[:, :-1]
            # Token t is predicted from position t - 1: its logit less the position's log-sum-exp, without a
            # second (batch, length, vocabulary) tensor of log-probabilities.
            chosen = logits.gather(-1, ids[:, 1:, None].to(lm.device))[..., 0].float()
            token_log_probs = (chosen - torch.logsumexp(logits.float(), dim=-1)).cpu().numpy().astype(np.float64)
        for row, i in enumerate(rows):
            tokens, n_response = encoded[i]
            # The first token has no prediction: a response that fills the whole window loses it.
            scored = min(n_response, len(tokens) - 1)
            if scored > 0:
                out[i] = token_log_probs[row, len(tokens) - 1 - scored : len(tokens) - 1]
    return out
