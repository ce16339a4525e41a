"""Engines that run the embedding stage: this process (``local``) or a Ray cluster (``ray``)."""

from admap.engines import in_process, ray_data  # noqa: F401  (register the engines)
from admap.engines.base import ENGINES, Engine

__all__ = ["ENGINES", "Engine"]
