"""Which dataset a command reads, and how: shared by every command that loads one."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from admap.config import option
from admap.load import LoadOptions, PreferenceData, load_preferences

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
        return Path(self.dataset).name.split(".")[0].replace("/", "_")

    def read(self, *, progress: bool = True) -> PreferenceData:
        return load_preferences(
            self.path,
            format=self.format,
            options=self.load,
            skip_invalid=self.skip_invalid,
            split=self.split,
            limit=self.limit,
            progress=progress,
        )
