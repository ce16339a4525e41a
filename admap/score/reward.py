"""Reward-model alignment score: a sequence-classification reward model (ArmoRM-, Skywork-Reward-style)
scores each (conversation, response) through transformers, with the model's own chat template."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from admap.config import option
from admap.devices import pick_device, resolve_dtype
from admap.progress import stage_bar
from admap.score.base import SCORERS, ScorerDefaults, ScoringContext
from admap.score.causal_lm import plain_rendering

logger = logging.getLogger(__name__)


@dataclass
class RewardOptions:
    model: str | None = option(None, "a sequence-classification reward model (id or path)")
    batch_size: int = option(8, "responses per batch")
    trust_remote_code: bool = option(False, "run the model's own code from its repository (ArmoRM needs it)")


@SCORERS.register("reward")
@dataclass
class RewardScorer(ScorerDefaults):
    """The reward of each response to its conversation, from a sequence-classification reward model.

    The conversation (the instruction's messages plus the response as the assistant turn) is
    rendered with the reward model's chat template and truncated from the left, so that the
    response is always what the model sees. The reward is the model's ``score`` output when it
    has one (ArmoRM's custom head), else the first logit. Batches are padded on the right, which
    keeps every token's position the same as in an unbatched run.
    """

    name: ClassVar[str] = "reward"
    needs_proxy: ClassVar[bool] = False
    Options: ClassVar[type] = RewardOptions

    model: str
    batch_size: int = 8
    device: str = "auto"
    dtype: str = "auto"  # auto: bfloat16 on CUDA, float32 on the CPU
    max_length: int = 2048
    trust_remote_code: bool = False
    progress: bool = True
    _loaded: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("the reward scorer needs a reward model (--reward-model: a hub id or a path)")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")

    @classmethod
    def from_options(cls, options: RewardOptions, context: ScoringContext) -> RewardScorer:
        if not options.model:
            raise ValueError(
                "scorer 'reward' needs a sequence-classification reward model: pass --reward-model "
                "(a hub id such as Skywork/Skywork-Reward-V2-Llama-3.1-8B, or a local path)"
            )
        return cls(
            model=options.model,
            batch_size=options.batch_size,
            device=context.device,
            trust_remote_code=options.trust_remote_code,
            progress=context.progress,
        )

    def label(self) -> str:
        return f"{self.name} ({self.model})"

    def report(self) -> dict:
        return {"model": self.model}

    def load(self):
        """``(model, tokenizer)``, loaded once per scorer."""
        if self._loaded is not None:
            return self._loaded
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        device = pick_device(self.device)
        dtype = resolve_dtype(self.dtype, device)
        logger.info("loading reward model %s on %s (%s)", self.model, device, dtype)
        tokenizer = AutoTokenizer.from_pretrained(self.model, trust_remote_code=self.trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(
            self.model, dtype=getattr(torch, dtype), trust_remote_code=self.trust_remote_code
        )
        model = model.to(device).eval()
        # Keep the response: cut long conversations at their start. Pad on the right so that positions
        # match an unbatched run; the head pools the last token that is not the pad token.
        tokenizer.truncation_side = "left"
        tokenizer.padding_side = "right"
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ValueError(f"reward model {self.model}: its tokenizer has neither a pad nor an eos token")
            tokenizer.pad_token = tokenizer.eos_token
        configs = [model.config]
        if hasattr(model.config, "get_text_config") and model.config.get_text_config() is not model.config:
            configs.append(model.config.get_text_config())
        for config in configs:
            if getattr(config, "pad_token_id", None) not in (None, tokenizer.pad_token_id):
                logger.warning(
                    "reward model %s: config pad_token_id %s differs from the tokenizer's %s; using the tokenizer's",
                    self.model,
                    config.pad_token_id,
                    tokenizer.pad_token_id,
                )
            config.pad_token_id = tokenizer.pad_token_id
        if not getattr(tokenizer, "chat_template", None):
            logger.warning(
                "reward model %s has no chat template: conversations are rendered as 'User: ...\\nAssistant: ...'",
                self.model,
            )
        self._loaded = (model, tokenizer)
        return self._loaded

    def render(self, messages: list[dict], tokenizer) -> tuple[str, bool]:
        """The conversation as text, and whether the tokenizer should add its special tokens to it."""
        if getattr(tokenizer, "chat_template", None):
            # The template writes the special tokens itself (apply_chat_template(tokenize=True) does not add any).
            return tokenizer.apply_chat_template(messages, tokenize=False), False
        return plain_rendering(messages), True

    def encode(self, messages: list[dict], tokenizer) -> list[int]:
        text, add_special_tokens = self.render(messages, tokenizer)
        return tokenizer(text, add_special_tokens=add_special_tokens, truncation=True, max_length=self.max_length)[
            "input_ids"
        ]

    def score(
        self, instructions: pd.DataFrame, responses: pd.DataFrame, *, preferences: pd.DataFrame | None = None
    ) -> np.ndarray:
        import torch

        scores = np.full(len(responses), np.nan, dtype=np.float32)
        prompts = instructions.set_index("instruction_id")["prompt_messages"]
        response_prompts = responses["instruction_id"].map(prompts)
        texts = responses["response"]
        scorable = np.flatnonzero((response_prompts.notna() & texts.notna()).to_numpy())
        if len(scorable) == 0:
            return scores
        model, tokenizer = self.load()
        parsed: dict[str, list[dict]] = {}
        encoded: list[list[int]] = []
        for position in scorable:
            prompt = response_prompts.iloc[position]
            if prompt not in parsed:
                parsed[prompt] = json.loads(prompt)
            conversation = [*parsed[prompt], {"role": "assistant", "content": texts.iloc[position]}]
            encoded.append(self.encode(conversation, tokenizer))
        # Longest first: batches of similar length waste little padding, and a batch too big fails at once.
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        with stage_bar(f"reward ({self.model})", len(encoded), unit=" responses", enabled=self.progress) as bar:
            for batch in batches:
                padded = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
                with torch.inference_mode():
                    output = model(
                        input_ids=padded["input_ids"].to(model.device),
                        attention_mask=padded["attention_mask"].to(model.device),
                    )
                rewards = getattr(output, "score", None)
                if rewards is None:
                    rewards = output.logits[:, 0]
                rewards = rewards.float().reshape(len(batch), -1)[:, 0].cpu().numpy()
                scores[scorable[batch]] = rewards
                bar.update(len(batch))
        return scores
