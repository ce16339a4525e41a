"""Which FAISS build is installed, and ``faiss`` itself, or an ImportError that says how to install it.

FAISS comes in several builds, each its own distribution, and every one of them installs into the same
``faiss`` folder: two installed together leave that folder mixed (the GPU build's Python wrappers over
the CPU build's library fail at import), and uninstalling either deletes files the other needs. So
admap depends on none of them directly; its extras ``cpu`` and ``gpu`` each name one, and an
environment holds one.
"""

from __future__ import annotations

from functools import cache
from importlib import metadata

# Every distribution that installs the `faiss` package; the first two are admap's `cpu` and `gpu` extras.
FAISS_DISTRIBUTIONS = ("faiss-cpu", "faiss-gpu-cu12", "faiss-gpu-cu11", "faiss-gpu")
INSTALL_ROUTES = (
    "install one FAISS build: pip install 'admap[cpu]' (faiss-cpu, any machine) or "
    "pip install 'admap[gpu]' (faiss-gpu-cu12, CUDA 12); from a checkout, pip install -e '.[cpu]' or '.[gpu]'"
)


def installed_faiss_distributions() -> dict[str, str]:
    """``{distribution: version}`` of the FAISS builds installed here (none, one, or a broken mix)."""
    versions = {}
    for name in FAISS_DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@cache
def import_faiss():
    """The ``faiss`` module; an ImportError naming both install routes when it is missing, mixed or broken."""
    installed = installed_faiss_distributions()
    builds = ", ".join(f"{name} {version}" for name, version in installed.items())
    # pip leaves an installed distribution alone, however broken: a repair removes what is there first.
    repair = f"pip uninstall -y {' '.join(installed)}, then {INSTALL_ROUTES}" if installed else INSTALL_ROUTES
    if len(installed) > 1:
        raise ImportError(f"several FAISS builds are installed ({builds}); they overwrite each other's files: {repair}")
    try:
        import faiss

        # What an uninstalled build leaves behind imports as an empty namespace package.
        faiss.IndexFlatIP  # noqa: B018
    except (ImportError, AttributeError, OSError) as error:
        state = f"{builds} is installed but broken" if installed else "FAISS is not installed"
        raise ImportError(f"{state} ({type(error).__name__}: {error}): {repair}") from error
    return faiss
