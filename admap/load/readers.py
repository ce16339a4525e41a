"""Read raw records, each with its row number, from local files or the Hugging Face hub.

Row numbers are what a person finds in the file: the line for JSONL, the line a record starts on
for CSV (the header is line 1), the 1-based record index for JSON arrays, Parquet and hub datasets
(of the split read, across its files).
A malformed record is yielded as a `RowError` so that the caller decides to stop or skip.
"""

from __future__ import annotations

import gzip
import itertools
import json
import logging
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from admap.errors import InputError, RowError

logger = logging.getLogger(__name__)

Record = dict[str, Any]
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line_number, record)`` of each non-blank line; a line that is not a JSON object is an `InputError`."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise InputError(str(path), None, None, f"not UTF-8 text ({error})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(str(path), number, None, f"not JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise InputError(str(path), number, None, f"a JSON {type(record).__name__}, not an object")
        yield number, record


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


@dataclass(frozen=True)
class HubDataset:
    """A dataset on the Hugging Face hub and the part of it to read: `datasets.load_dataset`'s arguments.

    ``name`` is the dataset's configuration (``load_dataset``'s ``name``); ``data_dir`` a folder of the
    repository (Anthropic/hh-rlhf's ``harmless-base`` is a folder, not a configuration); ``data_files``
    glob patterns of files in it. ``commit`` is the commit ``revision`` (a branch, tag or commit; the
    default branch when None) resolved to, and the one read, when the hub could be asked (`pin_commit`);
    ``license`` is the dataset card's. ``streaming`` reads records as they download, so that reading
    the first records downloads only the files (Parquet row groups) that hold them.
    """

    repo_id: str
    split: str = "train"
    name: str | None = None
    data_dir: str | None = None
    data_files: tuple[str, ...] = ()
    revision: str | None = None
    streaming: bool = False
    commit: str | None = None
    license: str | list[str] | None = None

    def load_arguments(self) -> dict[str, Any]:
        """`datasets.load_dataset`'s keyword arguments, those set (the library's defaults stand for the
        others): the pinned commit rather than the revision asked."""
        arguments = {
            "name": self.name,
            "data_dir": self.data_dir,
            "data_files": list(self.data_files) or None,
            "split": self.split,
            "revision": self.commit or self.revision,
            "streaming": self.streaming or None,
        }
        return {key: value for key, value in arguments.items() if value is not None}

    def report(self) -> dict[str, Any]:
        """What summary.json records of where the records came from."""
        report = asdict(self)
        report["data_files"] = list(self.data_files)
        return report


def is_hub_id(source: str) -> bool:
    """Whether `read_records` reads ``source`` from the hub: no such local path, and no local file suffix."""
    path = Path(source)
    return not path.exists() and _suffix(path) not in LOCAL_SUFFIXES


def pin_commit(dataset: HubDataset) -> HubDataset:
    """``dataset`` with the commit its revision points to now, and its card's license, so that the run
    reads that commit and records it. Offline, or with the hub out of reach, it is returned as it is
    (`datasets` then reads its cache, or fails); a dataset or revision the hub does not have is an
    `InputError`."""
    from huggingface_hub import HfApi, is_offline_mode
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    if is_offline_mode():
        logger.info("%s: offline, so the commit read is not recorded", dataset.repo_id)
        return dataset
    try:
        info = HfApi().dataset_info(dataset.repo_id, revision=dataset.revision)
    except RevisionNotFoundError:
        raise InputError(dataset.repo_id, None, None, f"the hub dataset has no revision {dataset.revision!r}") from None
    except RepositoryNotFoundError:
        raise InputError(
            dataset.repo_id,
            None,
            None,
            "not a local file, and no dataset of that name on the Hugging Face hub that this login can read "
            "(a private or gated dataset needs `hf auth login` or HF_TOKEN)",
        ) from None
    except Exception as error:  # an unreachable hub raises the HTTP client's own errors (httpx2's, say)
        logger.warning(
            "%s: the hub could not be asked which commit is read (%s: %s)", dataset.repo_id, type(error).__name__, error
        )
        return dataset
    license = info.card_data.get("license") if info.card_data is not None else None
    logger.info("%s: reading commit %s", dataset.repo_id, info.sha)
    return replace(dataset, commit=info.sha, license=license)


def _read_hub(dataset: HubDataset, limit: int | None) -> Iterator[tuple[int, Record | RowError]]:
    import datasets

    source = dataset.repo_id
    try:
        records = datasets.load_dataset(source, **dataset.load_arguments())
    except Exception as error:  # datasets raises many types for offline, missing and gated datasets
        raise InputError(
            source,
            None,
            None,
            f"not a local file, and loading it from the Hugging Face hub failed ({type(error).__name__}: {error})",
        ) from error
    if limit is not None:
        # Stop at the limit here rather than one record later in the loader: a record past the limit can
        # start another file's download when streaming.
        records = itertools.islice(records, limit)
    index = 0
    try:
        for index, record in enumerate(records, start=1):
            yield index, dict(record)
    except Exception as error:  # streaming reads the files as it goes: network and file errors come here
        raise InputError(
            source,
            None,
            None,
            f"reading from the Hugging Face hub failed after row {index} ({type(error).__name__}: {error})",
        ) from error


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


def read_records(
    source: str, *, split: str | None = None, hub: HubDataset | None = None, limit: int | None = None
) -> Iterator[tuple[int, Record | RowError]]:
    """Yield ``(row_number, record)`` from a local file or a hub dataset id; ``hub`` says which part of
    a hub dataset to read (by default its ``split``, or ``train``), of which no more than ``limit``
    records are read (a local file's reader is stopped by its caller)."""
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
    hub = hub or HubDataset(source, split=split or "train")
    logger.info("loading %s (split %s) from the Hugging Face hub", source, hub.split)
    return _read_hub(hub, limit)
