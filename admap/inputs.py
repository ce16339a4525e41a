"""Which dataset a command reads, and how: shared by every command that loads one."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from admap.config import option
from admap.load import LoadOptions, PreferenceData, load_preferences
from admap.load.readers import HubDataset, is_hub_id, pin_commit

DEMO_DATASET = "demo"


def demo_dataset_path() -> str:
    return str(resources.files("admap") / "demo" / "demo_preferences.jsonl")


@dataclass
class InputOptions:
    dataset: str = option(
        DEMO_DATASET,
        "a file (.jsonl, .json, .parquet, .csv, optionally .gz) or a Hugging Face dataset id; "
        "'demo' reads the small demo set that ships with admap",
        positional=True,
    )
    format: str = option("auto", "input format: auto, ultrafeedback, preference, alpaca, hh_rlhf, columns")
    split: str | None = option(None, "dataset split for hub datasets (None reads 'train')")
    dataset_config: str | None = option(
        None, "hub datasets: the configuration to read (load_dataset's name; the dataset card lists them)"
    )
    data_dir: str | None = option(
        None, "hub datasets: a folder of the repository to read (Anthropic/hh-rlhf: harmless-base, helpful-base)"
    )
    data_files: list[str] | None = option(None, "hub datasets: the repository's files to read (glob patterns)")
    revision: str | None = option(
        None, "hub datasets: branch, tag or commit to read (default: the main branch); the commit read is recorded"
    )
    streaming: bool | None = option(
        None,
        "hub datasets: read records as they download instead of downloading the split first "
        "(default: with --limit, so that only the files holding the records read are downloaded)",
    )
    limit: int | None = option(None, "read only the first N records")
    skip_invalid: bool = option(False, "list bad rows in the summary and go on, instead of stopping at the first")
    load: LoadOptions = option(LoadOptions(), "how to read the dataset's fields")

    @property
    def path(self) -> str:
        return demo_dataset_path() if self.dataset == DEMO_DATASET else self.dataset

    @property
    def label(self) -> str:
        return "admap demo set" if self.dataset == DEMO_DATASET else Path(self.dataset).name

    @property
    def stem(self) -> str:
        """A folder name for this dataset's outputs."""
        if self.dataset == DEMO_DATASET:
            return DEMO_DATASET
        stem = Path(self.dataset).name.split(".")[0].replace("/", "_")
        # Two parts of one hub dataset get two folders, not one replacing the other.
        part = self.dataset_config or self.data_dir
        return f"{stem}-{part.strip('/').replace('/', '_')}" if part else stem

    def hub_dataset(self) -> HubDataset | None:
        """What to read of the hub dataset ``dataset`` names; None for a local file or the demo set, for
        which the hub options are refused."""
        given = {
            "--dataset-config": self.dataset_config,
            "--data-dir": self.data_dir,
            "--data-files": self.data_files,
            "--revision": self.revision,
            "--streaming": self.streaming,
        }
        if self.dataset == DEMO_DATASET or not is_hub_id(self.path):
            named = [flag for flag, value in given.items() if value is not None]
            if named:
                raise ValueError(f"{', '.join(named)} read part of a hub dataset; {self.dataset} is a local file")
            return None
        return HubDataset(
            self.dataset,
            split=self.split or "train",
            name=self.dataset_config,
            data_dir=self.data_dir,
            data_files=tuple(self.data_files or ()),
            revision=self.revision,
            streaming=self.streaming if self.streaming is not None else self.limit is not None,
        )

    def read(self, *, progress: bool = True, table: Any = None) -> PreferenceData:
        """The dataset, read with these options; ``table`` (a DataFrame or `datasets` Dataset held in
        memory, the Python API's) is read in place of the file that ``dataset`` names. A hub dataset is
        read at the commit its revision points to now, which the report records."""
        hub = self.hub_dataset() if table is None else None
        return load_preferences(
            self.path if table is None else table,
            format=self.format,
            options=self.load,
            skip_invalid=self.skip_invalid,
            split=self.split,
            limit=self.limit,
            hub=pin_commit(hub) if hub is not None else None,
            progress=progress,
        )
