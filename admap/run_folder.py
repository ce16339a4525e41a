"""A run folder is written as one transaction, by one writer at a time.

`admap map --out X` writes into a staging folder beside ``X`` and publishes it at the end by
exchanging it with ``X`` in one atomic step (``renameat2(RENAME_EXCHANGE)`` on Linux; two renames
elsewhere). ``summary.json`` is written last, into the staging folder, and names the run (``run_id``)
and every file of it with its size. So ``X`` is always one complete run: the previous one until the
exchange, the new one after it; a run killed at any point leaves the previous run untouched and a
staging folder that the next writer of ``X`` removes. Files of an earlier run that the new run does not
write (a diagnosis of the old scores, say) go with the old folder.

A lock file beside ``X`` (``.X.lock``, holding the writer's pid, host and command) admits one writer
at a time: a second ``admap map``, ``select`` or ``diagnose`` writing into ``X`` is refused with the
holder's name. The lock is an ``flock``, which the kernel releases when its process dies, so a killed
run never leaves ``X`` locked.

Readers (`MapRun.open`) accept a folder only when its summary names a run and every listed file is
there with its listed size. `MapRun` is the one reader of a run's files for the commands and the
experiments alike.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import shlex
import shutil
import socket
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from admap.durable import fsync_path
from admap.models import DEFAULT_EMBEDDING_MODEL

logger = logging.getLogger(__name__)

SUMMARY = "summary.json"
DIAGNOSIS = "diagnosis"
NEIGHBOURS = "neighbours"
# What `admap map` and the commands that write into its folder create, besides the tables a scorer adds
# (listed in the run's summary): a folder holding anything else is not replaced, so that a mistyped --out
# never moves someone's files away.
RUN_FILE_NAMES = frozenset(
    {
        SUMMARY,
        "scores.parquet",
        "map.parquet",
        "preferences.parquet",
        "proxies.jsonl",
        "map.png",
        "view.html",
        # The Python API's notebook view: fewer points and less text than view.html.
        "view-inline.html",
        "pairs",
        DIAGNOSIS,
        NEIGHBOURS,
    }
)
# The run's pages, which `admap view` and the notebook view redraw in place (with a diagnosis, another run's
# regions or neighbourhoods they change size): the summary's file list leaves them out, so a redrawn page
# never makes the run unreadable.
REDRAWN = frozenset({"view.html", "view-inline.html"})
RENAME_EXCHANGE = 2
AT_FDCWD = -100


class RunFolderBusy(RuntimeError):
    """Another process is writing the run folder."""


class IncompleteRun(FileNotFoundError):
    """A folder that is not one complete `admap map` run."""


class ForeignDiagnosis(ValueError):
    """A diagnosis folder that is not a diagnosis of the run it is read with."""


def new_run_id() -> str:
    """Sortable and unique: the UTC start time and a random suffix."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def lock_path(run_dir: Path) -> Path:
    return run_dir.parent / f".{run_dir.name}.lock"


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s writer lock, or raise `RunFolderBusy` naming its holder. The lock file is
    never deleted: a process waiting on the old file and one creating a new file could both hold one."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(run_dir)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            holder = _read_holder(path)
            raise RunFolderBusy(
                f"{run_dir} is being written by another process ({holder}; lock {path}): wait for it to finish, "
                "or write to another folder"
            ) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": shlex.join(sys.argv),
        }
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(holder).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(descriptor, 0)
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def _read_holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "holder unknown"
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}: {holder.get('command')}"


@dataclass
class RunTransaction:
    """The staging folder of a run in progress, and its publication."""

    final: Path
    staging: Path
    run_id: str

    def publish(self, summary: dict) -> Path:
        """Write ``summary`` (with the run id and the manifest of every file) last, flush everything to
        disk, and put the staging folder in the final folder's place; returns the final folder."""
        files = manifest(self.staging)
        summary = {"run_id": self.run_id, **summary, "files": files}
        (self.staging / SUMMARY).write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n")
        for relative in [*files, SUMMARY]:
            fsync_path(self.staging / relative)
        fsync_path(self.staging)
        if self.final.exists():
            check_replaceable(self.final)
        put_in_place(self.staging, self.final, replaced=f".{self.final.name}.replaced-{self.run_id}")
        logger.info("published run %s in %s", self.run_id, self.final)
        return self.final


@contextmanager
def run_transaction(final: Path) -> Iterator[RunTransaction]:
    """Lock ``final``, remove what killed runs left beside it, and give a fresh staging folder; on an
    error the staging folder is removed and ``final`` is left as it was."""
    final = Path(final)
    if final.exists():
        check_replaceable(final)
    with run_lock(final):
        for leftover in final.parent.glob(f".{final.name}.staging-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in final.parent.glob(f".{final.name}.replaced-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        run_id = new_run_id()
        staging = final.parent / f".{final.name}.staging-{run_id}"
        staging.mkdir()
        try:
            yield RunTransaction(final=final, staging=staging, run_id=run_id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


@contextmanager
def writing_into(run_dir: Path, folder: Path) -> Iterator[Path]:
    """A command's output folder ``folder``, written whole: under ``run_dir``'s lock when it lies inside
    it, into a staging folder renamed into place at the end (an earlier output there is replaced)."""
    run_dir, folder = Path(run_dir), Path(folder)
    inside = folder.resolve().is_relative_to(run_dir.resolve())
    with run_lock(run_dir) if inside else _no_lock():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = folder.parent / f".{folder.name}.staging-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            yield staging
            for path in staging.rglob("*"):
                fsync_path(path)
            put_in_place(staging, folder, replaced=f".{folder.name}.replaced-{uuid.uuid4().hex[:8]}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def put_in_place(staging: Path, final: Path, *, replaced: str) -> None:
    """Put the folder ``staging`` at ``final`` in one step: exchanged with what is there (then removed,
    by way of the name ``replaced`` beside it), or renamed where nothing is; the parent is flushed."""
    if final.exists():
        previous = final.parent / replaced
        if exchange(staging, final):
            os.rename(staging, previous)  # the staging path now holds the previous folder
        else:
            os.rename(final, previous)
            os.rename(staging, final)
        fsync_path(final.parent)
        shutil.rmtree(previous, ignore_errors=True)
    else:
        os.rename(staging, final)
        fsync_path(final.parent)


@contextmanager
def _no_lock() -> Iterator[None]:
    yield


def check_replaceable(folder: Path) -> None:
    """Refuse to replace a folder that holds anything but an admap run's files."""
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} exists and is not a folder: choose another --out")
    listed = _listed_names(folder)
    foreign = sorted(
        p.name
        for p in folder.iterdir()
        if p.name not in RUN_FILE_NAMES and p.name not in listed and not _is_leftover(p.name)
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise FileExistsError(
            f"{folder} holds files that are not an admap run's ({shown}); a run replaces its folder whole: "
            "choose another --out"
        )


def _listed_names(folder: Path) -> set[str]:
    """The top-level names of the files the folder's own summary lists (none if it has no readable one)."""
    try:
        files = json.loads((folder / SUMMARY).read_text()).get("files") or {}
    except (OSError, ValueError, AttributeError):
        return set()
    return {relative.split("/", 1)[0] for relative in files}


def _is_leftover(name: str) -> bool:
    """What an interrupted write leaves: a hidden staging file or folder (``.X.partial``, ``.X.staging-*``,
    ``.X.replaced-*``)."""
    return name.startswith(".") and (name.endswith(".partial") or ".staging-" in name or ".replaced-" in name)


def manifest(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` (but the summary and the pages `REDRAWN` rewrites) by relative path, with
    its size in bytes."""
    return {
        path.relative_to(folder).as_posix(): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != SUMMARY and path.relative_to(folder).as_posix() not in REDRAWN
    }


def read_summary(run_dir: Path) -> dict:
    """The summary of a complete run; `IncompleteRun` saying why a folder is not one."""
    run_dir = Path(run_dir)
    path = run_dir / SUMMARY
    if not path.exists():
        staging = sorted(run_dir.parent.glob(f".{run_dir.name}.staging-*"))
        why = "a run into it was interrupted or is in progress" if staging else "it has no summary.json"
        raise IncompleteRun(f"{run_dir} is not an `admap map` run directory ({why}): run admap map into it")
    try:
        summary = json.loads(path.read_text())
    except ValueError as error:
        raise IncompleteRun(f"{path} is not valid JSON ({error}): rerun admap map into {run_dir}") from None
    files = summary.get("files")
    if files is None:
        # Runs written before summaries listed their files: nothing to check them against.
        logger.warning("%s lists no files (written by an older admap): its files are not checked", path)
        return summary
    problems = []
    for relative, size in files.items():
        if relative in REDRAWN:  # listed by runs written before the pages were left out
            continue
        file = run_dir / relative
        if not file.is_file():
            problems.append(f"{relative} is missing")
        elif file.stat().st_size != size:
            problems.append(f"{relative} has {file.stat().st_size} bytes, the run wrote {size}")
    if problems:
        raise IncompleteRun(
            f"{run_dir} does not hold the run its summary names ({summary.get('run_id')}): "
            f"{'; '.join(problems[:5])}: rerun admap map into it"
        )
    return summary


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the system or the
    file system cannot, for the caller to fall back on two renames."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, f"exchanging {a} and {b}: {os.strerror(code)}")


def run_label(summary: dict) -> str:
    """How figures, the viewer and comparisons name a run's score: its scorer's label, and whether the
    scores were length-debiased."""
    label = summary.get("scorer", {}).get("label", "unknown")
    if summary.get("config", {}).get("length_debias"):
        label += ", length-debiased"
    return label


@dataclass(frozen=True)
class Neighbourhoods:
    """One `admap neighbours` output folder: ``neighbours.json`` (``summary``, naming the map run it read),
    the near-duplicate groups and the contamination table."""

    folder: Path
    summary: dict
    near_duplicates: pd.DataFrame
    contamination: pd.DataFrame
    layout: pd.DataFrame | None  # instruction_id, semantic_x, semantic_y; None with --layout none

    def to_drop(self, *, near_duplicates: bool, contaminated: bool) -> dict[str, np.ndarray]:
        """The instruction ids each flag leaves out: every near duplicate but its group's kept one, and the
        contaminated instructions."""
        drops = {}
        if near_duplicates:
            drops["near_duplicates"] = self.near_duplicates.loc[~self.near_duplicates["is_kept"], "instruction_id"]
        if contaminated:
            drops["contaminated"] = self.contamination.loc[self.contamination["is_contaminated"], "instruction_id"]
        return {name: ids.to_numpy(dtype=object) for name, ids in drops.items()}


@dataclass(frozen=True)
class Diagnosis:
    """One `admap diagnose` output folder: ``diagnosis.json`` (``summary``, naming the map run it read) and
    ``suspects.parquet`` (every annotated pair, ranked most suspect first)."""

    folder: Path
    summary: dict
    suspects: pd.DataFrame

    @property
    def suspects_path(self) -> Path:
        return self.folder / "suspects.parquet"


@dataclass(frozen=True)
class MapRun:
    """One complete `admap map` run directory, for reading: opening it checks its summary against its files.

    ``scores.parquet`` (per response), ``map.parquet`` (per instruction, with its region),
    ``preferences.parquet`` (the dataset's own pairs, for pair datasets), ``pairs/<strategy>.jsonl``,
    ``diagnosis/`` (`admap diagnose`) and ``summary.json`` (`summary`).
    """

    path: Path
    summary: dict

    @classmethod
    def open(cls, path: str | Path) -> MapRun:
        """The run in ``path``, or `IncompleteRun` saying why the folder is not one complete run."""
        path = Path(path)
        summary = read_summary(path)
        missing = [name for name in ("scores.parquet", "map.parquet") if not (path / name).exists()]
        if missing:
            raise IncompleteRun(f"{path} is not an `admap map` run directory (missing {', '.join(missing)})")
        return cls(path, summary)

    @property
    def run_id(self) -> str | None:
        return self.summary.get("run_id")

    @property
    def scorer(self) -> str:
        return self.summary["config"]["scorer"]

    @property
    def embedding_model(self) -> str:
        """The sentence-transformers model the run embedded with, else the default one (a run scored without
        embeddings, such as the annotation scorer's): what commands that embed the run's texts use."""
        if (self.summary.get("scorer") or {}).get("embedding"):
            return self.summary["config"].get("embedding_model", DEFAULT_EMBEDDING_MODEL)
        return DEFAULT_EMBEDDING_MODEL

    @property
    def label(self) -> str:
        return run_label(self.summary)

    def scores(self, columns: list[str] | None = None) -> pd.DataFrame:
        return pd.read_parquet(self.path / "scores.parquet", columns=columns)

    def map_table(self, columns: list[str] | None = None) -> pd.DataFrame:
        return pd.read_parquet(self.path / "map.parquet", columns=columns)

    def preferences(self) -> pd.DataFrame | None:
        """The dataset's own pairs, or None for a dataset of rated responses."""
        path = self.path / "preferences.parquet"
        return pd.read_parquet(path) if path.exists() else None

    def suspects(self) -> pd.DataFrame | None:
        """The ranked suspect pairs of `admap diagnose`, if a diagnosis of this very run is there."""
        if not (self.path / DIAGNOSIS / "suspects.parquet").exists():
            return None
        try:
            return self.diagnosis().suspects
        except ForeignDiagnosis as error:
            logger.warning("%s: left out", error)
            return None

    def diagnosis(self, folder: str | Path | None = None) -> Diagnosis:
        """The diagnosis in ``folder`` (default: the run's ``diagnosis/``); `ForeignDiagnosis` when it
        diagnosed another map run (its ``diagnosis.json`` names the run it read)."""
        folder = Path(folder) if folder is not None else self.path / DIAGNOSIS
        summary_path, suspects_path = folder / "diagnosis.json", folder / "suspects.parquet"
        for path in (summary_path, suspects_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: run `admap diagnose {self.path}` first")
        summary = json.loads(summary_path.read_text())
        diagnosed = summary.get("map_run_id")
        if diagnosed is None or diagnosed != self.run_id:
            raise ForeignDiagnosis(
                f"{folder} is a diagnosis of map run {diagnosed}, not of {self.path}'s run {self.run_id} "
                f"(a rerun of admap map makes a new run): run `admap diagnose {self.path}` again"
            )
        return Diagnosis(folder, summary, pd.read_parquet(suspects_path))

    def neighbours(self, folder: str | Path | None = None) -> Neighbourhoods:
        """The `admap neighbours` output in ``folder`` (default: the run's ``neighbours/``);
        `ForeignDiagnosis` when it was computed for another map run."""
        folder = Path(folder) if folder is not None else self.path / NEIGHBOURS
        paths = [folder / name for name in ("neighbours.json", "near_duplicates.parquet", "contamination.parquet")]
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: run `admap neighbours {self.path}` first")
        summary = json.loads(paths[0].read_text())
        if summary.get("map_run_id") is None or summary["map_run_id"] != self.run_id:
            raise ForeignDiagnosis(
                f"{folder} holds the neighbours of map run {summary.get('map_run_id')}, not of {self.path}'s run "
                f"{self.run_id} (a rerun of admap map makes a new run): run `admap neighbours {self.path}` again"
            )
        layout = folder / "layout.parquet"
        return Neighbourhoods(
            folder,
            summary,
            pd.read_parquet(paths[1]),
            pd.read_parquet(paths[2]),
            pd.read_parquet(layout) if layout.is_file() else None,
        )

    def neighbourhoods_if_any(self) -> Neighbourhoods | None:
        """The run's own `admap neighbours` output, if one of this very run is there (for the viewer)."""
        if not (self.path / NEIGHBOURS / "neighbours.json").exists():
            return None
        try:
            return self.neighbours()
        except (ForeignDiagnosis, FileNotFoundError) as error:
            logger.warning("%s: left out", error)
            return None

    def holds(self, path: Path) -> bool:
        return Path(path).resolve().is_relative_to(self.path.resolve())

    @contextmanager
    def writing(self, path: Path) -> Iterator[None]:
        """Under the run's lock when ``path`` lies inside the run (a map run publishing there replaces the
        folder), else with no lock."""
        with run_lock(self.path) if self.holds(path) else _no_lock():
            yield
