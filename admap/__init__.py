"""admap: Alignment Data Maps of LLM preference data (Lee, Kim, Lee, Chang; arXiv 2505.23114).

The Python API (`admap.api`): ``admap.map_dataset(data, ...)`` maps a dataset (a file, a hub id, a
DataFrame, a `datasets.Dataset`) and returns a `DataMap`; ``admap.open_run(path)`` opens a finished run;
``admap.read_dataset(data)`` reads a dataset into admap's tables.
"""

from importlib import metadata
from typing import Any

# pyproject.toml is the one place the version is written.
__version__ = metadata.version("admap")

__all__ = ["DataMap", "Diagnosis", "MapView", "__version__", "map_dataset", "open_run", "read_dataset"]


def __getattr__(name: str) -> Any:
    # The API imports the scorers and their libraries: `import admap` (the CLI's first step) stays light.
    if name in __all__:
        from admap import api

        return getattr(api, name)
    raise AttributeError(f"module 'admap' has no attribute {name!r}")
