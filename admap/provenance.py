"""Where a result came from: admap's version and source commit, the packages, the machine and the command.

Every file that records a run (a map's ``summary.json``, a proxy file's summary, a diagnosis, an
experiment's ``result.json``, a benchmark's record) takes these facts from here, so that they read
alike wherever they appear.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from admap.faiss_build import FAISS_DISTRIBUTIONS

# Whichever FAISS build is installed (admap's extras `cpu` and `gpu` name different distributions).
REPORTED_PACKAGES = ("torch", "transformers", "sentence-transformers", *FAISS_DISTRIBUTIONS, "numpy", "pandas")


def admap_version() -> str:
    """The installed admap's version, from its package metadata: pyproject.toml's ``version``, the one place it
    is written (an editable install reads it when installed: reinstall after changing it)."""
    return metadata.version("admap")


def package_versions(packages: tuple[str, ...] = REPORTED_PACKAGES) -> dict[str, str]:
    """admap's, Python's and each installed package's version (packages not installed are left out)."""
    versions = {"admap": admap_version(), "python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(folder: Path | None = None) -> str | None:
    """The commit checked out in ``folder`` (default: admap's own source), None outside a git checkout."""
    folder = folder or Path(__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def cpuinfo_field(name: str) -> str | None:
    """The first ``name`` line of Linux's /proc/cpuinfo (``model name``, ``flags``), else None."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine(device: str | None = None) -> dict[str, object]:
    """The machine's facts: platform, CPU model and cores, torch's threads, and the GPUs torch sees.
    ``device`` (``cpu``, ``cuda:0``) is recorded as the device the work ran on."""
    facts: dict[str, object] = {
        "platform": platform.platform(),
        "cpu": cpuinfo_field("model name") or platform.processor() or platform.machine() or "unknown",
        "cpu_count": os.cpu_count(),
        "amx_bf16": "amx_bf16" in (cpuinfo_field("flags") or "").split(),
        "gpus": [],
    }
    try:
        import torch
    except ImportError:
        return facts | ({"device": device} if device else {})
    facts["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        facts["gpus"] = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
        facts["torch_cuda"] = torch.version.cuda
    if device:
        facts["device"] = device
    return facts


def machine_line(facts: dict[str, object] | None = None) -> str:
    """One line for a results table: ``1x NVIDIA H200`` or ``2-core CPU (Intel(R) Xeon(R) ...)``."""
    facts = facts or machine()
    gpus = facts.get("gpus") or []
    if gpus:
        return f"{len(gpus)}x {gpus[0]}"
    return f"{facts['cpu_count']}-core CPU ({facts['cpu']})"


def command_line(command: str | None = None) -> str:
    """The command as given, else this process's own command line."""
    return command or shlex.join(sys.argv)


def provenance(command: str | None = None) -> dict[str, object]:
    """What a result file records about its making: version, time, command, source commit, packages, machine."""
    return {
        "admap_version": admap_version(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command_line(command),
        "git_commit": git_commit(),
        "versions": package_versions(),
        "machine": machine(),
    }
