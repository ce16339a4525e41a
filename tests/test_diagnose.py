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


def test_neighbour_labels_find_flips_and_a_flip_negates_only_its_own_pair():
    rng = np.random.default_rng(0)
    quality = rng.normal(size=32)
    topics = rng.normal(size=(60, 32)) * 3
    # Each topic has a good and a bad response: the topic plus or minus the quality direction, and noise.
    good = topics + quality + rng.normal(scale=0.3, size=topics.shape)
    bad = topics - quality + rng.normal(scale=0.3, size=topics.shape)
    features = np.concatenate([good, bad]).astype(np.float32)
    pairs = np.column_stack([np.arange(60), np.arange(60) + 60])
    clean = diagnose.neighbour_label_suspicion(features, pairs, k=5)
    assert (clean < 0).all()  # every label agrees with its neighbours'
    flipped = pairs.copy()
    flipped[:6] = flipped[:6, ::-1]
    noisy = diagnose.neighbour_label_suspicion(features, flipped, k=5)
    assert noisy[:6].min() > 0 and noisy[6:].max() < noisy[:6].min()  # the six flips rank first
    # A flip reverses its own direction and moves no neighbourhood: a pair whose neighbours all kept their
    # labels reads exactly the negation of its clean value.
    one = pairs.copy()
    one[10] = one[10, ::-1]
    np.testing.assert_allclose(diagnose.neighbour_label_suspicion(features, one, k=5)[10], -clean[10], rtol=1e-5)
    # Two identical responses have no direction: 0.
    same = np.array([[0, 0]])
    assert diagnose.neighbour_label_suspicion(features, np.concatenate([pairs, same]), k=5)[-1] == 0


@pytest.mark.slow
def test_diagnose_reads_labels_against_neighbours_on_request(tmp_path):
    run = tmp_path / "demo"
    assert main(["map", "--scorer", "annotation", "--out", str(run), "--no-plot", "--no-view", "--quiet"]) == 0
    assert main(["diagnose", str(run), "--neighbour-k", "5", "--top", "2", "--quiet"]) == 0
    suspects = pd.read_parquet(run / "diagnosis" / "suspects.parquet")
    summary = json.loads((run / "diagnosis" / "diagnosis.json").read_text())
    assert suspects["neighbour_suspicion"].between(-1, 1).all()
    against = summary["neighbour_labels"]
    assert (
        against["k"] == 5 and against["pairs_against_their_neighbours"] == (suspects["neighbour_suspicion"] > 0).sum()
    )
    assert "most alike pairs" in (run / "diagnosis" / "report.md").read_text()
    assert main(["diagnose", str(run), "--quiet"]) == 0
    assert "neighbour_suspicion" not in pd.read_parquet(run / "diagnosis" / "suspects.parquet").columns
