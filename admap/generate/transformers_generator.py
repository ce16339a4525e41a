"""Local causal LMs through transformers: any hub id or path, or the packaged SmolLM2 GGUF."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from admap.devices import pick_device, resolve_dtype
from admap.generate.base import GENERATORS, Completion, Messages, ResultCallback
from admap.generate.options import GeneratorOptions
from admap.models import DEFAULT_GENERATOR_MODEL, load_causal_lm
from admap.progress import stage_bar


@GENERATORS.register("transformers")
@dataclass
class TransformersGenerator:
    """Batched generation with a local model; greedy unless ``temperature`` > 0."""

    default_model: ClassVar[str] = DEFAULT_GENERATOR_MODEL

    model: str = DEFAULT_GENERATOR_MODEL
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.1
    batch_size: int = 64
    seed: int = 42
    device: str = "auto"
    dtype: str = "auto"
    progress: bool = True
    name: str = "transformers"

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        self.device = pick_device(self.device)
        self.dtype = resolve_dtype(self.dtype, self.device)
        self._loaded = None

    @classmethod
    def from_options(cls, options: GeneratorOptions, *, device: str = "auto", progress: bool = True):
        sampling = options.sampling()
        if sampling["seed"] is None:
            sampling["seed"] = cls.seed  # sampled batches draw from one torch seed: the generator's own default
        return cls(
            **sampling,
            batch_size=options.batch_size,
            device=device,
            dtype=options.dtype,
            progress=progress,
        )

    @property
    def deterministic(self) -> bool:
        # A sampled reply depends on what else shares its batch, so only greedy replies are reproducible.
        return self.temperature == 0

    def identity(self) -> dict:
        return {
            "generator": self.name,
            "model": self.model,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "repetition_penalty": self.repetition_penalty,
            "dtype": self.dtype,
        }

    def _load(self):
        if self._loaded is None:
            self._loaded = load_causal_lm(self.model, self.device, self.dtype)
        return self._loaded

    def generate(
        self, conversations: Sequence[Messages], *, on_result: ResultCallback | None = None
    ) -> list[Completion]:
        import torch

        lm, tokenizer = self._load()
        torch.manual_seed(self.seed)
        # Longest prompts first: batches of similar length waste less padding.
        order = sorted(range(len(conversations)), key=lambda i: -sum(len(m["content"]) for m in conversations[i]))
        results: list[Completion] = [Completion(text=None)] * len(conversations)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        with stage_bar(f"generating ({self.model})", len(conversations), unit=" replies", enabled=self.progress) as bar:
            for batch in batches:
                for i, completion in zip(batch, self._generate_batch(lm, tokenizer, [conversations[i] for i in batch])):
                    results[i] = completion
                    if on_result is not None:
                        on_result(i, completion)
                bar.update(len(batch))
        return results

    def _generate_batch(self, lm, tokenizer, conversations: Sequence[Messages]) -> list[Completion]:
        import torch

        sampling = {"do_sample": False}
        if self.temperature > 0:
            sampling = {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}
        prompts = [
            tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
            for conversation in conversations
        ]
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(lm.device)
        with torch.inference_mode():
            output = lm.generate(
                **encoded,
                max_new_tokens=self.max_new_tokens,
                repetition_penalty=self.repetition_penalty,
                pad_token_id=tokenizer.pad_token_id,
                **sampling,
            )
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        reply_lengths = (new_tokens != tokenizer.pad_token_id).sum(dim=1).tolist()
        completions = []
        for text, tokens_in, tokens_out in zip(texts, prompt_lengths, reply_lengths, strict=True):
            text = text.strip()
            completions.append(
                Completion(
                    text=text or None,
                    tokens_in=int(tokens_in),
                    tokens_out=int(tokens_out),
                    error=None if text else "empty reply",
                )
            )
        return completions
