"""What a timing needs beside the clock: the measured matmul peak, other processes' load, peak memory,
and a fresh process to measure in. (The machine's facts are `admap.provenance.machine`.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def matmul_flops(precision: str = "fp32", *, size: int = 2048, seconds: float = 2.0, device: str = "cpu") -> float:
    """FLOP/s of square ``size`` matmuls in ``precision`` on ``device``, the best of repeated runs over
    about ``seconds``: the ceiling an encoder's dense layers could reach here."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    with torch.inference_mode():
        torch.matmul(a, b)  # warm-up: oneDNN/cuBLAS pick their kernels on the first call
        sync()
        best, deadline = float("inf"), time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            torch.matmul(a, b)
            sync()
            best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def system_cpu_seconds() -> float | None:
    """CPU seconds all processes have used since boot (Linux ``/proc/stat``), else None."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
        return busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class OtherLoad:
    """Cores' worth of CPU time that other processes used while the block ran (None where unknown):
    timings taken while it is well above zero are not comparable."""

    def __enter__(self) -> OtherLoad:
        self.cores = None
        self._system, self._own, self._wall = system_cpu_seconds(), time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        system = system_cpu_seconds()
        if system is not None and self._system is not None:
            wall = time.perf_counter() - self._wall
            other = (system - self._system) - (time.process_time() - self._own)
            self.cores = round(max(other, 0.0) / max(wall, 1e-9), 2)


def status_bytes(field: str) -> int:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak_rss() -> bool:
    """Set the peak resident size (VmHWM) back to the current one; False where Linux does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def in_fresh_process(module: str, function: str, *arguments) -> dict:
    """``module.function(*arguments)`` (JSON-able arguments and result) in a new Python process,
    so that its peak resident memory is its own and not the caller's."""
    package_root = str(Path(__file__).resolve().parents[2])
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    code = f"import json, sys; from {module} import {function}; print(json.dumps({function}(*json.loads(sys.argv[1]))))"
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(arguments)],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the measurement process failed ({result.returncode}):\n{result.stderr}")
    return json.loads(result.stdout.splitlines()[-1])
