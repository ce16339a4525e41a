"""Settings shared by every generator; each implementation reads the ones it needs."""

from __future__ import annotations

from dataclasses import dataclass

from admap.config import Registered, option, registered
from admap.generate.base import GENERATORS, PROXY_SYSTEM_PROMPT
from admap.models import DEFAULT_GENERATOR_MODEL

# The paper's proxy model.
DEFAULT_API_MODEL = "gpt-4o-2024-11-20"


@dataclass
class GeneratorOptions:
    generator: str = option(
        "transformers",
        "transformers (local model), openvino or llama_cpp (GGUF files through OpenVINO GenAI or llama.cpp), "
        "openai (any OpenAI-compatible endpoint), vllm, or none",
    )
    generator_model: str | None = option(
        None,
        f"model that writes the replies (default: {DEFAULT_GENERATOR_MODEL} for transformers, "
        f"{DEFAULT_API_MODEL} for openai; required for vllm)",
    )
    base_url: str | None = option(None, "OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 for vLLM")
    api_key_env: str = option("OPENAI_API_KEY", "environment variable holding the API key (never a flag or a file)")
    system_prompt: str = option(PROXY_SYSTEM_PROMPT, "system prompt put before each conversation without one")
    temperature: float = option(0.0, "sampling temperature; 0 is greedy")
    max_new_tokens: int = option(256, "longest reply, in tokens (the paper's GPT-4o proxies: 1024)")
    generation_seed: int | None = option(None, "sampling seed sent with each request (makes sampled replies cacheable)")
    batch_size: int = option(64, "local models: prompts per batch (larger is faster, also on CPU)")
    dtype: str = option("auto", "local models: auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16")
    gpu_memory_utilization: float = option(
        0.9,
        "vllm: share of the GPU's memory the engine takes (weights, activations, KV cache); "
        "it refuses to start unless that much is free",
    )
    concurrency: int = option(8, "API: requests in flight at once")
    requests_per_minute: float | None = option(None, "API: request rate limit")
    tokens_per_minute: float | None = option(None, "API: token rate limit (prompt estimate + max_new_tokens)")
    max_retries: int = option(6, "API: retries of a request after 429, 5xx, timeouts and dropped connections")
    request_timeout: float = option(120.0, "API: seconds before a request times out")
    price_input_per_million: float | None = option(None, "API: price per million prompt tokens, for the cost line")
    price_output_per_million: float | None = option(None, "API: price per million completion tokens")
    batch_api: bool = option(False, "API: use the OpenAI Batch API (half price, hours); resumable by batch id")
    cache: bool = option(True, "keep replies in the content-addressed cache and reuse them")
    cache_dir: str | None = option(None, "cache folder (default: $ADMAP_CACHE/generations or ~/.cache/admap/...)")
    # A generator's own settings (llama_cpp's threads) sit under its name: --llama-cpp-threads, llama_cpp: {...}.
    generator_options: Registered = registered(GENERATORS, selector="generator", help="each generator's own settings")

    def sampling(self) -> dict:
        """What every local generator reads alike: the model, the reply's length, the temperature and the seed."""
        return {
            "model": self.generator_model,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "seed": self.generation_seed,
        }

    def __post_init__(self) -> None:
        if self.generator != "none":
            GENERATORS.get(self.generator)  # an unknown name gets close matches
        if self.generator_model is None and self.generator in GENERATORS:
            # Each generator names its own default: a local model's name means nothing to an API.
            self.generator_model = getattr(GENERATORS.get(self.generator), "default_model", None)
            if self.generator_model is None:
                raise ValueError(f"generator {self.generator!r} needs generator_model (--generator-model)")
        positive = {
            "max_new_tokens": self.max_new_tokens,
            "batch_size": self.batch_size,
            "concurrency": self.concurrency,
            "request_timeout": self.request_timeout,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")

    @property
    def label(self) -> str | None:
        """``generator:model`` as summaries name it; None for generator ``none``."""
        return None if self.generator == "none" else f"{self.generator}:{self.generator_model}"
