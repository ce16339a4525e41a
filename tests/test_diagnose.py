import json

import numpy as np
import pandas as pd
import pytest

from admap import diagnose
from admap.cli import main
from admap.select import preference_pairs
from tests.runs import map_without_models


def _synthetic(n_instructions=60, per_instruction=4, noise=0.02, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_instructions):
        quality = rng.permutation(per_instruction).astype(float)
        for k in range(per_instruction):
            rows.append(
                {
                    "instruction_id": f"i{i:03d}",
                    "response_id": f"i{i:03d}-{k}",
                    "rating": quality[k],
                    "alignment_score": 0.5 + 0.1 * quality[k] + rng.normal(0, noise),
                }
            )
    return pd.DataFrame(rows)


def test_planted_flips_rank_first():
    responses = _synthetic()
    pairs = preference_pairs(responses)
    rng = np.random.default_rng(1)
    planted = rng.choice(len(pairs), size=20, replace=False)
    flipped = pairs.copy()
    flipped.loc[planted, ["chosen_id", "rejected_id"]] = flipped.loc[planted, ["rejected_id", "chosen_id"]].to_numpy()
    ranked = diagnose.rank_suspects(diagnose.pair_suspicion(flipped, responses))
    planted_keys = {tuple(flipped.loc[i, ["chosen_id", "rejected_id"]]) for i in planted}
    top = {tuple(r) for r in ranked.head(20)[["chosen_id", "rejected_id"]].to_numpy()}
    assert top == planted_keys
    assert ranked["is_suspect"].sum() == 20 and list(ranked["rank"]) == list(range(1, len(ranked) + 1))


def test_instruction_agreement_by_hand_and_flags():
    responses = pd.DataFrame(
        {
            "instruction_id": ["a", "a", "a", "b", "b", "c", "d", "d"],
            "alignment_score": [0.9, 0.5, 0.1, 0.4, 0.4, 0.7, 0.2, 0.8],
            "label": [3.0, 2.0, 1.0, 5.0, 1.0, 4.0, 2.0, 2.0],
        }
    )
    table = diagnose.instruction_agreement(responses).set_index("instruction_id")
    a = np.array([0.9, 0.5, 0.1]) @ np.array([3, 2, 1]) / np.linalg.norm([0.9, 0.5, 0.1]) / np.linalg.norm([3, 2, 1])
    assert table.loc["a", "cosine"] == pytest.approx(a)
    assert table.loc["a", "pearson"] == pytest.approx(1.0) and table.loc["a", "kendall"] == pytest.approx(1.0)
    assert table.loc["b", "is_low_impact"]  # the scores cannot tell its responses apart
    assert table.loc["d", "is_low_impact"]  # the labels are tied
    assert not table.loc["c", "is_diagnosable"] and table.loc["c", "n_compared"] == 1
    assert not table.loc["a", "is_low_impact"]


def test_diagnose_command_on_a_model_free_run(tmp_path):
    completions = [
        [("a careful and complete answer about topic {k}", 5.0), ("a short answer {k}", 3.0), ("nonsense {k}", 1.0)],
        [("only one response {k}", 4.0)],
    ]
    rows = []
    for k in range(10):
        shape = completions[1] if k == 0 else completions[0]
        rows.append(
            {
                "instruction": f"Question {k}?",
                "proxy": f"a careful complete answer about topic {k}",
                "completions": [{"response": text.format(k=k), "fine-grained_score": rating} for text, rating in shape],
            }
        )
    run = map_without_models(rows, tmp_path)
    assert main(["diagnose", str(run), "--top", "3", "--quiet"]) == 0
    summary = json.loads((run / "diagnosis" / "diagnosis.json").read_text())
    assert (summary["pairs"], summary["instructions"], summary["instructions_not_diagnosable"]) == (27, 10, 1)
    suspects = pd.read_parquet(run / "diagnosis" / "suspects.parquet")
    assert (suspects["is_suspect"] == (suspects["margin"] < 0)).all()
    assert suspects["suspicion_score"].is_monotonic_decreasing
    assert {"instruction", "chosen_response", "rejected_response", "reason"} <= set(suspects.columns)
    report = (run / "diagnosis" / "report.md").read_text()
    assert report.startswith("# Diagnosis") and "not diagnosable" in report


def test_diagnose_refuses_a_folder_that_is_no_run(tmp_path, caplog):
    assert main(["diagnose", str(tmp_path), "--quiet"]) == 2
    assert "is not an `admap map` run directory" in caplog.text
