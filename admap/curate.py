"""Curation: what `admap select` leaves out before a strategy chooses, from lists of instruction ids (the
viewer's export, or any file of ids) and from `admap diagnose`'s suspect pairs.

The steps, in this order, each on what the one before kept:

1. the pool is the map's mapped instructions (no strategy can choose any other);
2. ``include``: the pool keeps only the listed instructions;
3. ``exclude``: the pool loses the listed instructions (so an id in both lists is left out);
4. suspect pairs: the pool's training pairs lose the flagged pairs picked by rank (``top``) and/or by
   suspicion (``above``). The pair is dropped, never its instruction's other pairs, as cleanlab drops
   the example it flags; an instruction whose every pair is dropped stays in the pool with none;
5. the strategy chooses from the pool, sized against it (`admap_baselines.subset_size`: a fraction of
   the pool, or as many as the pool's high-mean instructions, so that ``high_mean`` is the region
   without the excluded ones and ``random`` stays its same-size baseline), and the subset is its
   instructions' remaining pairs.

Pure functions over tables, but for `read_id_file`, the one piece of I/O, kept at the end.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from admap.errors import InputError
from admap.select import PAIR_COLUMNS, rows_of_instructions

ID_COLUMN = "instruction_id"
SUSPECT_COLUMNS = [*PAIR_COLUMNS, "rank", "suspicion_score", "is_suspect"]
# Suffixes read as tables of records; any other file is plain text, one id per line.
JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class IdMatch:
    """How a list of instruction ids meets a run's map, each part in the list's order."""

    mapped: np.ndarray  # instructions on the map: the ones a strategy can choose
    unmapped: np.ndarray  # instructions of the run that are not on the map (too few scored responses)
    unknown: np.ndarray  # not instructions of the run at all


def match_ids(ids: np.ndarray, map_table: pd.DataFrame) -> IdMatch:
    """Split ``ids`` by whether ``map_table`` (``instruction_id``, ``is_mapped``) holds them, on the map or not."""
    ids = pd.Index(np.asarray(ids, dtype=object))
    known = ids.isin(map_table[ID_COLUMN])
    on_map = ids.isin(map_table.loc[map_table["is_mapped"].astype(bool), ID_COLUMN])
    return IdMatch(
        mapped=ids[on_map].to_numpy(), unmapped=ids[known & ~on_map].to_numpy(), unknown=ids[~known].to_numpy()
    )


@dataclass(frozen=True)
class InstructionPool:
    """The mapped instructions a strategy may choose from, and what each filter left."""

    map_table: pd.DataFrame  # the kept rows of the map, mapped ones only, in map order
    mapped: int  # before any filter
    after_include: int
    after_exclude: int
    excluded: np.ndarray  # the ids the exclude list took out of the pool, in map order


def instruction_pool(
    map_table: pd.DataFrame, *, include: np.ndarray | None = None, exclude: np.ndarray | None = None
) -> InstructionPool:
    """The mapped rows of ``map_table`` that are in ``include`` (every one when None) and not in ``exclude``."""
    mapped = map_table[map_table["is_mapped"].astype(bool)]
    included = mapped if include is None else mapped[mapped[ID_COLUMN].isin(pd.Index(include, dtype=object))]
    dropping = np.zeros(len(included), dtype=bool)
    if exclude is not None:
        dropping = included[ID_COLUMN].isin(pd.Index(exclude, dtype=object)).to_numpy()
    return InstructionPool(
        map_table=included[~dropping],
        mapped=int(len(mapped)),
        after_include=int(len(included)),
        after_exclude=int((~dropping).sum()),
        excluded=included.loc[dropping, ID_COLUMN].to_numpy(),
    )


def check_suspects_table(suspects: pd.DataFrame, *, source: str) -> None:
    """Refuse a suspects table without the columns `chosen_suspects` reads, naming ``source``."""
    missing = [column for column in SUSPECT_COLUMNS if column not in suspects.columns]
    if missing:
        raise ValueError(f"{source} lacks columns {missing} (admap diagnose writes {SUSPECT_COLUMNS})")


def chosen_suspects(suspects: pd.DataFrame, *, top: int | None = None, above: float | None = None) -> pd.DataFrame:
    """The flagged pairs (``is_suspect``: the scores prefer the rejected response) that the limits pick, most
    suspect first: the ``top`` best-ranked of them, those whose ``suspicion_score`` is at least ``above``, or,
    with both, the ``top`` best-ranked of those at least ``above``. Pairs the scores agree with are never picked,
    whatever the limits. ``suspects``: `admap diagnose`'s table (`SUSPECT_COLUMNS`); returns its rows."""
    if top is None and above is None:
        raise ValueError("give top, above or both: which suspect pairs to pick")
    if top is not None and top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    if above is not None and not math.isfinite(above):
        raise ValueError(f"above must be a finite number, got {above}")
    check_suspects_table(suspects, source="the suspects table")
    flagged = suspects[suspects["is_suspect"].astype(bool)].sort_values("rank", kind="mergesort")
    if above is not None:
        flagged = flagged[flagged["suspicion_score"] >= above]
    if top is not None:
        flagged = flagged.head(top)
    return flagged.reset_index(drop=True)


@dataclass(frozen=True)
class PairDrop:
    """Training pairs with some taken out."""

    kept: pd.DataFrame  # the pairs left, in their order
    dropped: pd.DataFrame  # the rows of the drop list that were among the pairs, in the list's order


def drop_pairs(pairs: pd.DataFrame, drop: pd.DataFrame) -> PairDrop:
    """``pairs`` without those ``drop`` names (the same ``instruction_id``, ``chosen_id`` and ``rejected_id``:
    the same pair the other way round is another pair)."""
    pair_keys = pd.MultiIndex.from_frame(pairs[PAIR_COLUMNS])
    drop_keys = pd.MultiIndex.from_frame(drop[PAIR_COLUMNS])
    return PairDrop(
        kept=pairs[~pair_keys.isin(drop_keys)], dropped=drop[drop_keys.isin(pair_keys)].reset_index(drop=True)
    )


@dataclass(frozen=True)
class CuratedPool:
    """What a strategy chooses from, and what each step took out on the way."""

    instructions: InstructionPool
    pairs: pd.DataFrame  # the pool's pairs less the dropped suspects, in their order
    pairs_of_pool: int  # the pool's pairs before the drop
    chosen_suspects: pd.DataFrame  # the diagnosis's pairs the limits picked (no rows without a diagnosis)
    dropped_pairs: pd.DataFrame  # those of them that were the pool's pairs


def curated_pool(
    map_table: pd.DataFrame,
    pairs: pd.DataFrame,
    *,
    include: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    suspects: pd.DataFrame | None = None,
    top: int | None = None,
    above: float | None = None,
) -> CuratedPool:
    """Steps 1 to 4 of this module's order: the mapped instructions of ``map_table``, in ``include`` and not
    in ``exclude``, with their ``pairs`` (``instruction_id``, ``chosen_id``, ``rejected_id``) less the flagged
    pairs of ``suspects`` that ``top`` and ``above`` pick (`chosen_suspects`). A pool with no instruction
    left is refused, with the count after each filter."""
    pool = instruction_pool(map_table, include=include, exclude=exclude)
    if pool.after_exclude == 0:
        raise ValueError(
            f"no mapped instruction is left to select from ({pool.mapped} mapped, {pool.after_include} after "
            f"the include list, {pool.after_exclude} after the exclude list)"
        )
    pool_pairs = rows_of_instructions(pairs, pool.map_table[ID_COLUMN].to_numpy())
    if suspects is None:
        if top is not None or above is not None:
            raise ValueError("top and above pick suspect pairs: give the suspects table too")
        chosen = pd.DataFrame(columns=SUSPECT_COLUMNS)
    else:
        chosen = chosen_suspects(suspects, top=top, above=above)
    drop = drop_pairs(pool_pairs, chosen)
    return CuratedPool(pool, drop.kept, int(len(pool_pairs)), chosen, drop.dropped)


# ---- reading id files (the edge)


@dataclass(frozen=True)
class IdFile:
    """The instruction ids of one file, distinct, in file order."""

    path: Path
    sha256: str
    ids: np.ndarray
    listed: int  # ids in the file, repeats included

    def record(self) -> dict:
        return {"path": str(self.path), "sha256": self.sha256, "listed": self.listed, "distinct": int(len(self.ids))}


def read_id_file(path: str | Path) -> IdFile:
    """Instruction ids from ``path``: JSONL (``.jsonl``, ``.ndjson``) of records with an ``instruction_id``
    (the viewer's export; `admap select`'s own pair files too), CSV or Parquet with an ``instruction_id``
    column, else plain text, one id per line (blank lines skipped, spaces around an id stripped). A missing
    or empty id is an `InputError` naming the file, the line or row, and the field."""
    path = Path(path)
    content = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        ids = _jsonl_ids(content, path)
    elif suffix == ".csv":
        table = pd.read_csv(io.BytesIO(content), dtype=str, keep_default_na=False)
        ids = _column_ids(table, path)
    elif suffix == ".parquet":
        # Only the id column is read: a table of suspects carries every text beside it.
        if ID_COLUMN not in pq.read_schema(io.BytesIO(content)).names:
            raise InputError(str(path), None, ID_COLUMN, "no such column: the ids are read from it")
        ids = _column_ids(pd.read_parquet(io.BytesIO(content), columns=[ID_COLUMN]), path)
    else:
        ids = [line.strip() for line in _text(content, path).splitlines() if line.strip()]
    return IdFile(
        path=path,
        sha256=hashlib.sha256(content).hexdigest(),
        ids=pd.unique(pd.Series(ids, dtype=object)),
        listed=len(ids),
    )


def _text(content: bytes, path: Path) -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(str(path), None, None, f"is not UTF-8 text ({error})") from None


def _jsonl_ids(content: bytes, path: Path) -> list[str]:
    ids = []
    for number, line in enumerate(_text(content, path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            raise InputError(str(path), number, None, f"is not JSON ({error})", row_name="line") from None
        if not isinstance(record, dict) or ID_COLUMN not in record:
            raise InputError(str(path), number, ID_COLUMN, "missing: each line is a record with one", row_name="line")
        ids.append(_id_value(record[ID_COLUMN], path, number, "line"))
    return ids


def _column_ids(table: pd.DataFrame, path: Path) -> list[str]:
    if ID_COLUMN not in table.columns:
        raise InputError(str(path), None, ID_COLUMN, f"no such column (columns: {list(table.columns)[:10]})")
    return [_id_value(value, path, row, "row") for row, value in enumerate(table[ID_COLUMN].tolist(), start=1)]


def _id_value(value: object, path: Path, row: int, row_name: str) -> str:
    if not isinstance(value, str):
        raise InputError(str(path), row, ID_COLUMN, f"must be a string, got {type(value).__name__}", row_name=row_name)
    if not value.strip():
        raise InputError(str(path), row, ID_COLUMN, "is empty", row_name=row_name)
    return value
