"""What the generators that read a GGUF file themselves share (llama_cpp, openvino): transformers' sampling
settings, an engine's own options under its name, the file the model names, and the context check."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from admap.generate.options import GeneratorOptions
from admap.models import DEFAULT_GENERATOR_MODEL, resolve_generator_model


def gguf_path(model: str, generator: str) -> str:
    """The GGUF file that ``model`` names: the packaged SmolLM2 for its aliases, else ``model`` as a path."""
    path, gguf_file = resolve_generator_model(model)
    if gguf_file is not None:
        return os.path.join(path, gguf_file)
    if not model.endswith(".gguf") or not os.path.isfile(model):
        raise ValueError(
            f"generator {generator!r} reads a local .gguf file or {DEFAULT_GENERATOR_MODEL}, got {model!r}"
        )
    return model


@dataclass
class GgufEngine:
    """The settings every GGUF engine takes, read from `GeneratorOptions` alike; a subclass adds ``options``
    (its `Options` dataclass) and ``name`` (its registry name), and checks its options in ``__post_init__``."""

    default_model: ClassVar[str] = DEFAULT_GENERATOR_MODEL

    model: str = DEFAULT_GENERATOR_MODEL
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    # transformers' default generator uses the same penalty, so the backends write comparable proxies.
    repetition_penalty: float = 1.1
    seed: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        self._loaded = None

    @classmethod
    def from_options(cls, options: GeneratorOptions, *, device: str = "auto", progress: bool = True):
        return cls(**options.sampling(), options=options.generator_options[cls.name], progress=progress)

    def identity(self) -> dict:
        """What makes a reply: threads, batch and context sizes change speed only (a prompt that does not fit
        fails instead)."""
        return {
            "generator": self.name,
            "model": self.model,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "repetition_penalty": self.repetition_penalty,
            "seed": self.seed if self.temperature > 0 else None,
        }

    def gguf_file(self) -> str:
        return gguf_path(self.model, self.name)

    def context_error(self, tokens_in: int) -> str | None:
        """Why a prompt of ``tokens_in`` tokens cannot be answered in the engine's context, or None."""
        context = self.options.context_tokens
        if tokens_in + self.max_new_tokens <= context:
            return None
        return (
            f"prompt of {tokens_in} tokens + {self.max_new_tokens} new ones exceeds the "
            f"{context}-token context ({self.name} context_tokens)"
        )
