"""`admap push`: a run's DPO subsets, map and figure as a dataset on the Hugging Face hub (`admap.hub`)."""

from __future__ import annotations

from dataclasses import dataclass

from admap.commands import Command
from admap.config import option
from admap.hub import export_run, push_run
from admap.hub.export import DEFAULT_SHARD_BYTES
from admap.hub.upload import check_repo_id

MEGABYTE = 2**20


@dataclass
class PushConfig:
    """`admap push`: publish a run as a hub dataset: one configuration per DPO subset (Parquet, TRL's columns),
    the map as configuration `map`, the figure, and a dataset card written from the run's summary. The
    token is HF_TOKEN's or `hf auth login`'s."""

    run_dir: str = option(help="a run directory written by `admap map`", positional=True)
    repo_id: str | None = option(
        None, "the hub dataset repo to create or update (owner/name); without it, --out alone", positional=True
    )
    out: str | None = option(
        None, "write the folder an upload sends here (without REPO_ID nothing is uploaded: works offline)"
    )
    private: bool = option(False, "create the repo private (an existing public repo is refused, not published to)")
    revision: str | None = option(None, "branch to commit to, created from main when new (default: main)")
    commit_message: str | None = option(None, "the commit's message (default: names the run)")
    license: str | None = option(
        None, "the card's license id (default: the source dataset's, where its hub card names one; else 'other')"
    )
    shard_mb: int = option(DEFAULT_SHARD_BYTES // MEGABYTE, "megabytes of a subset's JSONL per Parquet file")

    def __post_init__(self) -> None:
        if self.repo_id is None and self.out is None:
            raise ValueError("admap push needs a REPO_ID to upload to, or --out FOLDER to write the export into")
        if self.repo_id is not None:
            check_repo_id(self.repo_id)
        if self.shard_mb < 1:
            raise ValueError(f"shard_mb must be >= 1, got {self.shard_mb}")


def run_push(config: PushConfig, *, progress: bool = True, command: str | None = None) -> str:
    """Upload the run (the commit's URL is returned), or with --out alone write its export (the folder)."""
    options = {"license": config.license, "shard_bytes": config.shard_mb * MEGABYTE}
    if config.repo_id is None:
        return str(export_run(config.run_dir, config.out, **options).folder)
    commit = push_run(
        config.run_dir,
        config.repo_id,
        private=config.private,
        revision=config.revision,
        commit_message=config.commit_message,
        folder=config.out,
        **options,
    )
    return commit.commit_url


COMMAND = Command("push", PushConfig, run_push, "publish a run's DPO subsets, map and figure as a hub dataset")
