"""Read raw records, each with its row number, from local files or the Hugging Face hub.

Row numbers are what a person finds in the file: the line for JSONL, the line a record starts on
for CSV (the header is line 1), the 1-based record index for JSON arrays, Parquet and hub datasets.
A malformed record is yielded as a `RowError` so that the caller decides to stop or skip.
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from admap.errors import InputError, RowError

logger = logging.getLogger(__name__)

Record = dict[str, Any]
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


def _suffix(path: Path) -> str:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    return suffixes[-1].lower() if suffixes else ""


def _open_text(path: Path):
    # utf-8-sig: a byte-order mark some editors write is not part of the first record.
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return path.open("r", encoding="utf-8-sig")


def _read_jsonl(path: Path) -> Iterator[tuple[int, Record | RowError]]:
    # Lines are decoded one by one, so that a line that is not UTF-8 is one bad row, located.
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if line_number == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield line_number, RowError("<line>", f"not UTF-8 text ({error.reason} at byte {error.start})")
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                yield line_number, RowError("<line>", f"malformed JSON ({error.msg} at column {error.colno})")
                continue
            if not isinstance(record, dict):
                yield line_number, RowError("<line>", f"expected a JSON object, got {type(record).__name__}")
                continue
            yield line_number, record


def _read_json(path: Path) -> Iterator[tuple[int, Record | RowError]]:
    with _open_text(path) as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as error:
            raise InputError(str(path), error.lineno, None, f"malformed JSON: {error.msg}") from None
    if not isinstance(data, list):
        raise InputError(
            str(path), None, None, "a .json file must hold a list of records (use .jsonl for one per line)"
        )
    for index, record in enumerate(data, start=1):
        if isinstance(record, dict):
            yield index, record
        else:
            yield index, RowError("<record>", f"expected an object, got {type(record).__name__}")


def _read_parquet(path: Path) -> Iterator[tuple[int, Record | RowError]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise InputError(str(path), None, None, f"not a readable Parquet file ({error})") from None
    index = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for record in batch.to_pylist():
            index += 1
            yield index, record


def _read_csv(path: Path) -> Iterator[tuple[int, Record | RowError]]:
    import csv

    # A CSV record can span lines (a quoted field with line breaks), so a record is numbered by the line
    # it starts on, which the csv module's line_num gives. Cells stay strings: an empty cell is "", and
    # reported as empty, not read as a missing value. strict: a stray quote makes a malformed record
    # rather than text silently joined.
    opener = gzip.open if path.suffix == ".gz" else open
    header = None
    # Responses can be longer than the csv module's default field limit (128 KiB); the limit is
    # process-wide, so it is restored when the file is done.
    field_limit = csv.field_size_limit(2**31 - 1)
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, strict=True)
            while True:
                start = reader.line_num + 1
                try:
                    fields = next(reader)
                except StopIteration:
                    break
                except csv.Error as error:
                    # A quote never closed runs to the end of the file: no record after it can be read.
                    if "unexpected end of data" in str(error):
                        raise InputError(str(path), start, None, f"malformed CSV ({error})", row_name="line") from None
                    yield start, RowError("<line>", f"malformed CSV ({error})")
                    continue
                if len(fields) <= 1 and not "".join(fields).strip():
                    continue  # a blank line, skipped as in JSONL
                if header is None:
                    header = fields
                    repeated = sorted({name for name in header if header.count(name) > 1})
                    if repeated:
                        raise InputError(
                            str(path), start, None, f"the header names {repeated} more than once", row_name="line"
                        )
                elif len(fields) != len(header):
                    yield start, RowError("<line>", f"has {len(fields)} fields where the header has {len(header)}")
                else:
                    yield start, dict(zip(header, fields))
    finally:
        csv.field_size_limit(field_limit)
    if header is None:
        raise InputError(str(path), None, None, "holds no records (empty file, not even a header line)")


def _read_hub(name: str, split: str | None) -> Iterator[tuple[int, Record | RowError]]:
    import datasets

    try:
        dataset = datasets.load_dataset(name, split=split or "train")
    except Exception as error:  # datasets raises many types for offline, missing and gated datasets
        raise InputError(
            name,
            None,
            None,
            f"not a local file, and loading it from the Hugging Face hub failed ({type(error).__name__}: {error})",
        ) from error
    for index, record in enumerate(dataset, start=1):
        yield index, dict(record)


def _undecodable_as_input_error(
    source: str, records: Iterator[tuple[int, Record | RowError]]
) -> Iterator[tuple[int, Record | RowError]]:
    last_row = 0
    try:
        for last_row, record in records:
            yield last_row, record
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise InputError(
            source,
            None,
            None,
            f"unreadable after {row_name(source)} {last_row} ({type(error).__name__}: {error}); is it UTF-8 text?",
        ) from None


def row_name(source: str) -> str:
    """What a row number of ``source`` is called in messages: "line" for CSV, where it is the line a
    record starts on, "row" for the others (a JSONL row is its line)."""
    return "line" if _suffix(Path(source)) == ".csv" and Path(source).exists() else "row"


def read_records(source: str, *, split: str | None = None) -> Iterator[tuple[int, Record | RowError]]:
    """Yield ``(row_number, record)`` from a local file or a hub dataset id."""
    path = Path(source)
    if path.exists():
        readers = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet, ".csv": _read_csv}
        reader = readers.get(_suffix(path))
        if reader is None:
            raise InputError(
                source, None, None, f"unknown file type; expected one of {', '.join(LOCAL_SUFFIXES)} (optionally .gz)"
            )
        logger.info("reading %s", source)
        return _undecodable_as_input_error(source, reader(path))
    if _suffix(path) in LOCAL_SUFFIXES:
        raise InputError(source, None, None, "file not found")
    logger.info("loading %s (split %s) from the Hugging Face hub", source, split or "train")
    return _read_hub(source, split)
