"""A randomly initialised Llama-architecture policy, with a tokenizer trained on the texts it will see.

For checks of the training path on machines that reach no model hub, and for sizing: which weights
an optimizer step changes, what the margins recorder writes and how many bytes a training step holds
depend on the architecture, the dtypes and the launch, not on what the weights know. The tokenizer
is a byte-level BPE with a ChatML template (SmolLM2's), so TRL's conversational pairs go through the
same templating as with a real instruct model.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = 2048):
    """A byte-level BPE tokenizer fitted to ``texts`` (seconds for a few thousand texts)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def llama_config(
    *,
    vocab_size: int,
    hidden_size: int = 64,
    n_layers: int = 2,
    n_heads: int = 4,
    n_kv_heads: int | None = None,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 2048,
    tie_word_embeddings: bool = True,
):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads or n_heads,
        intermediate_size=intermediate_size or 4 * hidden_size,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
    )


def write_random_policy(path: str | Path, texts: Iterable[str], *, seed: int = 0, **shape) -> Path:
    """A random Llama (``shape``: `llama_config`'s fields but the vocabulary) and its tokenizer,
    saved in fp32 as a checkpoint any ``from_pretrained`` (and so TRL) loads from ``path``."""
    import torch
    from transformers import LlamaForCausalLM

    path = Path(path)
    tokenizer = train_tokenizer(texts)
    config = llama_config(vocab_size=len(tokenizer), **shape)
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
