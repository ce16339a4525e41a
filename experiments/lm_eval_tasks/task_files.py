"""Loads a task's data files from this folder, wherever lm-eval is run from (the YAML's ``custom_dataset``)."""

from pathlib import Path

import datasets

TASK_DIR = Path(__file__).resolve().parent


def load_json_beside(data_files: dict[str, str], **metadata) -> datasets.DatasetDict:
    """The YAML's ``dataset_kwargs.data_files`` (split: file name), read from this folder as JSON lines.
    lm-eval also passes the task's ``metadata`` (its version), which says nothing about the files."""
    return datasets.load_dataset("json", data_files={split: str(TASK_DIR / name) for split, name in data_files.items()})
