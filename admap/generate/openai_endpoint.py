"""What the online (`admap.generate.openai_api`) and the Batch API (`admap.generate.openai_batch`) clients
share: the endpoint and its settings, the API key's variable, and how a failed request is described.

The API key is read from the environment variable ``api_key_env``; a loopback ``base_url`` (a local
vLLM server) may run without one.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from urllib.parse import urlparse

from admap.generate.options import GeneratorOptions

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# What local OpenAI-compatible servers (vLLM, llama.cpp) are given when they need no key.
NO_KEY = "EMPTY"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_local_url(url: str | None) -> bool:
    """Whether ``url`` points at this machine (loopback address or localhost)."""
    if not url:
        return False
    host = (urlparse(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def describe(error: BaseException) -> str:
    """``Type: message``, with the underlying cause of a connection error (the SDK's says only "Connection error.")."""
    text = f"{type(error).__name__}: {error}"
    cause = error.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({type(cause).__name__}: {cause})"
    return text


@dataclass
class OpenAIEndpoint:
    """What the online and the Batch API clients share: the endpoint, the key's variable, and the
    settings that shape a reply (which are also the cache identity, so either path reuses the other's)."""

    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int = 256
    seed: int | None = None
    max_retries: int = 6
    request_timeout: float = 120.0
    progress: bool = True
    name: str = "openai"

    def __post_init__(self) -> None:
        if not ENV_NAME.fullmatch(self.api_key_env or ""):
            # Most likely the key itself was passed: say so without repeating it.
            raise ValueError(
                "api_key_env must name an environment variable (such as OPENAI_API_KEY) that holds the key, "
                "not be the key; the value given is not shown"
            )
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.request_timeout <= 0:
            raise ValueError(f"request_timeout must be > 0, got {self.request_timeout}")
        # The endpoint is part of the identity, so it is pinned here rather than left to the SDK's default.
        self.base_url = (self.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")

    @staticmethod
    def endpoint_settings(options: GeneratorOptions) -> dict:
        """The fields of this class that ``options`` sets, for either client's ``from_options``."""
        return {
            "model": options.generator_model,
            "base_url": options.base_url,
            "api_key_env": options.api_key_env,
            "temperature": options.temperature,
            "max_tokens": options.max_new_tokens,
            "seed": options.generation_seed,
            "max_retries": options.max_retries,
            "request_timeout": options.request_timeout,
        }

    @property
    def deterministic(self) -> bool:
        return self.temperature == 0 or self.seed is not None

    def identity(self) -> dict:
        return {
            "generator": self.name,
            "model": self.model,
            "base_url": self.base_url,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }

    def api_key(self) -> str:
        """The key from ``api_key_env``; a loopback endpoint may do without one."""
        key = os.environ.get(self.api_key_env, "").strip()
        if key:
            return key
        if is_local_url(self.base_url):
            return NO_KEY
        raise ValueError(
            f"no API key for {self.base_url}: set the environment variable {self.api_key_env} "
            "(or name another one with --api-key-env)"
        )
