"""Held-out preference accuracy in an experiment run: instructions set aside before the map, never selected or
trained on, scored with the trained policy against the untrained one on real HH-RLHF pairs."""

import json

import pandas as pd
import pytest

pytest.importorskip("trl")

HH = "tests/data/hh_rlhf/harmless-base-test.jsonl.gz"


def _config(tmp_path, strategy: str):
    from admap.config import build
    from admap_experiments.config import ExperimentConfig

    return build(
        ExperimentConfig,
        {
            "name": "held-out",
            "out": str(tmp_path / "experiments"),
            "map": {"input": {"dataset": HH, "limit": 40}, "scorer": "annotation", "plot": False, "view": False},
            "held_out": {"fraction": 0.25, "seed": 3},
            "selection": {"strategy": strategy, "fraction": 0.2, "seed": 1},
            "train": {
                "pair_margins": False,
                "dpo": {
                    "max_steps": 1,
                    "per_device_train_batch_size": 2,
                    "max_length": 96,
                    "truncation_mode": "keep_end",
                    "learning_rate": 1e-4,
                    "gradient_checkpointing": False,
                },
            },
            "evaluation": {"preference_accuracy": {"batch_size": 4, "bootstrap": 300}},
            "stages": ["select", "train", "preference_accuracy"],
            "wandb": {"mode": "disabled"},
        },
    )


@pytest.mark.slow
def test_held_out_pairs_are_never_mapped_or_trained_and_score_the_policy(tmp_path):
    from admap.run_folder import MapRun
    from admap_experiments.run import ensure_map, held_out_dir, run_experiment

    config = _config(tmp_path, "high_mean")
    row = run_experiment(config, progress=False, command="pytest")

    held = json.loads((held_out_dir(config) / "held_out.json").read_text())
    assert held["n_instructions"] == held["n_pairs"] == 10  # a quarter of 40 conversations, one pair each
    held_ids = set(held["instruction_ids"])
    map_run = MapRun.open(ensure_map(config, progress=False))
    assert len(map_run.map_table()) == 30 and not held_ids & set(map_run.map_table()["instruction_id"])
    assert map_run.summary["dataset"]["notes"]["held_out_instructions"] == 10
    run_dir = config.experiment_dir / "runs" / config.run_id()
    selected = set(json.loads((run_dir / "selection.json").read_text())["instruction_ids"])
    assert len(selected) == 6 and not selected & held_ids

    # keep_end drops no pair: every held-out pair is scored.
    assert row["held_out_pairs"] == 10 and row["held_out_pairs_dropped"] == 0
    for name in ("preference_accuracy", "logprob_accuracy", "logprob_accuracy_per_token"):
        assert 0 <= row[f"{name}_low"] <= row[name] <= row[f"{name}_high"] <= 1
    outcomes = pd.read_parquet(run_dir / "eval" / "preference_accuracy" / "pairs.parquet")
    assert set(outcomes["instruction_id"]) == held_ids
    assert row["preference_accuracy"] == pytest.approx(outcomes["reward_correct"].mean())
    # One step at 1e-4 moves the policy: its implicit rewards are no longer all 0.
    assert (outcomes["reward_margin"] != 0).any()

    # Another strategy shares the held-out pairs and the untrained policy's log-probabilities.
    (reference_file,) = held_out_dir(config).glob("reference-*.parquet")
    written = reference_file.stat().st_mtime_ns
    other = _config(tmp_path, "random")
    again = run_experiment(other, progress=False, command="pytest")
    assert held_out_dir(other) == held_out_dir(config) and reference_file.stat().st_mtime_ns == written
    assert again["held_out_pairs"] == 10 and again["reference_logprob_accuracy"] == row["reference_logprob_accuracy"]


@pytest.mark.slow
def test_the_untrained_policy_scores_one_half_on_real_pairs(tmp_path):
    from admap.load import load_preferences
    from admap_experiments.evaluate.preference_accuracy import (
        PreferenceAccuracyOptions,
        evaluate_preference_accuracy,
        reference_table,
    )
    from admap_experiments.held_out import held_out_records
    from admap_experiments.train import policy_checkpoint

    records = held_out_records(load_preferences(HH, limit=12, progress=False))
    options = PreferenceAccuracyOptions(batch_size=4, bootstrap=200)
    truncation = {"max_length": 128, "truncation_mode": "keep_start"}
    base = policy_checkpoint("smollm2")
    reference = reference_table(
        base, records, options, **truncation, cache=tmp_path / "reference.parquet", device="cpu", progress=False
    )
    row = evaluate_preference_accuracy(
        base,
        reference,
        records,
        options,
        beta=0.1,
        **truncation,
        out_dir=tmp_path / "eval",
        device="cpu",
        progress=False,
    )
    # A policy equal to its reference has every implicit reward margin 0: each pair a tie, counted half.
    assert row["preference_accuracy"] == row["preference_accuracy_low"] == row["preference_accuracy_high"] == 0.5
    assert row["preference_margin"] == 0 and row["logprob_accuracy"] == row["reference_logprob_accuracy"]
    # keep_start drops the pairs whose prompt fills 128 tokens, and counts them.
    assert row["held_out_pairs"] + row["held_out_pairs_dropped"] == len(records) == 12
    assert row["held_out_pairs_dropped"] > 0


def test_a_held_out_dataset_beside_a_prebuilt_map_is_kept_out_of_the_selection(tmp_path):
    from admap.config import build
    from admap_experiments.config import ExperimentConfig
    from admap_experiments.run import ensure_map, held_out_dir, selection_inputs
    from tests.runs import map_without_models, topic_rows

    rows = topic_rows(["tea", "rain", "maps", "bread", "tides", "chess"])
    map_run = map_without_models(rows, tmp_path)
    # Two of the mapped instructions, and one the map does not have, as a held-out file of their own.
    held_rows = [rows[0], rows[3], topic_rows(["clocks"])[0]]
    held_file = tmp_path / "held.jsonl"
    held_file.write_text(
        "".join(json.dumps({k: r[k] for k in ("instruction", "input", "chosen", "rejected")}) + "\n" for r in held_rows)
    )
    config = build(
        ExperimentConfig,
        {"out": str(tmp_path / "experiments"), "map_run": str(map_run), "held_out": {"dataset": str(held_file)}},
    )
    map_dir = ensure_map(config, progress=False)
    held = json.loads((held_out_dir(config) / "held_out.json").read_text())
    assert held["n_pairs"] == 3 and held["source"].endswith("held.jsonl")

    inputs = selection_inputs(map_dir, config)
    held_ids = set(held["instruction_ids"])
    assert len(inputs.map_table) == 4 and not held_ids & set(inputs.map_table["instruction_id"])
    assert not held_ids & set(inputs.pairs["instruction_id"]) and not held_ids & set(inputs.responses["instruction_id"])
