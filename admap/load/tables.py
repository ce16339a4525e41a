"""Tables held in memory (a pandas DataFrame, a `datasets` Dataset or IterableDataset) read as records.

A DataFrame's rows come out as the Parquet reader gives a file's: through Arrow, so that a missing value is
``None`` and a list cell a list (not a NumPy array), whatever pandas made of them. A column Arrow cannot
type (numbers and text mixed, as a hand-made table may hold) is read value by value instead. Rows are
numbered from 1 by position, as a Parquet file's are.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from admap.load.readers import Record

# Rows converted at a time: the records of one batch are alive at once, never the whole table's.
BATCH_ROWS = 4096


def is_table(data: Any) -> bool:
    """Whether ``data`` is a table held in memory: a pandas DataFrame or a `datasets` (Iterable)Dataset."""
    if isinstance(data, pd.DataFrame):
        return True
    kind = type(data)
    return kind.__module__.startswith("datasets.") and kind.__name__ in ("Dataset", "IterableDataset")


def table_name(table: Any) -> str:
    """How messages name an in-memory table: its kind and, for a `datasets` table, the dataset it came from."""
    if isinstance(table, pd.DataFrame):
        return "DataFrame"
    builder = getattr(getattr(table, "info", None), "builder_name", None)
    return f"{type(table).__name__} ({builder})" if builder else type(table).__name__


def _plain(value: Any) -> Any:
    """A cell Arrow could not type, as a file reader gives it: missing as None, arrays as lists."""
    if isinstance(value, np.ndarray):
        return [_plain(item) for item in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if not isinstance(value, (list, dict, tuple)) and pd.isna(value):
        return None
    return value


def _column_values(column: pd.Series) -> list[Any]:
    try:
        return pa.array(column, from_pandas=True).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return [_plain(value) for value in column]


def _frame_records(frame: pd.DataFrame) -> Iterator[tuple[int, Record]]:
    names = [str(name) for name in frame.columns]
    for start in range(0, len(frame), BATCH_ROWS):
        batch = frame.iloc[start : start + BATCH_ROWS]
        columns = [_column_values(batch.iloc[:, position]) for position in range(batch.shape[1])]
        for offset, values in enumerate(zip(*columns)):
            yield start + offset + 1, dict(zip(names, values))


def table_records(table: Any) -> Iterator[tuple[int, Record]]:
    """Yield ``(row_number, record)`` from a DataFrame or a `datasets` (Iterable)Dataset."""
    if isinstance(table, pd.DataFrame):
        return _frame_records(table)
    return ((index, dict(record)) for index, record in enumerate(table, start=1))
