"""Text generators (proxy responses, judges): one protocol, a registry by name."""

from admap.generate import local  # noqa: F401  (registers "transformers")
from admap.generate.base import GENERATORS, PROXY_SYSTEM_PROMPT, Generator, Messages, with_system_prompt

__all__ = ["GENERATORS", "PROXY_SYSTEM_PROMPT", "Generator", "Messages", "with_system_prompt"]
