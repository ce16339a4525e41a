"""One experiment run end to end on the offline default policy: select, DPO, answer, judge, W&B."""

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.runs import map_without_models, topic_rows

pytest.importorskip("trl")
pytest.importorskip("wandb")

TOPICS = ["tea", "rain", "maps", "bread", "tides", "chess", "clocks", "bees", "glass"]


def _rows():
    return topic_rows(TOPICS)


@pytest.mark.slow
def test_a_run_trains_evaluates_logs_and_resumes(tmp_path, monkeypatch, mt_bench_dir):
    import torch
    from safetensors.torch import load_file

    from admap.config import build
    from admap_experiments.config import ExperimentConfig
    from admap_experiments.run import run_experiment
    from admap_experiments.train import policy_checkpoint

    monkeypatch.setenv("WANDB_SILENT", "true")
    map_run = map_without_models(_rows(), tmp_path)
    config = build(
        ExperimentConfig,
        {
            "name": "smoke",
            "out": str(tmp_path / "experiments"),
            "map_run": str(map_run),
            "selection": {"strategy": "high_mean"},
            "train": {
                "dpo": {
                    "max_steps": 2,
                    "per_device_train_batch_size": 2,
                    "max_length": 64,
                    "learning_rate": 1e-4,
                    "gradient_checkpointing": False,
                }
            },
            "evaluation": {
                "mt_bench": str(mt_bench_dir),
                "mt_bench_questions": 1,
                "answer": {"max_new_tokens": 8, "system_prompt": ""},
                "judge_generation": {"generator_model": "smollm2"},
            },
            "wandb": {"mode": "offline", "project": "admap-test"},
        },
    )
    row = run_experiment(config, progress=False, command="pytest")

    run_dir = config.experiment_dir / "runs" / config.run_id()
    selection = json.loads((run_dir / "selection.json").read_text())
    assert row["n_instructions"] == selection["n_instructions"] == 3
    assert row["train_steps"] == 2 and row["train_loss"] > 0

    trained = load_file(run_dir / "model" / "model.safetensors")
    base = load_file(Path(policy_checkpoint("smollm2")) / "model.safetensors")
    assert any(not torch.equal(trained[name], base[name]) for name in base if name in trained)

    margins = pd.read_parquet(run_dir / "pair_margins.parquet")
    assert len(margins) == row["n_pairs"] and margins["margin"].notna().all()
    assert set(margins["instruction_id"]) == set(selection["instruction_ids"])

    assert row["mt_bench_judged"] == 2 and row["mt_bench_unparsed"] == 0
    assert 1 <= row["mt_bench_score"] <= 10
    judgments = list((run_dir / "eval" / "mt_bench" / "model_judgment").glob("*_single.jsonl"))
    assert len(judgments) == 1 and len(judgments[0].read_text().splitlines()) == 2

    # Training metrics (streamed by TRL) and the evaluation summary reached the offline W&B run.
    (wandb_file,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    logged = wandb_file.read_bytes()
    for key in (b"train/loss", b"train/rewards/margins", b"mt_bench_score", b"n_pairs"):
        assert key in logged, key
    assert list((run_dir / "wandb").glob("offline-run-*/files/media/table/results_*.table.json"))
    assert list((run_dir / "wandb").glob("offline-run-*/files/media/table/pair_margins_*.table.json"))

    results = pd.read_csv(config.experiment_dir / "results.csv")
    assert results["run_id"].tolist() == [config.run_id()]

    # A rerun resumes: the trained model is kept, not retrained, and the row is replaced, not added.
    weights = run_dir / "model" / "model.safetensors"
    written = weights.stat().st_mtime_ns
    again = run_experiment(config, progress=False, command="pytest")
    assert weights.stat().st_mtime_ns == written
    assert again["train_loss"] == row["train_loss"]
    assert len(pd.read_csv(config.experiment_dir / "results.csv")) == 1
