"""Upload a run's export (`admap.hub.export`) to a dataset repo on the Hugging Face hub.

The token is ``huggingface_hub``'s: the ``token`` argument, else ``HF_TOKEN``, else the one
``hf auth login`` stored; admap never writes or logs it. The hub is ``endpoint``, else ``HF_ENDPOINT``.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from admap.config import option
from admap.hub.export import DATA, DEFAULT_SHARD_BYTES, FIGURE, export_run

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo

logger = logging.getLogger(__name__)

# Files of an earlier push that this one replaces: a subset now empty, or fewer shards, leaves no stale
# Parquet file for the configuration's glob to pick up; a run without a figure leaves no old figure.
REPLACED_PATTERNS = [f"{DATA}/*", FIGURE]
DEFAULT_BRANCH = "main"


def check_repo_id(repo_id: str) -> None:
    if len(repo_id.split("/")) != 2 or not all(repo_id.split("/")):
        raise ValueError(f"a hub repo id is owner/name, got {repo_id!r}")


def push_run(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    license: str | None = None,
    folder: str | Path | None = None,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    endpoint: str | None = None,
) -> CommitInfo:
    """Export the run in ``run_dir`` (into ``folder``, kept, or a temporary folder) and commit it to the
    dataset repo ``repo_id``, created if new (``private`` then; an existing public repo is refused
    rather than published to when ``private`` is asked). ``revision``: the branch to commit to, created
    from the default branch when new. The repo's card and ``data/`` are replaced. Returns the commit:
    ``commit_url``, ``oid`` (its sha) and ``repo_url``."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    with tempfile.TemporaryDirectory(prefix="admap-push-") as scratch:
        export = export_run(
            run_dir,
            folder if folder is not None else Path(scratch) / "export",
            repo_id=repo_id,
            license=license,
            shard_bytes=shard_bytes,
        )
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if private and not api.dataset_info(repo_id).private:
            raise ValueError(
                f"{repo_id} exists and is public: --private makes new repos private only; "
                "change its visibility on the hub, or push to another repo"
            )
        if revision is not None and revision != DEFAULT_BRANCH:
            api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=export.folder,
            repo_type="dataset",
            revision=revision,
            commit_message=commit_message or f"admap run {export.run_id}",
            delete_patterns=REPLACED_PATTERNS,
        )
    logger.info("pushed run %s to %s (commit %s)", export.run_id, commit.repo_url, commit.oid)
    return commit


@dataclass
class PushWhenWritten:
    """`admap map`'s and `admap select`'s ``--push-to-hub``: the run published once it is written, as
    `admap push RUN REPO` publishes it (`admap push` has the other options: branch, licence, message)."""

    push_to_hub: str | None = option(
        None, "once the run is written, publish it to this hub dataset repo (owner/name) as `admap push` does"
    )
    push_private: bool = option(False, "with --push-to-hub: create the repo private")

    def __post_init__(self) -> None:
        if self.push_to_hub is not None:
            check_repo_id(self.push_to_hub)
        elif self.push_private:
            raise ValueError("--push-private is an option of --push-to-hub, which is not given")

    def push(self, run_dir: str | Path) -> CommitInfo | None:
        """Publish ``run_dir`` if asked; the commit, or None."""
        if self.push_to_hub is None:
            return None
        return push_run(run_dir, self.push_to_hub, private=self.push_private)
