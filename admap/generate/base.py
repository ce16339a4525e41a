"""The text-generation protocol that proxy responses (and later judges) are written through."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from admap.registry import Registry

Messages = list[dict[str, str]]

# The paper's proxy prompt asks a strong model for accurate, relevant, up-to-date, helpful answers.
PROXY_SYSTEM_PROMPT = (
    "You are a helpful assistant. Answer the user's request accurately and helpfully, "
    "with relevant and up-to-date information."
)


class Generator(Protocol):
    """Writes one reply to each conversation; implementations batch, cache or call an API."""

    name: str
    model: str

    def generate(self, conversations: Sequence[Messages]) -> list[str]: ...


GENERATORS: Registry[type] = Registry("generator")


def with_system_prompt(messages: Messages, system_prompt: str | None) -> Messages:
    """Prepend ``system_prompt`` unless the conversation already has a system message."""
    if not system_prompt or (messages and messages[0]["role"] == "system"):
        return list(messages)
    return [{"role": "system", "content": system_prompt}, *messages]
