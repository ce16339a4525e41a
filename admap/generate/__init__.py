"""Text generators (proxy responses, judges): one protocol, a registry by name, a cache in front."""

from admap.generate import (  # noqa: F401  (register the generators)
    llama_cpp_generator,
    openai_api,
    openvino_generator,
    transformers_generator,
    vllm_engine,
)
from admap.generate.base import (
    GENERATORS,
    PROXY_SYSTEM_PROMPT,
    Completion,
    Generator,
    Messages,
    redact,
    with_system_prompt,
)

__all__ = ["GENERATORS", "PROXY_SYSTEM_PROMPT", "Completion", "Generator", "Messages", "redact", "with_system_prompt"]
