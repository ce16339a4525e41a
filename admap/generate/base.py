"""The text-generation protocol that proxy responses (and later judges) are written through.

A generator turns conversations into `Completion` records and reports each one through
``on_result`` as soon as it is ready, so that a cache can persist it at once: a run killed
half-way loses nothing that had finished.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from admap.registry import Registry

Messages = list[dict[str, str]]

# The paper's proxy prompt asks a strong model for accurate, relevant, up-to-date, helpful answers.
PROXY_SYSTEM_PROMPT = (
    "You are a helpful assistant. Answer the user's request accurately and helpfully, "
    "with relevant and up-to-date information."
)


@dataclass
class Completion:
    """One request's outcome: ``text`` is None when it failed, with the (redacted) ``error``."""

    text: str | None
    tokens_in: int = 0
    tokens_out: int = 0
    retries: int = 0
    error: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.text is not None


ResultCallback = Callable[[int, Completion], None]


class Generator(Protocol):
    """Writes one reply per conversation.

    ``identity()`` names the model and every setting that changes the output; it keys the cache.
    ``deterministic`` says whether the same request always gets the same reply (greedy decoding,
    temperature 0, or a fixed seed), which is when a cached reply may be reused by another run.
    """

    name: str
    model: str

    @property
    def deterministic(self) -> bool: ...

    def identity(self) -> dict: ...

    def generate(
        self, conversations: Sequence[Messages], *, on_result: ResultCallback | None = None
    ) -> list[Completion]: ...


GENERATORS: Registry[type] = Registry("generator")


def with_system_prompt(messages: Messages, system_prompt: str | None) -> Messages:
    """Prepend ``system_prompt`` unless the conversation already has a system message."""
    if not system_prompt or (messages and messages[0]["role"] == "system"):
        return list(messages)
    return [{"role": "system", "content": system_prompt}, *messages]


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every secret, and anything shaped like a bearer token, replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return re.sub(r"(?i)(bearer\s+)[A-Za-z0-9._\-]+", r"\1***", text)
