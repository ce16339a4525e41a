"""Where models run: the device ``auto`` resolves to, and the dtype ``auto`` means there."""

from __future__ import annotations

DTYPES = ("auto", "float32", "bfloat16", "float16")


def pick_device(requested: str = "auto") -> str:
    """``requested`` as given, or ``cuda`` where torch sees a GPU and ``cpu`` elsewhere for ``auto``."""
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> str:
    """``dtype`` checked; ``auto`` is bfloat16 on CUDA and float32 on the CPU."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if dtype == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    return dtype
