"""Writes that survive a crash or a power cut: a file's data, or a folder's entries, flushed to disk
before the rename that publishes them is trusted."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: str | Path) -> None:
    """Flush ``path`` (a file's data, or a folder's entries after a rename into it) to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
