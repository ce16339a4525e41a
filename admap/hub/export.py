"""The folder a hub upload of a run sends, built offline:

    README.md                                    the dataset card (`admap.hub.card`)
    map.png                                      the run's figure, when it has one
    data/<subset>/train-00000-of-0000N.parquet   one configuration per pairs/<subset>.jsonl holding pairs
    data/map/train-00000-of-00001.parquet        map.parquet, as the run wrote it

A subset's Parquet rows are its JSONL records, column for column (``prompt``, ``chosen``, ``rejected``
as TRL reads them, the ids, and whatever else the records hold, such as scores); every subset of a run
gets the same columns, so that configurations can be concatenated. A subset without pairs gets no
configuration, only a line in the card: `datasets` cannot load a split that has no rows.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from admap.hub.card import dataset_card
from admap.run_folder import MapRun, read_summary, writing_into

logger = logging.getLogger(__name__)

SPLIT = "train"
MAP_CONFIG = "map"
DEFAULT_CONFIG = "high_mean"
CARD = "README.md"
FIGURE = "map.png"
DATA = "data"
# What an export folder holds; an existing folder holding anything else is not replaced.
EXPORT_NAMES = frozenset({CARD, FIGURE, DATA})
# A configuration's Parquet files each hold at most this much of its JSONL: well under the sizes the hub
# and `datasets` handle per file, and small enough that a streamed read of the first rows fetches little.
DEFAULT_SHARD_BYTES = 256 * 2**20
# Records converted at a time; each batch is one Parquet row group, the unit a streamed read fetches.
RECORDS_PER_BATCH = 2_000


@dataclass(frozen=True)
class ExportedConfig:
    """One subset of the run (or its map): where it came from, its rows and the Parquet files holding
    them, relative to the export folder (none for a subset without rows, which gets no configuration)."""

    name: str
    source: str
    rows: int
    instructions: int
    files: tuple[str, ...]

    @property
    def data_files(self) -> str:
        """The glob the card gives `datasets` for this configuration's one split."""
        return f"{DATA}/{self.name}/{SPLIT}-*.parquet"


@dataclass(frozen=True)
class RunExport:
    run_id: str | None
    folder: Path
    configs: tuple[ExportedConfig, ...]
    default_config: str | None


@dataclass(frozen=True)
class _SubsetScan:
    schema: pa.Schema | None
    rows: int
    instructions: int
    jsonl_bytes: int


def export_run(
    run_dir: str | Path,
    folder: str | Path,
    *,
    repo_id: str | None = None,
    license: str | None = None,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> RunExport:
    """Write the hub dataset of the run in ``run_dir`` into ``folder`` (replaced whole if it holds an
    earlier export; refused if it holds anything else or lies inside the run). ``repo_id`` goes into the
    card's loading example; ``license`` overrides the one the source dataset's hub card named."""
    if shard_bytes < 1:
        raise ValueError(f"shard_bytes must be >= 1, got {shard_bytes}")
    run = MapRun.open(run_dir)
    folder = Path(folder)
    _check_export_folder(folder, run.path)
    subsets = subset_files(run)
    scans = {name: _scan_subset(path) for name, path in subsets.items()}
    schema = _shared_schema([scan.schema for scan in scans.values() if scan.schema is not None])
    configs = []
    with writing_into(run.path, folder) as staging:
        for name, path in subsets.items():
            scan = scans[name]
            files = _write_subset(path, staging, name, schema, scan, shard_bytes) if scan.rows else ()
            configs.append(ExportedConfig(name, f"pairs/{path.name}", scan.rows, scan.instructions, files))
        configs.append(_copy_map(run, staging))
        has_figure = (run.path / FIGURE).is_file()
        if has_figure:
            shutil.copyfile(run.path / FIGURE, staging / FIGURE)
        default = default_config(configs)
        card = dataset_card(
            run.summary, configs, default_config=default, repo_id=repo_id, license=license, figure=has_figure
        )
        (staging / CARD).write_text(card, encoding="utf-8")
        if read_summary(run.path).get("run_id") != run.run_id:
            raise RuntimeError(f"{run.path} was replaced by another run while it was exported: export it again")
    logger.info("exported run %s to %s (%d configurations)", run.run_id, folder, sum(bool(c.files) for c in configs))
    return RunExport(run.run_id, folder, tuple(configs), default)


def subset_files(run: MapRun) -> dict[str, Path]:
    """The run's ``pairs/*.jsonl`` by subset name: `admap map`'s in the order its summary lists them, then
    those `admap select` added, by name."""
    found = {path.stem: path for path in sorted((run.path / "pairs").glob("*.jsonl"))}
    if MAP_CONFIG in found:
        raise ValueError(f"{found[MAP_CONFIG]}: a subset named {MAP_CONFIG!r} would hide the map's configuration")
    mapped = [name for name in run.summary.get("pairs", {}) if name in found]
    return {name: found[name] for name in [*mapped, *sorted(set(found) - set(mapped))]}


def default_config(configs: list[ExportedConfig]) -> str | None:
    """The configuration `load_dataset(repo)` reads without a name: high_mean (the paper's subset), else the
    first subset with pairs; None when no subset has any."""
    with_rows = [c.name for c in configs if c.files and c.name != MAP_CONFIG]
    if DEFAULT_CONFIG in with_rows:
        return DEFAULT_CONFIG
    return with_rows[0] if with_rows else None


def _check_export_folder(folder: Path, run_dir: Path) -> None:
    if folder.resolve().is_relative_to(run_dir.resolve()):
        raise ValueError(
            f"{folder} lies inside the run {run_dir}, whose folder `admap map` replaces whole: export elsewhere"
        )
    if folder.exists():
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder} exists and is not a folder: choose another --out")
        foreign = sorted(p.name for p in folder.iterdir() if p.name not in EXPORT_NAMES)
        if foreign:
            raise FileExistsError(
                f"{folder} holds files that are not an admap export's ({', '.join(foreign[:5])}); an export "
                "replaces its folder whole: choose another --out"
            )


def _record_batches(path: Path) -> Iterator[list[dict]]:
    """The JSONL records of ``path``, ``RECORDS_PER_BATCH`` at a time; a line that is not a JSON object is
    an error naming the file and the line."""
    batch: list[dict] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {line_number}: malformed JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}, line {line_number}: expected a JSON object")
            batch.append(record)
            if len(batch) == RECORDS_PER_BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def _batch_table(batch: list[dict], schema: pa.Schema | None = None) -> pa.Table:
    # pa.array infers one struct type from every record's keys (Table.from_pylist reads the first record's
    # alone), so that a field some records lack is a column, null where it is missing.
    struct_type = pa.struct(list(schema)) if schema is not None else None
    return pa.Table.from_struct_array(pa.array(batch, type=struct_type))


def _scan_subset(path: Path) -> _SubsetScan:
    """The columns, rows and instructions of one subset file, read once before it is written."""
    schemas, rows, instruction_ids = [], 0, set()
    for batch in _record_batches(path):
        schemas.append(_batch_table(batch).schema)
        rows += len(batch)
        instruction_ids.update(record.get("instruction_id") for record in batch)
    instruction_ids.discard(None)
    schema = _shared_schema(schemas) if schemas else None
    return _SubsetScan(schema, rows, len(instruction_ids), path.stat().st_size)


def _shared_schema(schemas: list[pa.Schema]) -> pa.Schema | None:
    """One schema for them all: a column null in one batch takes its type from the others."""
    return pa.unify_schemas(schemas, promote_options="permissive") if schemas else None


def _write_subset(
    path: Path, staging: Path, name: str, schema: pa.Schema, scan: _SubsetScan, shard_bytes: int
) -> tuple[str, ...]:
    """Write one subset as ``data/<name>/train-0000i-of-0000n.parquet``; returns the files' relative paths."""
    shards = max(1, math.ceil(scan.jsonl_bytes / shard_bytes))
    rows_per_shard = math.ceil(scan.rows / shards)
    shards = math.ceil(scan.rows / rows_per_shard)  # a remainder of zero rows is no file
    names = [f"{DATA}/{name}/{SPLIT}-{index:05d}-of-{shards:05d}.parquet" for index in range(shards)]
    (staging / DATA / name).mkdir(parents=True)
    writer, shard, rows_in_shard = None, -1, rows_per_shard
    try:
        for batch in _record_batches(path):
            table = _batch_table(batch, schema)
            while table.num_rows:
                if rows_in_shard == rows_per_shard:
                    if writer is not None:
                        writer.close()
                    shard += 1
                    writer, rows_in_shard = pq.ParquetWriter(staging / names[shard], schema), 0
                taken = table.slice(0, rows_per_shard - rows_in_shard)
                writer.write_table(taken)
                rows_in_shard += taken.num_rows
                table = table.slice(taken.num_rows)
    finally:
        if writer is not None:
            writer.close()
    return tuple(names)


def _copy_map(run: MapRun, staging: Path) -> ExportedConfig:
    relative = f"{DATA}/{MAP_CONFIG}/{SPLIT}-00000-of-00001.parquet"
    (staging / DATA / MAP_CONFIG).mkdir(parents=True)
    shutil.copyfile(run.path / "map.parquet", staging / relative)
    rows = pq.ParquetFile(staging / relative).metadata.num_rows
    return ExportedConfig(MAP_CONFIG, "map.parquet", rows, rows, (relative,))
