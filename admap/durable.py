"""Writes that survive a crash or a power cut: a file's data, or a folder's entries, flushed to disk
before the rename that publishes them is trusted."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def fsync_path(path: str | Path) -> None:
    """Flush ``path`` (a file's data, or a folder's entries after a rename into it) to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def publish(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write`` a staging file beside ``path`` (named per process, so concurrent writers never share
    one), then rename it into place: readers see the previous file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        write(staging)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return path


def write_bytes(chunks: Iterable[bytes | memoryview], path: str | Path) -> Path:
    """``chunks`` (anything with the buffer protocol, such as a pyarrow Buffer) one after another, each one
    write, published whole (`publish`): never a torn file. A chunk is written while the next is made (the
    write releases the GIL), so at most two are held at once."""

    def write(staging: Path) -> None:
        with staging.open("wb") as handle, ThreadPoolExecutor(1) as writer:
            writing = None
            for chunk in chunks:
                if writing is not None:
                    writing.result()
                writing = writer.submit(handle.write, chunk)
            if writing is not None:
                writing.result()

    return publish(path, write)


def write_jsonl(records: Iterable[dict], path: str | Path) -> Path:
    """One JSON line per record, published whole (`publish`): never a torn file."""

    def write(staging: Path) -> None:
        with staging.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    return publish(path, write)
