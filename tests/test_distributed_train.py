"""DPO in two processes on the CPU (torchrun, gloo), against the same run in one process.

Every process trains; the main process alone selects and writes the run's files; the pair margins
are scored in shards and gathered, each pair exactly once per epoch; with the global batch held
equal (`train.global_batch_size`: accumulation 2 on one process, 1 on two) the trained weights and
the margins match the one-process run's."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from admap_experiments.random_policy import write_random_policy
from admap_experiments.weights import checkpoint_weights
from tests.runs import map_without_models, topic_rows

REPO = Path(__file__).resolve().parents[1]
TOPICS = ["tea", "rain", "maps", "bread", "tides", "chess", "clocks", "bees", "glass", "salt", "kites", "moss"]


def _rows():
    return topic_rows(TOPICS)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(config: dict, folder: Path, *, processes: int) -> Path:
    """``python -m admap_experiments.run`` on ``config`` (under accelerate for several processes); returns
    the run directory. Every file opened for writing is logged per process under ``folder/audit``."""
    folder.mkdir()
    (folder / "audit").mkdir()
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config | {"out": str(folder / "experiments")}))
    command = [sys.executable, "-m", "admap_experiments.run", str(path), "--quiet"]
    if processes > 1:
        # torchrun, as `accelerate launch --multi_gpu` does on GPUs: accelerate's own launcher starts
        # CPU processes only through MPI.
        launch = ["torch.distributed.run", "--nproc_per_node", str(processes), "--master_port", str(_free_port())]
        command = [sys.executable, "-m", *launch, "-m", "admap_experiments.run", str(path), "--quiet"]
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "file_events"), str(REPO)]),
        "ADMAP_FILE_EVENTS_LOG": str(folder / "audit"),
        "ADMAP_FILE_EVENTS_UNDER": str(folder / "experiments"),
        "OMP_NUM_THREADS": "1",
    }
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-4000:]
    (run_dir,) = (folder / "experiments" / "distributed" / "runs").iterdir()
    return run_dir


def _writers(folder: Path) -> dict[str, set[str]]:
    """Run-directory file → the ranks that wrote or renamed it into place."""
    writers: dict[str, set[str]] = {}
    for log in (folder / "audit").glob("*.jsonl"):
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if entry["event"] in ("write", "rename"):
                writers.setdefault(entry["path"], set()).add(entry["rank"])
    return writers


@pytest.mark.slow
def test_two_processes_write_once_score_every_pair_once_and_match_one_process(tmp_path):
    rows = _rows()
    map_run = map_without_models(rows, tmp_path)
    texts = [r["instruction"] for r in rows] + [r[k] for r in rows for k in ("chosen", "rejected", "proxy")]
    policy = write_random_policy(tmp_path / "policy", texts, hidden_size=32, n_layers=2, n_heads=4)
    config = {
        "name": "distributed",
        "map_run": str(map_run),
        "selection": {"strategy": "full"},
        "stages": ["select", "train"],
        "train": {
            "model": str(policy),
            "device": "cpu",
            "global_batch_size": 4,
            "dpo": {
                "max_steps": 3,
                "per_device_train_batch_size": 2,
                "per_device_eval_batch_size": 3,
                "max_length": 64,
                "learning_rate": 1e-3,
                "seed": 0,
            },
        },
        "wandb": {"mode": "disabled"},
    }
    one = _run(config, tmp_path / "one", processes=1)
    two = _run(config, tmp_path / "two", processes=2)

    writers = _writers(tmp_path / "two")
    for name in ("config.yaml", "selection.json", "pairs.jsonl", "pair_margins.parquet", "train.json"):
        assert writers[str(two / name)] == {"0"}, name
    assert all(ranks == {"0"} for ranks in writers.values()), writers

    pairs = pd.read_parquet(two / "pairs.parquet")
    margins = {run: pd.read_parquet(run / "pair_margins.parquet") for run in (one, two)}
    keys = ["instruction_id", "chosen_id", "rejected_id"]
    assert len(margins[two]) == len(pairs) == len(margins[two][keys].drop_duplicates())
    assert set(margins[two]["instruction_id"]) == set(pairs["instruction_id"])
    merged = margins[one].merge(margins[two], on=[*keys, "epoch"], suffixes=("_one", "_two"))
    assert len(merged) == len(pairs)
    assert (merged["margin_one"] - merged["margin_two"]).abs().max() < 1e-4
    assert merged["margin_one"].abs().max() > 1e-3  # the policy moved: the comparison is not of zeros

    metrics = {run: json.loads((run / "train.json").read_text()) for run in (one, two)}
    assert metrics[one]["train_steps"] == metrics[two]["train_steps"] == 3
    assert abs(metrics[one]["train_loss"] - metrics[two]["train_loss"]) < 1e-4
    weights = {run: checkpoint_weights(run / "model") for run in (one, two)}
    for name, tensor in weights[one].items():
        torch.testing.assert_close(weights[two][name], tensor, atol=1e-5, rtol=1e-4)
